"""What dispatch's use cases share: their errors, the clock, writing events, the H3 grid, the
guards' counters."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import asyncpg

from shared.events import DeliveryStepData, Envelope, Model
from shared.http import Metrics
from shared.outbox import add_event, add_events, event_args

from .. import domain
from ..cells import Grid
from ..settings import DispatchSettings

SOURCE = "dispatch"


class JobNotFound(Exception):
    """Unknown, or not this courier's: both answer 404, so existence does not leak."""


class NotAllowedNow(Exception):
    """The job's status (or the offer's) does not allow this now: 409."""


def transition(action: domain.Action, status: str) -> str:
    """The status `action` takes a job in `status` to; NotAllowedNow (409) saying why not."""
    try:
        return domain.next_status(action, status)
    except domain.TransitionNotAllowed as exc:
        raise NotAllowedNow(str(exc)) from None


def now_utc() -> datetime:
    return datetime.now(UTC)


class GuardCounters:
    """What the guards against a dishonest or broken courier client count, on /metrics (for
    alerts: docs/operations.md). Children are made once: labels() is not free on a hot route."""

    def __init__(self, metrics: Metrics) -> None:
        self.wrong_codes = metrics.counter("dispatch_delivery_code_wrong_total", "Wrong delivery codes given")
        lockouts = metrics.counter(
            "dispatch_delivery_code_lockouts_total",
            "Lockouts begun by wrong delivery codes: a job for a while (job_timed), a job until the admin "
            "clears it (job_held), a courier across jobs (courier)",
            ("kind",),
        )
        self.lockouts = {kind: lockouts.labels(kind) for kind in ("job_timed", "job_held", "courier")}
        ignored = metrics.counter(
            "dispatch_location_points_ignored_total", "Couriers' newest points not used, by why", ("reason",)
        )
        self.points_ignored = {reason: ignored.labels(reason) for reason in ("older", "impossible_speed")}
        self.flagged_for_speed = metrics.counter(
            "dispatch_couriers_flagged_impossible_speed_total", "Couriers flagged for positions no vehicle reaches"
        )

    def position(self, ignored: str | None, flagged: bool) -> None:
        """A courier's position not used (`ignored`: why), or one that flagged them: a point's
        or a status's alike."""
        if ignored is not None:
            self.points_ignored[ignored].inc()
        if flagged:
            self.flagged_for_speed.inc()


async def emit(
    conn: asyncpg.Connection, settings: DispatchSettings, cls: type[Envelope], subject: UUID, data: Model
) -> Envelope:
    return await add_event(conn, cls, subject=str(subject), data=data, source=SOURCE, topic=settings.topic(cls.topic))


async def emit_many(
    conn: asyncpg.Connection, settings: DispatchSettings, events: list[tuple[type[Envelope], UUID, Model]]
) -> None:
    """Several events (distinct subjects go out in one statement)."""
    await add_events(
        conn,
        [(cls, str(subject), data) for cls, subject, data in events],
        source=SOURCE,
        topic=lambda cls: settings.topic(cls.topic),
    )


def step_event(settings: DispatchSettings, cls: type[Envelope], subject: UUID, data: Model) -> list:
    """The event of a single-statement step (store: EVENT_IF_CHANGED)."""
    return event_args(cls, subject=str(subject), data=data, source=SOURCE, topic=settings.topic(cls.topic))


def step_data(order_id: UUID) -> Model:
    """The data of an event that names only its order."""
    return DeliveryStepData(order_id=order_id)


def grid(settings: DispatchSettings) -> Grid:
    return Grid(
        settings.h3_resolution, settings.h3_coarse_resolution, settings.search_fine_rings, settings.search_max_ring
    )
