"""The orders service (port 8001): merchants place, follow and cancel deliveries.

Read top-down:
- app.py: the composition root (settings, runtime, service, HTTP app);
- api.py: HTTP routes (merchants, quotes, orders, cancel): parse, call, answer;
- deps.py: the caller (a merchant's API key, the admin token) and getters of app.state;
- schemas.py: the HTTP bodies, and the order as the merchant sees it;
- service_layer.py: the use cases (idempotency, placing with its event, cancelling, reading);
- handlers.py: dispatch's events keep each order's status, history, courier, cancellation;
- domain.py: pricing, codes, the cancel rule and event application, without I/O;
- store.py: all SQL; migrations/: the schema; settings.py: GIAO_ORDERS_* settings.

Publishes order.placed and order.cancel_requested on giao.orders.v1 (through the outbox),
consumes giao.dispatch.v1.
"""
