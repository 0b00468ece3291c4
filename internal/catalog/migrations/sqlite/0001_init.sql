-- +goose Up
CREATE TABLE catalog_resources (
    id                 TEXT PRIMARY KEY,
    tenant_id          TEXT NOT NULL,
    kind               TEXT NOT NULL,
    res_key            TEXT NOT NULL,
    state              TEXT NOT NULL CHECK (state IN ('draft', 'published', 'archived')),
    draft              TEXT NOT NULL,
    draft_revision     BIGINT NOT NULL CHECK (draft_revision >= 1),
    published_version  BIGINT NOT NULL DEFAULT 0 CHECK (published_version >= 0),
    published_revision BIGINT NOT NULL DEFAULT 0 CHECK (published_revision >= 0),
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    created_by         TEXT NOT NULL,
    updated_by         TEXT NOT NULL,
    CONSTRAINT catalog_resources_key UNIQUE (tenant_id, kind, res_key)
);
CREATE INDEX catalog_resources_tenant ON catalog_resources (tenant_id, id);
CREATE INDEX catalog_resources_tenant_kind ON catalog_resources (tenant_id, kind, id);

CREATE TABLE catalog_versions (
    resource_id      TEXT NOT NULL REFERENCES catalog_resources (id),
    version          BIGINT NOT NULL CHECK (version >= 1),
    tenant_id        TEXT NOT NULL,
    spec             TEXT NOT NULL,
    published_at     BIGINT NOT NULL,
    published_by     TEXT NOT NULL,
    rolled_back_from BIGINT NOT NULL DEFAULT 0 CHECK (rolled_back_from >= 0 AND rolled_back_from < version),
    PRIMARY KEY (resource_id, version)
);

-- Versions are immutable: refuse any UPDATE.
-- +goose StatementBegin
CREATE TRIGGER catalog_versions_no_update BEFORE UPDATE ON catalog_versions
BEGIN
    SELECT RAISE(ABORT, 'catalog_versions rows are immutable');
END;
-- +goose StatementEnd

CREATE TABLE catalog_audit (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    tenant_id   TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    kind        TEXT NOT NULL,
    res_key     TEXT NOT NULL,
    action      TEXT NOT NULL CHECK (action IN ('create', 'update', 'publish', 'rollback', 'archive')),
    actor       TEXT NOT NULL,
    at          BIGINT NOT NULL,
    version     BIGINT NOT NULL,
    revision    BIGINT NOT NULL,
    diff        TEXT NOT NULL
);
CREATE INDEX catalog_audit_tenant ON catalog_audit (tenant_id, seq);
CREATE INDEX catalog_audit_resource ON catalog_audit (tenant_id, resource_id, seq);

-- The change log. AUTOINCREMENT never reuses a seq; the single writer makes seq order commit order.
CREATE TABLE catalog_changes (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   TEXT NOT NULL,
    kind        TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    res_key     TEXT NOT NULL,
    version     BIGINT NOT NULL,
    action      TEXT NOT NULL CHECK (action IN ('publish', 'rollback', 'archive')),
    at          BIGINT NOT NULL
);

-- +goose Down
DROP TABLE catalog_changes;
DROP TABLE catalog_audit;
DROP TRIGGER catalog_versions_no_update;
DROP TABLE catalog_versions;
DROP TABLE catalog_resources;
