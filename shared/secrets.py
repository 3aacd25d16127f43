"""Secrets: API keys and courier tokens (stored hashed), and the delivery code on the wire.

API keys and tokens are 256 random bits, so a fast hash (SHA-256) is the right store:
slow password hashes exist for guessable secrets. Comparison is constant-time.

The 6-digit delivery code has only a million values, so a plain salted hash on Kafka could
be brute-forced in a second by anyone who reads the topic. It travels as
HMAC-SHA256(key, salt || code) with a key that only orders (which hashes) and dispatch
(which checks) hold: salted, and useless without the key.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from shared.events import DeliveryCodeHash

T = TypeVar("T")


SECRET_BYTES = 32  # of randomness in every API key and courier token
_SECRET_CHARS = math.ceil(SECRET_BYTES * 4 / 3)  # its URL-safe base64, unpadded


def new_secret(prefix: str) -> str:
    """A bearer secret such as 'gk_3q...' (prefix says what it is when it shows up in a log)."""
    return f"{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}"


def secret_shape(prefix: str) -> re.Pattern[str]:
    """What every secret new_secret(prefix) makes looks like, and nothing else does."""
    return re.compile(rf"{re.escape(prefix)}_[A-Za-z0-9_-]{{{_SECRET_CHARS}}}")


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KnownSecrets(Generic[T]):
    """Whom a bearer secret belongs to, by its hash: looked up, then remembered for `ttl_s`.

    Remembering spares a query per request; forgetting after a few seconds makes a revocation
    (on any instance) take effect on every instance within that time. When `max_size` are
    known, all are forgotten.

    What cannot be anyone's costs no query either: a secret not of the `shape` new_secret
    gives (when one is given) is unknown without a lookup, and a secret looked up in vain is
    unknown without another for `ttl_s` too (it cannot become someone's meanwhile: a new
    secret is 256 random bits nobody can have tried before). At most `max_unknown` are kept,
    the oldest forgotten first, so a flood of random secrets cannot fill the memory.

    With `lookup_many` (the owners of several hashes in one query: those found), a lookup
    also renews, in the same query, the secrets used since they were last looked up that
    lapse within half the TTL (at most `max_renewed`): many callers each using their secret
    every second then cost a query every half TTL or so, not one each per TTL. A renewed
    secret is remembered for `ttl_s` from its renewal's query, so a revocation still takes
    effect within `ttl_s`; one found revoked is forgotten at once."""

    def __init__(
        self,
        lookup: Callable[[str], Awaitable[T | None]],
        *,
        ttl_s: float,
        max_size: int,
        shape: re.Pattern[str] | None = None,
        max_unknown: int = 10_000,
        lookup_many: Callable[[list[str]], Awaitable[dict[str, T]]] | None = None,
        max_renewed: int = 1000,
    ) -> None:
        self._lookup = lookup
        self._ttl_s = ttl_s
        self._max_size = max_size
        self._shape = shape
        self._max_unknown = max_unknown
        self._lookup_many = lookup_many
        self._max_renewed = max_renewed
        self._known: dict[str, tuple[T, float]] = {}
        self._unknown: dict[str, float] = {}  # digest -> until when; insertion order is age
        self._used: set[str] = set()  # known digests used since their lookup (with lookup_many)
        self._scanned_at = -math.inf  # when _used was last scanned for renewals

    def remembered(self, secret: str) -> T | None:
        """The owner if this instance knows it from memory (no I/O), else None."""
        digest = secret_hash(secret)
        known = self._known.get(digest)
        if known is None or known[1] <= time.monotonic():
            return None
        if self._lookup_many is not None:
            self._used.add(digest)
        return known[0]

    async def owner(self, secret: str) -> T | None:
        if self._shape is not None and not self._shape.fullmatch(secret):
            return None
        digest = secret_hash(secret)
        now = time.monotonic()
        known = self._known.get(digest)
        if known is not None and known[1] > now:
            if self._lookup_many is not None:
                self._used.add(digest)
            return known[0]
        unknown_until = self._unknown.get(digest)
        if unknown_until is not None:
            if unknown_until > now:
                return None
            del self._unknown[digest]
        if self._lookup_many is None:
            found = await self._lookup(digest)
        else:
            renewed = self._due(digest, now)
            owners = await self._lookup_many([digest, *renewed])
            found = owners.get(digest)
            self._renew(renewed, owners, now)
        if found is None:
            self._known.pop(digest, None)
            self._remember_unknown(digest, now + self._ttl_s)
            return None
        if len(self._known) >= self._max_size:
            self._known.clear()
            self._used.clear()
        self._known[digest] = (found, now + self._ttl_s)
        return found

    def _due(self, digest: str, now: float) -> list[str]:
        """The digests used since their lookup that lapse within half the TTL (not `digest`).
        Scanned at most every quarter TTL: what the last scan left lapses half a TTL after it
        at the soonest, so a later scan can still renew it, and a run of lookups of unknown
        secrets does not scan every known secret each time."""
        if now - self._scanned_at < self._ttl_s / 4:
            return []
        self._scanned_at = now
        soon = now + self._ttl_s / 2
        due = []
        for d in self._used:
            known = self._known.get(d)
            if d != digest and known is not None and known[1] <= soon:
                due.append(d)
                if len(due) >= self._max_renewed:
                    break
        return due

    def _renew(self, digests: list[str], owners: dict[str, T], since: float) -> None:
        for d in digests:
            self._used.discard(d)
            owner = owners.get(d)
            if owner is None:
                self._known.pop(d, None)  # revoked meanwhile
            else:
                self._known[d] = (owner, since + self._ttl_s)

    def _remember_unknown(self, digest: str, until: float) -> None:
        if self._ttl_s <= 0:
            return
        self._unknown.pop(digest, None)  # re-inserted: the youngest
        while len(self._unknown) >= self._max_unknown:
            del self._unknown[next(iter(self._unknown))]
        self._unknown[digest] = until


def new_delivery_code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


def hash_delivery_code(code: str, key: str) -> DeliveryCodeHash:
    salt = secrets.token_hex(16)
    return DeliveryCodeHash(salt=salt, hash=_code_mac(code, salt, key))


def delivery_code_matches(code: str, stored: DeliveryCodeHash, key: str) -> bool:
    return hmac.compare_digest(_code_mac(code, stored.salt, key), stored.hash)


def _code_mac(code: str, salt: str, key: str) -> str:
    return hmac.new(key.encode(), f"{salt}:{code}".encode(), hashlib.sha256).hexdigest()
