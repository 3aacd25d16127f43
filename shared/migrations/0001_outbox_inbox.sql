-- Transactional outbox: events are rows written in the same transaction as the change
-- they describe; the relay (shared/outbox.py) publishes them to Kafka and deletes them.
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    topic       text        NOT NULL,
    key         text        NOT NULL,
    -- Relays split work by lane (a hash of the key); one relay at a time owns a lane,
    -- so events of one subject leave in the order they were written.
    lane        smallint    NOT NULL,
    event_type  text        NOT NULL,
    payload     bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_lane_id ON outbox (lane, id);

-- Per-subject sequence of the events this service produces (rises by one per subject and topic).
CREATE TABLE event_sequences (
    topic    text   NOT NULL,
    subject  text   NOT NULL,
    last     bigint NOT NULL,
    PRIMARY KEY (topic, subject)
);

-- How many events of each type the relay has published, for audits ("no event was lost").
CREATE TABLE outbox_published (
    event_type  text   PRIMARY KEY,
    published   bigint NOT NULL DEFAULT 0
);

-- Inbox: ids of events a consumer has applied, written in the same transaction as the effect.
CREATE TABLE inbox (
    consumer     text        NOT NULL,
    event_id     uuid        NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX inbox_received_at ON inbox (received_at);

-- The highest sequence applied per subject, so that a stale event is recognised and ignored.
CREATE TABLE inbox_positions (
    consumer  text   NOT NULL,
    topic     text   NOT NULL,
    subject   text   NOT NULL,
    sequence  bigint NOT NULL,
    PRIMARY KEY (consumer, topic, subject)
);

-- Counts of applied events by type, for audits.
CREATE TABLE inbox_applied (
    consumer    text   NOT NULL,
    event_type  text   NOT NULL,
    applied     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (consumer, event_type)
);
