-- +goose Up
CREATE TABLE tenant_merchants (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL,
    time_zone         TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('active', 'suspended')),
    token_secret      TEXT NOT NULL,
    token_public_key  TEXT NOT NULL DEFAULT '',
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);

CREATE TABLE tenant_keys (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('platform', 'admin', 'operator', 'viewer', 'integration')),
    secret_hash   TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    created_by    TEXT NOT NULL,
    revoked_at    BIGINT,
    last_used_at  BIGINT
);
CREATE INDEX tenant_keys_by_tenant ON tenant_keys (tenant_id, id);

-- +goose Down
DROP TABLE tenant_keys;
DROP TABLE tenant_merchants;
