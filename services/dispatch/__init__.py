"""Dispatch (port 8002): couriers, offers and the delivery's life from `placed` to a final status.

Read top-down: app.py wires it; api.py is the couriers' and admin's HTTP API; handlers.py
consumes the orders' events; matcher.py runs the matching and expiry loops; service_layer.py
is what each of them does to jobs, one transaction at a time; domain.py holds the rules
without I/O; store.py all SQL; migrations/ the schema (which enforces the invariants).
"""
