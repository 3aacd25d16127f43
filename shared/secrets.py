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
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from shared.events import DeliveryCodeHash

T = TypeVar("T")


def new_secret(prefix: str) -> str:
    """A bearer secret such as 'gk_3q...' (prefix says what it is when it shows up in a log)."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KnownSecrets(Generic[T]):
    """Whom a bearer secret belongs to, by its hash: looked up, then remembered for `ttl_s`.

    Remembering spares a query per request; forgetting after a few seconds makes a revocation
    (on any instance) take effect on every instance within that time. Unknown secrets are not
    remembered (a caller cannot fill the memory with them); when `max_size` are known, all are
    forgotten."""

    def __init__(self, lookup: Callable[[str], Awaitable[T | None]], *, ttl_s: float, max_size: int) -> None:
        self._lookup = lookup
        self._ttl_s = ttl_s
        self._max_size = max_size
        self._known: dict[str, tuple[T, float]] = {}

    async def owner(self, secret: str) -> T | None:
        digest = secret_hash(secret)
        now = time.monotonic()
        known = self._known.get(digest)
        if known is not None and known[1] > now:
            return known[0]
        found = await self._lookup(digest)
        if found is None:
            self._known.pop(digest, None)
            return None
        if len(self._known) >= self._max_size:
            self._known.clear()
        self._known[digest] = (found, now + self._ttl_s)
        return found


def new_delivery_code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


def hash_delivery_code(code: str, key: str) -> DeliveryCodeHash:
    salt = secrets.token_hex(16)
    return DeliveryCodeHash(salt=salt, hash=_code_mac(code, salt, key))


def delivery_code_matches(code: str, stored: DeliveryCodeHash, key: str) -> bool:
    return hmac.compare_digest(_code_mac(code, stored.salt, key), stored.hash)


def _code_mac(code: str, salt: str, key: str) -> str:
    return hmac.new(key.encode(), f"{salt}:{code}".encode(), hashlib.sha256).hexdigest()
