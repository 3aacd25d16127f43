"""Dispatch's use cases: what couriers, orders and the clock do to jobs.

- couriers.py: a courier's own calls (created, online/offline, positions, answers and steps);
- delivery.py: a courier's delivery (the code and COD checked, wrong codes counted);
- orders.py: orders' events (new jobs, and the cancel saga's answer);
- matching.py: offering waiting jobs to the best available couriers;
- guards.py: a wrong delivery code counted on the courier, and the admin's clears of flags and locks;
- cash.py: the cash couriers hold, and the admin's record of its hand-in;
- expiry.py: offers past their time, and orders past the dispatch window;
- common.py: what they share (errors, events, the H3 grid).

Rules come from domain.py, SQL from store.py and store_matching.py; events leave through the
outbox in the same transaction as the change they tell of.
"""
