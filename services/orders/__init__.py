"""The orders service (port 8001): merchants place, follow and cancel deliveries.

- api.py: HTTP routes (merchants, quotes, orders, cancel) over one transaction each;
- handlers.py: dispatch's events keep each order's status, history, courier, cancellation;
- domain.py: pricing, codes, the cancel rule and event application, without I/O;
- store.py: all SQL; migrations/: the schema.

Publishes order.placed and order.cancel_requested on giao.orders.v1 (through the outbox),
consumes giao.dispatch.v1.
"""
