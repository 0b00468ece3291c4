-- +goose Up
-- Merchant-defined assets ("points" and "growth" are built in and not stored).
CREATE TABLE ledger_assets (
    tenant_id  TEXT NOT NULL,
    asset      TEXT NOT NULL,
    name       TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, asset)
);

-- One row per (tenant, owner, asset): the owner is a user id or a reserved system account
-- ("sys:issuance", "sys:spent", "sys:expired", "sys:adjustment"). System accounts are split over a
-- few shards so concurrent writers do not queue on one hot row; their balance is the sum over
-- shards. User accounts use shard 0 only. balance is the cached sum of the entries; held is the
-- part reserved by active holds.
CREATE TABLE ledger_accounts (
    tenant_id  TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    asset      TEXT NOT NULL,
    shard      INTEGER NOT NULL DEFAULT 0 CHECK (shard >= 0),
    balance    BIGINT NOT NULL DEFAULT 0,
    held       BIGINT NOT NULL DEFAULT 0 CHECK (held >= 0),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, user_id, asset, shard)
);

-- The append-only journal: every entry moves amount from debit_account to credit_account.
CREATE TABLE ledger_entries (
    tenant_id      TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    id             TEXT NOT NULL,
    business_key   TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('grant', 'spend', 'capture', 'expire', 'adjust')),
    asset          TEXT NOT NULL,
    amount         BIGINT NOT NULL CHECK (amount > 0),
    debit_account  TEXT NOT NULL,
    credit_account TEXT NOT NULL CHECK (credit_account <> debit_account),
    source_kind    TEXT NOT NULL DEFAULT '',
    source_id      TEXT NOT NULL DEFAULT '',
    reason         TEXT NOT NULL DEFAULT '',
    lot_expires_at BIGINT,
    hold_id        TEXT NOT NULL DEFAULT '',
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, user_id, id),
    CONSTRAINT ledger_entries_key UNIQUE (tenant_id, business_key)
);
CREATE INDEX ledger_entries_source ON ledger_entries (tenant_id, source_kind, source_id) WHERE source_kind <> '';

-- Entries are never changed or removed: corrections are new entries.
-- +goose StatementBegin
CREATE FUNCTION ledger_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger_entries rows are append-only' USING ERRCODE = 'check_violation';
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only();

-- Lots: what a user holds of an asset, by expiry instant (grants with the same expiry share a lot).
-- expires_at 0 is the debt lot (remaining <= 0, from adjustments allowed below zero);
-- 9223372036854775807 is "never". held is the part reserved by active holds.
CREATE TABLE ledger_lots (
    tenant_id  TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    asset      TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    id         TEXT NOT NULL,
    granted    BIGINT NOT NULL DEFAULT 0,
    remaining  BIGINT NOT NULL,
    held       BIGINT NOT NULL DEFAULT 0,
    expired    BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, user_id, asset, expires_at),
    CHECK ((expires_at = 0 AND remaining <= 0 AND held = 0) OR (expires_at > 0 AND held >= 0 AND remaining >= held))
);
CREATE INDEX ledger_lots_due ON ledger_lots (expires_at) WHERE remaining > held AND expires_at > 0;

-- Holds reserve part of the available balance for a redemption until captured or released.
CREATE TABLE ledger_holds (
    tenant_id    TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    id           TEXT NOT NULL,
    business_key TEXT NOT NULL,
    asset        TEXT NOT NULL,
    amount       BIGINT NOT NULL CHECK (amount > 0),
    captured     BIGINT NOT NULL DEFAULT 0 CHECK (captured >= 0 AND captured <= amount),
    state        TEXT NOT NULL CHECK (state IN ('active', 'captured', 'released', 'expired')),
    source_kind  TEXT NOT NULL DEFAULT '',
    source_id    TEXT NOT NULL DEFAULT '',
    entry_id     TEXT NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    settled_at   BIGINT,
    PRIMARY KEY (tenant_id, user_id, id),
    CONSTRAINT ledger_holds_key UNIQUE (tenant_id, business_key)
);
CREATE UNIQUE INDEX ledger_holds_id ON ledger_holds (tenant_id, id);
CREATE INDEX ledger_holds_due ON ledger_holds (expires_at) WHERE state = 'active';

-- Which lots an active hold reserves, and how much of each.
CREATE TABLE ledger_hold_lots (
    tenant_id      TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    hold_id        TEXT NOT NULL,
    lot_expires_at BIGINT NOT NULL,
    amount         BIGINT NOT NULL CHECK (amount > 0),
    PRIMARY KEY (tenant_id, user_id, hold_id, lot_expires_at)
);

-- +goose Down
DROP TABLE ledger_hold_lots;
DROP TABLE ledger_holds;
DROP TABLE ledger_lots;
DROP TABLE ledger_entries;
DROP FUNCTION ledger_entries_append_only();
DROP TABLE ledger_accounts;
DROP TABLE ledger_assets;
