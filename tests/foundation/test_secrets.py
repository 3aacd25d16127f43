"""Known bearer secrets: looked up, remembered for a while whether found or not; secrets not of
the shape new_secret gives are never looked up."""

from __future__ import annotations

from shared.secrets import KnownSecrets, new_secret, secret_hash, secret_shape


async def test_a_found_secret_and_an_unknown_one_are_each_looked_up_once():
    owners = {secret_hash("gk_good"): "Shop Hoa Mai"}
    lookups: list[str] = []

    async def lookup(digest: str) -> str | None:
        lookups.append(digest)
        return owners.get(digest)

    known = KnownSecrets(lookup, ttl_s=60, max_size=10)
    assert [await known.owner("gk_good") for _ in range(3)] == ["Shop Hoa Mai"] * 3
    assert known.remembered("gk_good") == "Shop Hoa Mai" and known.remembered("gk_bad") is None
    assert [await known.owner("gk_bad") for _ in range(2)] == [None, None]
    assert lookups == [secret_hash("gk_good"), secret_hash("gk_bad")]


async def test_secrets_of_another_shape_are_unknown_without_a_lookup():
    lookups: list[str] = []

    async def lookup(digest: str) -> str | None:
        lookups.append(digest)
        return None

    known = KnownSecrets(lookup, ttl_s=60, max_size=10, shape=secret_shape("gk"))
    real = new_secret("gk")
    for malformed in ("gk_short", "ct" + real[2:], real + "x", real[:-1] + "=", real[:-1] + "\u00e9", "", " " + real):
        assert await known.owner(malformed) is None
    assert lookups == []
    assert await known.owner(real) is None and lookups == [secret_hash(real)], "the right shape is looked up"


async def test_unknown_secrets_are_remembered_for_a_while_and_at_most_so_many(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr("shared.secrets.time.monotonic", lambda: now[0])
    lookups: list[str] = []

    async def lookup(digest: str) -> str | None:
        lookups.append(digest)
        return None

    known = KnownSecrets(lookup, ttl_s=5, max_size=10, max_unknown=2)
    for secret in ("a", "b", "a", "c", "b", "a"):  # "c" pushes out the oldest, "a"
        await known.owner(secret)
    assert lookups == [secret_hash(s) for s in ("a", "b", "c", "a")]
    now[0] += 5.1
    await known.owner("c")
    assert lookups[-1] == secret_hash("c"), "past its time an unknown secret is looked up again"


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


def _renewing(monkeypatch, names: tuple[str, ...]):
    """A KnownSecrets with lookup_many (TTL 4 s) on a clock the test moves: the clock, the
    owners it finds (the upper-cased name of each secret), and the digests of each query."""
    now = [1000.0]
    monkeypatch.setattr("shared.secrets.time.monotonic", lambda: now[0])
    owners = {secret_hash(s): s.upper() for s in names}
    queries: list[list[str]] = []

    async def lookup_many(digests: list[str]) -> dict[str, str]:
        queries.append(digests)
        return {d: owners[d] for d in digests if d in owners}

    async def lookup(digest: str) -> str | None:
        raise AssertionError("lookup_many does the lookups")

    return now, owners, queries, KnownSecrets(lookup, ttl_s=4, max_size=10, lookup_many=lookup_many)


async def test_a_lookup_renews_the_secrets_in_use_that_lapse_soon_and_forgets_the_revoked(monkeypatch):
    now, owners, queries, known = _renewing(monkeypatch, ("a", "b", "c", "d"))
    for s in ("a", "b", "c"):
        assert await known.owner(s) == s.upper()
    now[0] += 2.5  # a, b and c lapse within half the TTL
    assert known.remembered("a") == "A" and known.remembered("b") == "B"  # in use; c is not
    del owners[secret_hash("b")]  # b revoked
    assert await known.owner("d") == "D"
    assert sorted(queries[-1]) == sorted(secret_hash(s) for s in ("d", "a", "b")), "c was not used: not renewed"
    now[0] += 2.0  # past the first lookups' time, within the renewal's
    assert known.remembered("a") == "A", "renewed for the TTL from its renewal"
    assert known.remembered("b") is None and await known.owner("b") is None, "the revoked one is refused at once"
    assert known.remembered("c") is None, "the unused one lapsed"
    now[0] += 4.1  # (b's lookup renewed a again, in use and due)
    assert known.remembered("a") is None, "a renewal lasts the TTL, no longer"


async def test_lookups_look_for_renewals_at_most_every_quarter_ttl(monkeypatch):
    now, _, queries, known = _renewing(monkeypatch, ("a", "b"))
    assert await known.owner("a") == "A"
    now[0] += 1.0
    assert await known.owner("b") == "B"
    now[0] += 1.5
    assert known.remembered("a") == "A" and known.remembered("b") == "B"  # both in use
    assert await known.owner("x") is None
    assert queries[-1] == [secret_hash("x"), secret_hash("a")], "a is due, b not yet"
    now[0] += 0.7  # b is due now, but the last scan was less than a quarter TTL ago
    assert await known.owner("y") is None and queries[-1] == [secret_hash("y")]
    now[0] += 0.3
    assert await known.owner("z") is None and queries[-1] == [secret_hash("z"), secret_hash("b")]
