"""The tracking service (port 8003): customers follow their parcel with its tracking code.

- api.py: GET /v1/tracking/{code} and its Server-Sent Events stream, rate limited per client;
- handlers.py: order and dispatch events, and courier locations, into the read model;
- domain.py: the projection rules, the public view and the ETA, without I/O;
- live.py: one LISTEN connection per process fanning changes out to the open streams;
- ratelimit.py: token buckets per client address;
- rebuild.py: `python -m services.tracking rebuild`, the read model again from the topics;
- store.py: all SQL; migrations/: the schema; settings.py: the environment variables.

Consumes giao.orders.v1, giao.dispatch.v1 and giao.courier-locations.v1; publishes nothing.
"""
