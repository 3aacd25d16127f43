-- Merchants: the sellers who place orders. Only a SHA-256 of the API key is stored
-- (the key is 256 random bits, so a fast hash is enough); lookups go by that hash.
CREATE TABLE merchants (
    id            uuid        PRIMARY KEY,
    name          text        NOT NULL,
    phone         text        NOT NULL,
    api_key_hash  text        NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE orders (
    id              uuid        PRIMARY KEY,
    merchant_id     uuid        NOT NULL REFERENCES merchants (id),
    external_id     text        CHECK (char_length(external_id) BETWEEN 1 AND 64),
    tracking_code   text        NOT NULL UNIQUE,
    -- The merchant's own secret for the recipient; it leaves this database only as a keyed hash.
    delivery_code   text        NOT NULL,
    status          text        NOT NULL CHECK (status IN ('placed', 'assigned', 'picked_up', 'delivered',
                                    'delivery_failed', 'returned', 'cancelled', 'expired')),
    fee_vnd         bigint      NOT NULL CHECK (fee_vnd >= 0),
    distance_m      integer     NOT NULL CHECK (distance_m >= 0),
    cod_amount_vnd  bigint      NOT NULL CHECK (cod_amount_vnd BETWEEN 0 AND 50000000),
    pickup          jsonb       NOT NULL,
    dropoff         jsonb       NOT NULL,
    parcel          jsonb       NOT NULL,
    note            text,
    courier         jsonb,
    history         jsonb       NOT NULL,
    cancellation    text        CHECK (cancellation IN ('requested', 'refused', 'done')),
    cancel_reason   text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    -- NULLs are distinct: orders without an external id never collide.
    CONSTRAINT orders_merchant_external_id UNIQUE (merchant_id, external_id)
);
-- The merchant's list, newest first, with a keyset cursor on (created_at, id); with and
-- without a status filter.
CREATE INDEX orders_merchant_newest ON orders (merchant_id, created_at DESC, id DESC);
CREATE INDEX orders_merchant_status_newest ON orders (merchant_id, status, created_at DESC, id DESC);

-- Idempotency-Key: the first response to a (merchant, key), written in the transaction that
-- created the order, so a retry gets exactly that answer. The primary key makes a racing
-- second request wait for the first one's commit and then replay it.
CREATE TABLE idempotency_keys (
    merchant_id      uuid        NOT NULL REFERENCES merchants (id),
    key              text        NOT NULL,
    request_hash     text        NOT NULL,
    response_status  integer,
    response_body    jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, key)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
