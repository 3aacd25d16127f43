"""Known bearer secrets: looked up once, remembered when found, never when unknown."""

from __future__ import annotations

from shared.secrets import KnownSecrets, secret_hash


async def test_a_found_secret_is_looked_up_once_an_unknown_one_every_time():
    owners = {secret_hash("gk_good"): "Shop Hoa Mai"}
    lookups: list[str] = []

    async def lookup(digest: str) -> str | None:
        lookups.append(digest)
        return owners.get(digest)

    known = KnownSecrets(lookup, max_size=10)
    assert [await known.owner("gk_good") for _ in range(3)] == ["Shop Hoa Mai"] * 3
    assert [await known.owner("gk_bad") for _ in range(2)] == [None, None]
    assert lookups == [secret_hash("gk_good"), secret_hash("gk_bad"), secret_hash("gk_bad")]


async def test_when_full_every_known_secret_is_forgotten():
    async def lookup(digest: str) -> str:
        lookups.append(digest)
        return digest

    lookups: list[str] = []
    known = KnownSecrets(lookup, max_size=2)
    for secret in ("a", "b", "c", "a"):
        await known.owner(secret)
    assert lookups == [secret_hash(s) for s in ("a", "b", "c", "a")]  # "c" made room by forgetting a and b
