"""Dispatch (port 8002): couriers, offers and the delivery's life from `placed` to a final status.

Read top-down: app.py wires it; api.py is the couriers' and admin's HTTP API (deps.py its
credentials, schemas.py its bodies); handlers.py consumes the orders' events; matcher.py runs
the matching and expiry loops; service/ is what each of them does to jobs, one transaction at
a time; domain.py holds the rules without I/O; store.py and store_matching.py the SQL;
migrations/ the schema (which enforces the invariants); web/ the courier app's pages.
"""
