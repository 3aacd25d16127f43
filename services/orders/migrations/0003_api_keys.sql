-- A merchant's API keys: several at once (a second one to rotate to), each revocable. Only a
-- SHA-256 of a key is kept, and its first characters to tell the keys apart in a list.
-- merchants.api_key_hash stays as the first key's hash; requests are authenticated here.
CREATE TABLE api_keys (
    id           uuid        PRIMARY KEY,
    merchant_id  uuid        NOT NULL REFERENCES merchants (id),
    key_hash     text        NOT NULL UNIQUE,
    prefix       text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);
CREATE INDEX api_keys_merchant ON api_keys (merchant_id, created_at);
-- The keys made before this table: their prefix is not known.
INSERT INTO api_keys (id, merchant_id, key_hash, created_at)
    SELECT gen_random_uuid(), id, api_key_hash, created_at FROM merchants;

-- What the admin did: who, what, to what, when.
CREATE TABLE admin_audit (
    id      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text        NOT NULL,
    action  text        NOT NULL,
    target  text        NOT NULL,
    detail  jsonb
);
