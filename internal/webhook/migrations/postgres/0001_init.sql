-- +goose Up
-- A merchant's receivers. event_types is a JSON array of exact types ("grant.succeeded") and
-- wildcards ("grant.*", "*"). The secret signs deliveries; previous_secret still signs them, as a
-- second signature, until previous_secret_until (a rotation's grace period).
CREATE TABLE webhook_endpoints (
    id                    TEXT PRIMARY KEY,
    tenant_id             TEXT NOT NULL,
    url                   TEXT NOT NULL,
    description           TEXT NOT NULL DEFAULT '',
    event_types           TEXT NOT NULL,
    enabled               BOOLEAN NOT NULL,
    disabled_reason       TEXT NOT NULL DEFAULT '',
    disabled_at           BIGINT,
    secret                TEXT NOT NULL,
    previous_secret       TEXT NOT NULL DEFAULT '',
    previous_secret_until BIGINT NOT NULL DEFAULT 0,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL
);
CREATE INDEX webhook_endpoints_by_tenant ON webhook_endpoints (tenant_id, id);

-- One row per (endpoint, event): the message to send and where its retry schedule stands.
-- failures counts failed attempts since the delivery was last queued (it indexes the schedule);
-- attempts counts every attempt ever made. claim/claimed_until are a dispatcher's lease.
CREATE TABLE webhook_deliveries (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    endpoint_id     TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    payload         TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'retrying', 'delivered', 'dead', 'canceled')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    failures        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    claim           TEXT NOT NULL DEFAULT '',
    claimed_until   BIGINT NOT NULL DEFAULT 0,
    last_attempt_at BIGINT,
    last_status     INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT NOT NULL DEFAULT '',
    finished_at     BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE UNIQUE INDEX webhook_deliveries_once ON webhook_deliveries (tenant_id, endpoint_id, event_id);
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (tenant_id, endpoint_id, id);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state IN ('pending', 'retrying');

-- The delivery log: one row per HTTP attempt. status_code is 0 when no response came back.
CREATE TABLE webhook_attempts (
    tenant_id     TEXT NOT NULL,
    delivery_id   TEXT NOT NULL,
    id            TEXT NOT NULL,
    attempted_at  BIGINT NOT NULL,
    status_code   INTEGER NOT NULL,
    latency_ms    BIGINT NOT NULL,
    error         TEXT NOT NULL DEFAULT '',
    response_body TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (tenant_id, delivery_id, id)
);

-- +goose Down
DROP TABLE webhook_attempts;
DROP TABLE webhook_deliveries;
DROP TABLE webhook_endpoints;
