"""All of tracking's SQL: the parcels read model, its change notifications, its rebuild.

Writes are set-based: a consumed batch locks its parcels with one statement, saves them
with one, and announces the changed tracking codes with one (pg_notify, delivered at
commit, to every tracking instance listening on the database).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from uuid import UUID

import asyncpg
import orjson

from services.tracking.domain import Courier, Location, LocationFix, Parcel, Point, Step
from shared import live
from shared.inbox import forget_consumer

CHANGES_CHANNEL = "giao_tracking_changes"

_COLUMNS = """order_id, tracking_code, status, timeline, courier_id, courier_display_name,
    courier_vehicle, dropoff_lat, dropoff_lng, distance_m, location_lat, location_lng,
    location_at, location_sequence, orders_sequence, dispatch_sequence, version"""


def _courier(row: asyncpg.Record) -> Courier | None:
    if row["courier_id"] is None:
        return None
    return Courier(row["courier_id"], row["courier_display_name"], row["courier_vehicle"])


def _location(row: asyncpg.Record) -> Location | None:
    if row["location_at"] is None:
        return None
    return Location(row["location_lat"], row["location_lng"], row["location_at"], row["location_sequence"])


def _parcel(row: asyncpg.Record) -> Parcel:
    courier, location = _courier(row), _location(row)
    dropoff = Point(row["dropoff_lat"], row["dropoff_lng"]) if row["dropoff_lat"] is not None else None
    return Parcel(
        order_id=row["order_id"],
        tracking_code=row["tracking_code"],
        status=row["status"],
        timeline=tuple(Step(s["status"], datetime.fromisoformat(s["at"])) for s in row["timeline"]),
        courier=courier,
        dropoff=dropoff,
        distance_m=row["distance_m"],
        location=location,
        orders_sequence=row["orders_sequence"],
        dispatch_sequence=row["dispatch_sequence"],
        version=row["version"],
    )


# --- the consumers' side ------------------------------------------------------------


async def lock_parcels(conn: asyncpg.Connection, order_ids: Iterable[UUID]) -> dict[UUID, Parcel]:
    """The parcels of these orders, created empty where missing, locked until commit.

    Rows are locked in order-id order, so two batches (two instances, or the location
    writer) touching the same parcels wait for each other instead of deadlocking.
    """
    ids = sorted(set(order_ids))
    if not ids:
        return {}
    await conn.execute(
        """INSERT INTO parcels (order_id) SELECT unnest($1::uuid[]) ORDER BY 1
           ON CONFLICT DO NOTHING""",
        ids,
    )
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM parcels WHERE order_id = ANY($1::uuid[]) ORDER BY order_id FOR UPDATE", ids
    )
    return {row["order_id"]: _parcel(row) for row in rows}


async def save_parcels(conn: asyncpg.Connection, parcels: Sequence[Parcel]) -> None:
    """Write back parcels locked by lock_parcels: one statement for the whole batch."""
    if not parcels:
        return
    cols: dict[str, list] = {
        name: []
        for name in (
            "id",
            "code",
            "status",
            "timeline",
            "cid",
            "cname",
            "cvehicle",
            "dlat",
            "dlng",
            "dist",
            "llat",
            "llng",
            "lat_",
            "lseq",
            "oseq",
            "dseq",
        )
    }
    for p in parcels:
        cols["id"].append(p.order_id)
        cols["code"].append(p.tracking_code)
        cols["status"].append(p.status)
        cols["timeline"].append(_timeline_json(p.timeline))
        cols["cid"].append(p.courier.id if p.courier else None)
        cols["cname"].append(p.courier.display_name if p.courier else None)
        cols["cvehicle"].append(p.courier.vehicle if p.courier else None)
        cols["dlat"].append(p.dropoff.lat if p.dropoff else None)
        cols["dlng"].append(p.dropoff.lng if p.dropoff else None)
        cols["dist"].append(p.distance_m)
        cols["llat"].append(p.location.lat if p.location else None)
        cols["llng"].append(p.location.lng if p.location else None)
        cols["lat_"].append(p.location.at if p.location else None)
        cols["lseq"].append(p.location.sequence if p.location else None)
        cols["oseq"].append(p.orders_sequence)
        cols["dseq"].append(p.dispatch_sequence)
    await conn.execute(
        """UPDATE parcels p SET tracking_code = v.code, status = v.status, timeline = v.timeline::jsonb,
               courier_id = v.cid, courier_display_name = v.cname, courier_vehicle = v.cvehicle,
               dropoff_lat = v.dlat, dropoff_lng = v.dlng, distance_m = v.dist,
               location_lat = v.llat, location_lng = v.llng, location_at = v.lat_,
               location_sequence = v.lseq, orders_sequence = v.oseq, dispatch_sequence = v.dseq,
               version = p.version + 1, updated_at = now()
           FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::uuid[], $6::text[],
                       $7::text[], $8::float8[], $9::float8[], $10::int[], $11::float8[],
                       $12::float8[], $13::timestamptz[], $14::bigint[], $15::bigint[], $16::bigint[])
                AS v(id, code, status, timeline, cid, cname, cvehicle, dlat, dlng, dist,
                     llat, llng, lat_, lseq, oseq, dseq)
           WHERE p.order_id = v.id""",
        *cols.values(),
    )


def _timeline_json(timeline: Sequence[Step]) -> str:
    return orjson.dumps([{"status": s.status, "at": s.at.isoformat()} for s in timeline]).decode()


# What domain.apply_location reads of a parcel (and what the location consumer locks).
_ON_THE_MAP = """order_id, tracking_code, status, courier_id, courier_display_name, courier_vehicle,
    location_lat, location_lng, location_at, location_sequence, version"""


async def remember_points(conn: asyncpg.Connection, fixes: Sequence[LocationFix]) -> dict[UUID, Parcel]:
    """Remember each courier's latest point (a newer one only), and return the parcels these
    couriers say they carry, locked until commit; one statement.

    The parcels hold only what domain.apply_location reads (no timeline, no dropoff): write
    them back with save_locations, never save_parcels. Reading the whole row would cost the
    location consumer, the busiest one, several times its CPU. Rows are locked in order-id
    order, as lock_parcels locks them. Unknown orders are not created: a point alone makes
    no parcel.
    """
    if not fixes:
        return {}
    couriers = sorted(fixes, key=lambda f: f.courier_id)
    rows = await conn.fetch(
        f"""WITH positions AS (
               INSERT INTO courier_positions AS c (courier_id, sequence, lat, lng, at)
               SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::float8[], $4::float8[], $5::timestamptz[])
               ON CONFLICT (courier_id) DO UPDATE SET sequence = EXCLUDED.sequence, lat = EXCLUDED.lat,
                   lng = EXCLUDED.lng, at = EXCLUDED.at
               WHERE c.sequence < EXCLUDED.sequence)
           SELECT {_ON_THE_MAP} FROM parcels WHERE order_id = ANY($6::uuid[]) ORDER BY order_id FOR UPDATE""",
        [f.courier_id for f in couriers],
        [f.sequence for f in couriers],
        [f.lat for f in couriers],
        [f.lng for f in couriers],
        [f.at for f in couriers],
        sorted({order_id for fix in fixes for order_id in fix.order_ids}),
    )
    return {row["order_id"]: _on_the_map(row) for row in rows}


def _on_the_map(row: asyncpg.Record) -> Parcel:
    courier, location = _courier(row), _location(row)
    return Parcel(
        order_id=row["order_id"],
        tracking_code=row["tracking_code"],
        status=row["status"],
        courier=courier,
        location=location,
        version=row["version"],
    )


async def save_locations(conn: asyncpg.Connection, parcels: Sequence[Parcel]) -> None:
    """Write back the locations of parcels locked by remember_points: one statement."""
    if not parcels:
        return
    located = [(p.order_id, p.location) for p in parcels if p.location is not None]
    await conn.execute(
        """UPDATE parcels p SET location_lat = v.lat, location_lng = v.lng, location_at = v.at,
               location_sequence = v.seq, version = p.version + 1, updated_at = now()
           FROM unnest($1::uuid[], $2::float8[], $3::float8[], $4::timestamptz[], $5::bigint[])
                AS v(id, lat, lng, at, seq)
           WHERE p.order_id = v.id""",
        [o for o, _ in located],
        [loc.lat for _, loc in located],
        [loc.lng for _, loc in located],
        [loc.at for _, loc in located],
        [loc.sequence for _, loc in located],
    )


async def courier_points(conn: asyncpg.Connection, courier_ids: Iterable[UUID]) -> dict[UUID, LocationFix]:
    """The latest known point of each of these couriers."""
    rows = await conn.fetch(
        "SELECT courier_id, sequence, lat, lng, at FROM courier_positions WHERE courier_id = ANY($1::uuid[])",
        sorted(set(courier_ids)),
    )
    return {r["courier_id"]: LocationFix(r["courier_id"], (), r["lat"], r["lng"], r["at"], r["sequence"]) for r in rows}


async def notify_changed(conn: asyncpg.Connection, codes: Iterable[str | None]) -> None:
    """Tell every listening instance (at commit) which tracking codes changed (None, the code
    of a parcel whose order.trackable is not known yet, is no one's to watch)."""
    await live.notify(conn, CHANGES_CHANNEL, codes)


# --- the readers' side --------------------------------------------------------------


async def find_by_code(conn: asyncpg.Connection | asyncpg.Pool, code: str) -> Parcel | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM parcels WHERE tracking_code = $1 AND status IS NOT NULL", code)
    return _parcel(row) if row else None


async def find_by_codes(conn: asyncpg.Connection | asyncpg.Pool, codes: Sequence[str]) -> list[Parcel]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM parcels WHERE tracking_code = ANY($1::text[]) AND status IS NOT NULL", list(codes)
    )
    return [_parcel(row) for row in rows]


# --- rebuild ------------------------------------------------------------------------


async def clear_read_model(conn: asyncpg.Connection, consumer: str) -> None:
    """Empty the read model and what the consumer remembers of the events it applied."""
    async with conn.transaction():
        await conn.execute("TRUNCATE parcels, courier_positions")
        await forget_consumer(conn, consumer)
