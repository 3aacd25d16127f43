-- Admission control (admission.py) counts, every half second, the orders still waiting for a
-- courier: this index holds only those (an order leaves it when it is assigned, expires or is
-- cancelled), so the count reads a few rows whatever the size of the table.
CREATE INDEX orders_waiting ON orders (created_at) WHERE status = 'placed';
