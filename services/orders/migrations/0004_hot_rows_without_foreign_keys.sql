-- The foreign keys from orders and idempotency keys to merchants go. Each checked every order
-- placed by locking its merchant's row FOR KEY SHARE: a lock written into the row (WAL) and,
-- with a shop's orders arriving together, a multixact on that row, for an id the service took
-- from the merchant's own API key a moment before. Merchants are never deleted.
ALTER TABLE orders DROP CONSTRAINT orders_merchant_id_fkey;
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_merchant_id_fkey;
