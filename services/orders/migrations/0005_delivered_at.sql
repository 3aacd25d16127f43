-- The merchant's statement (cash on delivery reconciled): the orders delivered in a range of
-- days, by the time they were delivered. That time is the history's `delivered` entry
-- (dispatch's time of the delivery, what the merchant sees on the order), kept in a column by
-- the statement that writes the status (store.save_progress), so a range is an index range.
-- A delivered order never changes afterwards (domain.apply_event keeps a final status).
ALTER TABLE orders ADD COLUMN delivered_at timestamptz;
UPDATE orders SET delivered_at = (SELECT (h ->> 'at')::timestamptz FROM jsonb_array_elements(history) AS h
                                  WHERE h ->> 'status' = 'delivered' LIMIT 1)
    WHERE status = 'delivered';
-- Only delivered orders: one index entry per delivered order, written once. The amounts ride
-- along so a statement's sums read the index alone.
CREATE INDEX orders_merchant_delivered ON orders (merchant_id, delivered_at, id)
    INCLUDE (cod_amount_vnd, fee_vnd) WHERE status = 'delivered';
