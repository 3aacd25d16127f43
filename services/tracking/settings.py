"""Tracking's settings.

Environment variables (besides the common GIAO_* ones of shared.settings):

- GIAO_TRACKING_PORT (8003)
- GIAO_TRACKING_DATABASE_URL (postgresql://giao:giao@127.0.0.1:5432/giao_tracking): its database
  as the service's runtime role (DML only)
- GIAO_TRACKING_POOL_SIZE (20): PostgreSQL connections of one process
- GIAO_TRACKING_RATE_LIMIT_PER_S (20): requests a second one client may make, on average
  (GETs and stream openings alike); more is 429 with Retry-After. A client is its address
  (an IPv6 address: its /64), the one X-Forwarded-For names when the request came through
  one of GIAO_TRUSTED_PROXIES (shared.settings)
- GIAO_TRACKING_RATE_LIMIT_BURST (50): requests one client may make at once after a pause
- GIAO_TRACKING_RATE_LIMIT_EXEMPT and GIAO_TRACKING_INSTANCES: see shared.ratelimit.LimitSettings
- GIAO_TRACKING_RESPONSE_FLOOR_MS (15): every tracking answer takes at least this long, so
  that its timing does not tell a known code from an unknown one
- GIAO_TRACKING_HEARTBEAT_S (15): a comment line this often keeps proxies from closing
  an idle stream
- GIAO_TRACKING_SSE_MAX_STREAM_S (3600): a stream ends after this long (EventSource clients
  reconnect and get the current state)
- GIAO_TRACKING_SSE_MAX_STREAMS_PER_CLIENT (20): open streams per client; more is 429
- GIAO_TRACKING_SSE_MAX_STREAMS (800): open streams of one process; more is 503 with
  Retry-After. Below GIAO_LIMIT_CONCURRENCY (1000), so that GETs still get through when the
  streams are at their cap
- GIAO_TRACKING_STATUS_BATCH (500): order and dispatch events applied per transaction, at most
- GIAO_TRACKING_LOCATION_BATCH (2000): location pings read per transaction, at most
- GIAO_MAP_TILE_URL (empty): a tile server's URL template for the tracking page's map, such as
  "https://tiles.example.org/{z}/{x}/{y}.png" (an OpenStreetMap server you run); empty draws
  the project's own base layer (Natural Earth land and the service area), needing no server
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.ratelimit import LimitSettings
from shared.settings import CommonSettings, migration_database_url_field


class TrackingSettings(CommonSettings, LimitSettings):
    model_config = SettingsConfigDict(env_prefix="GIAO_TRACKING_", extra="ignore", populate_by_name=True)
    is_kafka_principal: ClassVar[bool] = True

    port: int = 8003
    database_url: str = "postgresql://giao:giao@127.0.0.1:5432/giao_tracking"
    migration_database_url: str = migration_database_url_field("tracking")
    pool_size: int = 20

    rate_limit_per_s: float = Field(20.0, gt=0)
    rate_limit_burst: int = Field(50, ge=1)

    response_floor_ms: float = Field(15.0, ge=0)

    heartbeat_s: float = Field(15.0, gt=0)
    sse_max_stream_s: float = Field(3600.0, gt=0)
    sse_max_streams_per_client: int = Field(20, ge=1)
    sse_max_streams: int = Field(800, ge=1)

    status_batch: int = Field(500, ge=1)
    location_batch: int = Field(2000, ge=1)

    map_tile_url: str = Field("", validation_alias="GIAO_MAP_TILE_URL")
