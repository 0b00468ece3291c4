-- +goose Up
CREATE TABLE idem_records (
    tenant_id   TEXT    NOT NULL,
    scope       TEXT    NOT NULL,
    idem_key    TEXT    NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('in_flight', 'completed')),
    fingerprint TEXT    NOT NULL,
    token       TEXT    NOT NULL,
    status      INTEGER NOT NULL DEFAULT 0,
    header      TEXT    NOT NULL DEFAULT '',
    body        BLOB,
    expires_us  BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, scope, idem_key)
);
CREATE INDEX idem_records_expires ON idem_records (expires_us);

-- +goose Down
DROP TABLE idem_records;
