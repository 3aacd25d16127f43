"""The orders service (port 8001): merchants place, follow and cancel deliveries.

Read top-down:
- app.py: the composition root (settings, runtime, service, HTTP app);
- api.py: HTTP routes (merchants, quotes, orders, cancel, webhook endpoints, API keys, audit):
  parse, call, answer;
- deps.py: the caller (a merchant's API key, the admin token) and getters of app.state;
- schemas.py: the HTTP bodies, and the order as the merchant sees it;
- service_layer.py: the use cases (idempotency, placing with its event, cancelling, reading,
  API keys and the admin's audit log);
- webhook_service.py: webhook endpoints and the worker that sends the outbox of deliveries;
- webhooks.py: the webhook rules (events, payload, signature, retries, the SSRF policy), no I/O;
- webhook_store.py: the SQL of webhook endpoints, deliveries and attempts;
- handlers.py: dispatch's events keep each order's status, history, courier, cancellation,
  and write the webhook deliveries they cause in the same statement;
- domain.py: pricing, codes, the cancel rule and event application, without I/O;
- store.py: the SQL of merchants, keys and orders; migrations/: the schema; settings.py: GIAO_ORDERS_* settings.

Publishes order.placed and order.cancel_requested on giao.orders.v1 (through the outbox),
consumes giao.dispatch.v1.
"""
