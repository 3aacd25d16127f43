-- Webhook endpoints: where a merchant wants to hear about its orders. The signing secret is
-- kept in clear (it signs every delivery); after a rotation the previous one keeps signing
-- too until previous_secret_until.
CREATE TABLE webhook_endpoints (
    id                     uuid        PRIMARY KEY,
    merchant_id            uuid        NOT NULL REFERENCES merchants (id),
    url                    text        NOT NULL,
    event_types            text[]      NOT NULL,
    enabled                boolean     NOT NULL DEFAULT true,
    disabled_reason        text,
    secret                 text        NOT NULL,
    previous_secret        text,
    previous_secret_until  timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
-- The consumer joins a changed order's merchant to its enabled endpoints.
CREATE INDEX webhook_endpoints_merchant_enabled ON webhook_endpoints (merchant_id) WHERE enabled;

-- The outbox of deliveries: written in the transaction that changes the order. `position`
-- orders the deliveries of one order to one endpoint; a pending row is due at next_attempt_at
-- (a worker that claims it moves that forward by a lease, so a crash only delays it).
CREATE TABLE webhook_deliveries (
    id               uuid        PRIMARY KEY,
    position         bigint      GENERATED ALWAYS AS IDENTITY,
    endpoint_id      uuid        NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    order_id         uuid,
    event_type       text        NOT NULL,
    payload          jsonb       NOT NULL,
    state            text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (endpoint_id, order_id, position) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (endpoint_id, position DESC);
-- Finished deliveries are forgotten after GIAO_ORDERS_WEBHOOK_LOG_KEEP_DAYS.
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (created_at) WHERE state <> 'pending';

-- Every attempt of a delivery, for the merchant's delivery log.
CREATE TABLE webhook_attempts (
    delivery_id  uuid        NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    at           timestamptz NOT NULL,
    status_code  integer,
    latency_ms   integer     NOT NULL,
    error        text
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, at);
