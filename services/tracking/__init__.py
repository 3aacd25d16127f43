"""The tracking service (port 8003): customers follow their parcel with its tracking code.

- app.py: the composition root (settings, runtime, consumers, change feed, the app);
- api.py: GET /v1/tracking/{code} and its Server-Sent Events stream; schemas.py: what the
  answers look like; deps.py: the rate limit dependency (shared.ratelimit: a token bucket per
  client address) and getters of the app's state;
- page_api.py: GET /t/{code}, the customer's tracking page; page.py renders its HTML (no I/O);
  web/: its script, style and texts (the map's files are shared: shared/maps.py, shared/web/);
- service_layer.py: a parcel by its code, the same work whether it is known or not;
- handlers.py: order and dispatch events, and courier locations, into the read model;
- domain.py: the projection rules, the public view and the ETA, without I/O;
- live.py: the open streams, fed by shared.live (one LISTEN connection per process);
- rebuild.py: `python -m services.tracking rebuild`, the read model again from the topics;
- store.py: all SQL; migrations/: the schema; settings.py: the environment variables.

Consumes giao.order-tracking.v1, giao.dispatch.v1 and giao.courier-locations.v1 (never
giao.orders.v1, which holds personal data); publishes nothing.
"""
