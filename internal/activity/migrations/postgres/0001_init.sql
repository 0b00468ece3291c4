-- +goose Up
-- The activity log: one row per domain event, written asynchronously from the DOMAIN stream.
-- The primary key leads with (tenant_id, user_id), the shard key; the event id makes a redelivered
-- event add nothing. user_id is '' for merchant-level events. type uses the "C" collation so that
-- a prefix search ("grant.*") is a plain byte range whatever the database's collation.
CREATE TABLE activity_records (
    tenant_id   TEXT NOT NULL,
    user_id     TEXT NOT NULL DEFAULT '',
    id          TEXT NOT NULL,
    type        TEXT COLLATE "C" NOT NULL,
    source_kind TEXT NOT NULL DEFAULT '',
    source_id   TEXT NOT NULL DEFAULT '',
    occurred_at BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL,
    data        TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (tenant_id, user_id, id)
);
-- Searches, newest first, by user / whole tenant / type / source; and retention by age.
CREATE INDEX activity_records_user_time ON activity_records (tenant_id, user_id, occurred_at, id);
CREATE INDEX activity_records_time ON activity_records (tenant_id, occurred_at, id);
CREATE INDEX activity_records_type ON activity_records (tenant_id, type, occurred_at, id);
CREATE INDEX activity_records_source ON activity_records (tenant_id, source_kind, source_id, occurred_at, id);
CREATE INDEX activity_records_age ON activity_records (occurred_at);

-- +goose Down
DROP TABLE activity_records;
