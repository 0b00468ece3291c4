-- +goose Up
-- The transactional outbox: rows written in the same transaction as the change that caused them,
-- published by the relay with Nats-Msg-Id = msg_id (the row id unless the caller chose one).
CREATE TABLE bus_outbox (
    id              TEXT PRIMARY KEY,
    msg_id          TEXT NOT NULL,
    subject         TEXT NOT NULL,
    header          TEXT NOT NULL DEFAULT '{}',
    payload         BYTEA NOT NULL,
    created_at      BIGINT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL DEFAULT 0,
    claimed_until   BIGINT NOT NULL DEFAULT 0,
    claimed_by      TEXT NOT NULL DEFAULT '',
    last_error      TEXT NOT NULL DEFAULT '',
    sent_at         BIGINT
);
CREATE INDEX bus_outbox_unsent ON bus_outbox (id) WHERE sent_at IS NULL;
CREATE INDEX bus_outbox_sent ON bus_outbox (sent_at) WHERE sent_at IS NOT NULL;

-- What each ConsumeTx consumer has processed, written in the same transaction as the effect.
CREATE TABLE bus_processed (
    consumer     TEXT NOT NULL,
    msg_id       TEXT NOT NULL,
    processed_at BIGINT NOT NULL,
    PRIMARY KEY (consumer, msg_id)
);
CREATE INDEX bus_processed_age ON bus_processed (consumer, processed_at);

-- +goose Down
DROP TABLE bus_processed;
DROP TABLE bus_outbox;
