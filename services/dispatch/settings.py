"""Dispatch's settings.

Environment variables (besides the common GIAO_* ones of shared.settings):

- GIAO_DISPATCH_PORT (8002)
- GIAO_DISPATCH_DATABASE_URL (postgresql://giao:giao@127.0.0.1:5432/giao_dispatch): its database
  as the service's runtime role (DML only)
- GIAO_DISPATCH_POOL_SIZE (30): PostgreSQL connections of one process (the outbox relay alone may
  hold up to 16 while publishing)
- GIAO_DISPATCH_OFFER_TIMEOUT_S (30): an unanswered offer expires and goes to the next courier
- GIAO_DISPATCH_WINDOW_S (1800): an order nobody accepted within this becomes `expired`
- GIAO_DISPATCH_CAPACITY_BICYCLE (1), _MOTORBIKE (3), _CAR (6), _VAN (20): offers + jobs at once
- GIAO_DISPATCH_H3_RESOLUTION (9): cells of the near candidate search (res 9: ~200 m edge)
- GIAO_DISPATCH_H3_COARSE_RESOLUTION (7): cells of the wide search (res 7: ~1.4 km edge)
- GIAO_DISPATCH_SEARCH_FINE_RINGS (4): rings searched with fine cells before going coarse (~1.2 km)
- GIAO_DISPATCH_SEARCH_MAX_RING (8): widest search, in coarse rings (at least 14 km at res 7)
- GIAO_DISPATCH_CANDIDATE_LIMIT (32): nearest couriers weighed per offer
- GIAO_DISPATCH_MATCH_BATCH (50): waiting orders the matcher handles per transaction (a pass costs
  about six statements whatever its size; the couriers it reserves stay locked until it commits;
  the pass in the orders consumer's transaction takes at least that batch's new orders)
- GIAO_DISPATCH_MATCH_WORKERS (2): matching passes run at once while there is a backlog
- GIAO_DISPATCH_MATCH_RETRY_BASE_S (0.5), GIAO_DISPATCH_MATCH_RETRY_MAX_S (5): backoff of an order
  nobody could take yet (capacity appearing near it, in any process, retries it at once)
- GIAO_DISPATCH_POLL_S (0.5): the matcher's and expirer's safety poll (they are also poked
  in-process by the work itself, on whichever instance it appears)
- GIAO_DISPATCH_BACKGROUND (true): run the orders consumer, the matcher and the expirer in this
  process. With false the process serves HTTP only; what its couriers change (capacity given
  back, offers declined) is in the database, where the matcher of a background process finds it
  at its next poll: a deployment can then keep the way from order to offer out of the processes
  busy with couriers' requests (locally: `GIAO_DISPATCH_SPLIT=true make up`)
- GIAO_DISPATCH_MATCH_POLL_S (0.5): the matcher's own safety poll when shorter than POLL_S (set it
  low, e.g. 0.05, in a background process beside HTTP-only ones: a pass of a few indexed
  queries per poll)
- GIAO_DISPATCH_ORDERS_CONSUMER_CONCURRENCY (2): batches of orders' events handled at once, each a
  transaction that ends with a matcher pass (a subject's events still apply in order)
- GIAO_DISPATCH_LOCATION_CLOCK_SKEW_S (30): how far in the future a location's `at` may be
- GIAO_DISPATCH_LOCATION_JUMP_SLACK_M (250): the GPS error allowed on top of the fastest speed a
  courier's vehicle reaches (domain.MAX_SPEED_MPS) between two positions
- GIAO_DISPATCH_LOCATION_JUMP_FLAG_AFTER (3): impossible positions in a row that flag the courier
  (no new offers until the admin clears it); fewer are ignored
- GIAO_DISPATCH_CODE_MAX_FAILURES (5): wrong delivery codes in a row before a job locks
- GIAO_DISPATCH_CODE_LOCKOUT_S (900): how long the first lockout lasts (429 with Retry-After) ...
- GIAO_DISPATCH_CODE_LOCKOUT_GROWTH (4): ... each next one this many times longer ...
- GIAO_DISPATCH_CODE_LOCKOUT_MAX_S (86400): ... up to this
- GIAO_DISPATCH_CODE_MAX_FAILURES_PER_JOB (20): wrong codes on a job in all; then it is locked
  (423) until the admin clears it
- GIAO_DISPATCH_COURIER_CODE_MAX_FAILURES (15): wrong codes of one courier across their jobs
  within COURIER_CODE_WINDOW_S (86400) that lock them out of deliveries (403) and flag them
- GIAO_DISPATCH_COURIER_RATE_PER_S (30): requests a second one courier may make (every courier
  route: polls, status, locations, steps), on average; more is 429 with Retry-After. The
  benchmark's couriers make about 5 (11 at worst), a phone 2 or 3
- GIAO_DISPATCH_COURIER_RATE_BURST (60): requests one courier may make at once after a pause
- GIAO_DISPATCH_AUTH_FAILURES_PER_S (10): failed authentications (no token, a malformed, unknown
  or revoked one) a second one client address may make, on average; past the burst, its
  requests with a token this instance does not know from memory are 429 with Retry-After,
  before any lookup
- GIAO_DISPATCH_AUTH_FAILURES_BURST (50): failed authentications one client address may make at once
- GIAO_DISPATCH_RATE_LIMIT_EXEMPT, GIAO_DISPATCH_INSTANCES: see shared.ratelimit.LimitSettings
- GIAO_DISPATCH_STREAM_HEARTBEAT_S (15): a comment line on every courier's open stream of offers
  (GET /v1/courier/jobs/events) this often, so that proxies and phones keep it open
- GIAO_DISPATCH_STREAM_MAX_S (900): a courier's stream ends after this; the app opens another
- GIAO_DISPATCH_STREAMS_PER_COURIER (3): open streams one courier may hold in one process (a
  phone reconnecting before its old stream was noticed gone); more is 429 with Retry-After
- GIAO_DISPATCH_STREAMS_MAX (800): open courier streams one process holds; more is 503 with
  Retry-After (the app polls meanwhile). Below GIAO_LIMIT_CONCURRENCY (1000), which counts every
  open connection: raise both for more couriers per process
- GIAO_DISPATCH_PUBLIC_URL (""): where couriers reach dispatch (e.g. https://dispatch.giao.example),
  for the sign-in link of a new courier (`<public url>/app/#t=<token>`); empty gives a link
  relative to dispatch itself (`/app/#t=<token>`)
"""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from shared.ratelimit import LimitSettings
from shared.settings import CommonSettings, admin_token_field, delivery_code_key_field, migration_database_url_field

