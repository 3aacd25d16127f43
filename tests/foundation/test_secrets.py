"""Known bearer secrets: looked up, remembered for a while when found, never when unknown."""

from __future__ import annotations

from shared.secrets import KnownSecrets, secret_hash


async def test_a_found_secret_is_looked_up_once_an_unknown_one_every_time():
    owners = {secret_hash("gk_good"): "Shop Hoa Mai"}
    lookups: list[str] = []

    async def lookup(digest: str) -> str | None:
        lookups.append(digest)
        return owners.get(digest)

    known = KnownSecrets(lookup, ttl_s=60, max_size=10)
    assert [await known.owner("gk_good") for _ in range(3)] == ["Shop Hoa Mai"] * 3
    assert [await known.owner("gk_bad") for _ in range(2)] == [None, None]
    assert lookups == [secret_hash("gk_good"), secret_hash("gk_bad"), secret_hash("gk_bad")]


async def test_when_full_every_known_secret_is_forgotten():
    async def lookup(digest: str) -> str:
        lookups.append(digest)
        return digest

    lookups: list[str] = []
    known = KnownSecrets(lookup, ttl_s=60, max_size=2)
    for secret in ("a", "b", "c", "a"):
        await known.owner(secret)
    assert lookups == [secret_hash(s) for s in ("a", "b", "c", "a")]  # "c" made room by forgetting a and b


async def test_a_found_secret_is_looked_up_again_once_its_time_is_over(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr("shared.secrets.time.monotonic", lambda: now[0])
    owners = {secret_hash("ct_token"): "Minh"}
    lookups: list[str] = []

    async def lookup(digest: str) -> str | None:
        lookups.append(digest)
        return owners.get(digest)

    known = KnownSecrets(lookup, ttl_s=5, max_size=10)
    assert await known.owner("ct_token") == "Minh"
    now[0] += 4.9
    assert await known.owner("ct_token") == "Minh"  # remembered
    owners.clear()  # revoked
    now[0] += 0.2
    assert await known.owner("ct_token") is None  # past its time: looked up again, and gone
    assert len(lookups) == 2
