"""Dispatch (port 8002): couriers, offers and the delivery's life from `placed` to a final status.

Read top-down: app.py wires it; api.py is the couriers' and admin's HTTP API and admin_api.py
the ops console's views (deps.py their credentials, schemas.py their bodies); handlers.py
consumes the orders' events; matcher.py runs the matching and expiry loops; live.py feeds the
couriers' streams of offers (GET /v1/courier/jobs/events); service/ is what
each of them does to jobs, one transaction at a time; domain.py holds the rules without I/O;
store.py, store_matching.py and store_admin.py the SQL; migrations/ the schema (which enforces
the invariants); web/app/ the courier app's pages and web/ops/ the ops console's.
"""