from . import domain


class DispatchSettings(CommonSettings, LimitSettings):
    model_config = SettingsConfigDict(env_prefix="GIAO_DISPATCH_", extra="ignore", populate_by_name=True)
    is_kafka_principal: ClassVar[bool] = True

    port: int = 8002
    database_url: str = "postgresql://giao:giao@127.0.0.1:5432/giao_dispatch"
    migration_database_url: str = migration_database_url_field("dispatch")
    pool_size: int = Field(30, ge=5)

    offer_timeout_s: float = Field(30.0, gt=0)
    window_s: float = Field(1800.0, gt=0)

    capacity_bicycle: int = Field(1, ge=1)
    capacity_motorbike: int = Field(3, ge=1)
    capacity_car: int = Field(6, ge=1)
    capacity_van: int = Field(20, ge=1)

    h3_resolution: int = Field(9, ge=0, le=15)
    h3_coarse_resolution: int = Field(7, ge=0, le=15)
    search_fine_rings: int = Field(4, ge=1)
    search_max_ring: int = Field(8, ge=1)
    candidate_limit: int = Field(32, ge=1)
    match_batch: int = Field(50, ge=1)
    match_workers: int = Field(2, ge=1)
    match_retry_base_s: float = Field(0.5, gt=0)
    match_retry_max_s: float = Field(5.0, gt=0)
    poll_s: float = Field(0.5, gt=0)
    background: bool = True
    match_poll_s: float = Field(0.5, gt=0)
    # Batches of orders' events handled at once (each its own transaction, which ends with a
    # matcher pass); a subject's events still apply in order (shared.kafka.EventConsumer).
    orders_consumer_concurrency: int = Field(2, ge=1)

    location_clock_skew_s: float = Field(30.0, ge=0)
    location_jump_slack_m: float = Field(250.0, ge=0)
    location_jump_flag_after: int = Field(3, ge=1)
    code_max_failures: int = Field(5, ge=1)
    code_lockout_s: float = Field(900.0, gt=0)
    code_lockout_growth: int = Field(4, ge=1)
    code_lockout_max_s: float = Field(86400.0, gt=0)
    code_max_failures_per_job: int = Field(20, ge=1)
    courier_code_max_failures: int = Field(15, ge=1)
    courier_code_window_s: float = Field(86400.0, gt=0)
    public_url: str = ""
    # A tile server's URL template for the operations console's map (an OpenStreetMap server you
    # run); empty draws the project's own base layer (Natural Earth land and the service area).
    map_tile_url: str = Field("", validation_alias="GIAO_MAP_TILE_URL")
    # How long an instance trusts a courier token it looked up (a token the admin revoked stops
    # working on every instance within this time), and refuses an unknown one without looking
    # it up again.
    token_cache_s: float = Field(5.0, ge=0)
    courier_rate_per_s: float = Field(30.0, gt=0)
    courier_rate_burst: int = Field(60, ge=1)
    auth_failures_per_s: float = Field(10.0, gt=0)
    auth_failures_burst: int = Field(50, ge=1)
    stream_heartbeat_s: float = Field(15.0, gt=0)
    stream_max_s: float = Field(900.0, gt=0)
    streams_per_courier: int = Field(3, ge=1)
    streams_max: int = Field(800, ge=1)
    admin_token: str = admin_token_field()
    delivery_code_key: str = delivery_code_key_field()

    @model_validator(mode="after")
    def _coarse_is_coarser(self) -> DispatchSettings:
        if self.h3_coarse_resolution >= self.h3_resolution:
            raise ValueError("h3_coarse_resolution must be coarser (smaller) than h3_resolution")
        return self

    def code_limits(self) -> domain.CodeLimits:
        return domain.CodeLimits(
            max_failures=self.code_max_failures,
            lockout=timedelta(seconds=self.code_lockout_s),
            growth=self.code_lockout_growth,
            lockout_max=timedelta(seconds=self.code_lockout_max_s),
            max_per_job=self.code_max_failures_per_job,
        )

    def capacity(self, vehicle: str) -> int:
        return int(getattr(self, f"capacity_{vehicle}"))
