-- +goose Up
-- Grants: one per (tenant, source_kind, source_id, seq). A grant names the flow it runs, pinned to
-- one published version (flow_id + flow_version), or carries the flow its inline rewards compiled
-- to (flow_spec). Sweepers claim due rows: pending and failed ones whose next_attempt_at has come,
-- and running ones whose lease (next_attempt_at = claimed_until while running) has expired.
CREATE TABLE reward_grants (
    tenant_id       TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    id              TEXT NOT NULL,
    source_kind     TEXT NOT NULL,
    source_id       TEXT NOT NULL,
    seq             INTEGER NOT NULL DEFAULT 0,
    flow_id         TEXT NOT NULL DEFAULT '',
    flow_key        TEXT NOT NULL DEFAULT '',
    flow_version    INTEGER NOT NULL DEFAULT 0,
    flow_spec       TEXT NOT NULL DEFAULT '',
    params          TEXT NOT NULL DEFAULT '{}',
    state           TEXT NOT NULL CHECK (state IN ('pending', 'running', 'succeeded', 'failed', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts    INTEGER NOT NULL CHECK (max_attempts > 0),
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT NOT NULL DEFAULT '',
    claimed_by      TEXT NOT NULL DEFAULT '',
    claimed_until   BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    completed_at    BIGINT,
    PRIMARY KEY (tenant_id, user_id, id),
    CONSTRAINT reward_grants_source UNIQUE (tenant_id, source_kind, source_id, seq)
);
CREATE INDEX reward_grants_id ON reward_grants (id);
CREATE INDEX reward_grants_tenant ON reward_grants (tenant_id, id);
CREATE INDEX reward_grants_open ON reward_grants (tenant_id, state, id) WHERE state <> 'succeeded';
CREATE INDEX reward_grants_due ON reward_grants (next_attempt_at) WHERE state IN ('pending', 'running', 'failed');

-- Steps: what each step of a grant's flow did. A row is written in the same transaction as the
-- step's effect, so a step that shows succeeded has applied exactly once.
CREATE TABLE reward_steps (
    tenant_id  TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    grant_id   TEXT NOT NULL,
    step       TEXT NOT NULL,
    component  TEXT NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('succeeded', 'skipped', 'waiting', 'failed', 'compensated')),
    output     TEXT NOT NULL DEFAULT '{}',
    attempts   INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error TEXT NOT NULL DEFAULT '',
    wait_until BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, user_id, grant_id, step)
);

-- +goose Down
DROP TABLE reward_steps;
DROP TABLE reward_grants;
