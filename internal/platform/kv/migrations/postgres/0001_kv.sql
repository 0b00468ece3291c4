-- +goose Up
CREATE TABLE kv_counters (
    key   TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
CREATE TABLE kv_locks (
    key        TEXT PRIMARY KEY,
    token      TEXT NOT NULL,
    expires_us BIGINT NOT NULL
);

-- +goose Down
DROP TABLE kv_locks;
DROP TABLE kv_counters;
