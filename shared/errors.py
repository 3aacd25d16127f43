"""What an exception says: whether a server is away (an outage) or the work itself failed, and
the exception as a log line (or a dead letter's header) may show it.

An exception's text often holds what it failed on: pydantic's errors their input, asyncpg's
client-side DataError the query argument, PostgreSQL's errors the value (`invalid input syntax
for type integer: "45 Trần Hưng Đạo ..."`) or a key (`Key (phone)=(...)`). Built from an
event, that is a recipient's name, phone or address, which logs must never hold
(docs/operations.md). describe() keeps what an engineer needs and no value: the type, pydantic's
error locations and kinds, PostgreSQL's SQLSTATE and the names of what it concerns, and where
the exception was raised. Only the servers' connection errors (no message content in them)
keep their text.
"""

from __future__ import annotations

import asyncio
import traceback

import asyncpg
from aiokafka.errors import KafkaError
from pydantic import ValidationError
from pydantic_core import ErrorDetails

MAX_PYDANTIC_ERRORS = 10

# A server could not be reached or answer, or the driver lost track of a connection that died
# under it: none of it is the fault of the message or request being handled.
#
# - OperatorInterventionError is SQLSTATE class 57: a server shutting down or starting up
#   (57P01-57P03), a query canceled by an operator or a timeout (57014).
# - InternalClientError: asyncpg's state for a connection the server closed in the middle of
#   an operation ("cannot switch to state 15; another operation (2) is in progress", raised at
#   BEGIN while PostgreSQL restarts, several times a restart under load). Taken for the
#   message's fault, three of them dead-letter it: the likeliest way CI's crash test once
#   lost an order.placed (an order with its 201 and no job). A bug of the driver's own raises
#   it too; then the consumer retries and its readiness turns red, which an engineer sees,
#   rather than dead-lettering every message it is given.
OUTAGES: tuple[type[Exception], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.TooManyConnectionsError,
    KafkaError,
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
)


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` says a server could not be reached or answer (retry until it can) rather
    than that the message or request cannot be handled (a consumer retries a few times, then
    dead-letters; an HTTP route answers 4xx or 500).

    asyncpg's client-side encoding errors (a number over the column's type, a date it cannot
    represent) are InterfaceErrors too, like a lost connection, but they are also ValueErrors:
    the value is at fault, and it fails the same way on every attempt. So are PostgreSQL's own
    data exceptions (asyncpg.exceptions.DataError, SQLSTATE class 22), which are not outages."""
    return isinstance(exc, OUTAGES) and not isinstance(exc, ValueError)


class InOwnWords(Exception):
    """An exception whose text the project wrote from names and durations of its own (which
    consumer, for how long), never from a value a message, a request or a server carried:
    describe() keeps it, so the log says why."""


# Errors about reaching a server, not about a value: their text is the server's address or
# state, useful and free of message content. And the project's own verdicts.
_TEXT_KEPT: tuple[type[BaseException], ...] = (KafkaError, ConnectionError, TimeoutError, InOwnWords)


def describe(exc: BaseException) -> str:
    """`exc` without any value it carries, e.g. `DataError at store.py:120 in insert_order`,
    `ValidationError (data.fee_vnd: int_parsing) at ...`, `UniqueViolationError (SQLSTATE 23505,
    couriers_phone_key) at ...`."""
    detail = _detail(exc)
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if f.filename.endswith(".py") and "site-packages" not in f.filename] or frames
    where = f" at {ours[-1].filename.rsplit('/', 1)[-1]}:{ours[-1].lineno} in {ours[-1].name}" if ours else ""
    return f"{type(exc).__name__}{f' ({detail})' if detail else ''}{where}"


def _detail(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        errors = exc.errors(include_url=False, include_input=False)
        return "; ".join(_pydantic_error(e) for e in errors[:MAX_PYDANTIC_ERRORS])
    if isinstance(exc, asyncpg.PostgresError):
        names = (getattr(exc, a, None) for a in ("table_name", "column_name", "constraint_name"))
        return ", ".join([f"SQLSTATE {exc.sqlstate}", *(n for n in names if n)])
    if isinstance(exc, _TEXT_KEPT) and not isinstance(exc, ValueError):
        return str(exc)
    return ""


def _pydantic_error(error: ErrorDetails) -> str:
    where = ".".join(map(str, error["loc"])) or "(root)"
    if error["type"] == "union_tag_invalid":  # an event's `type`: a name, no message content
        return f"{where}: unknown tag {error.get('ctx', {}).get('tag', '')!r:.80}"
    return f"{where}: {error['type']}"
