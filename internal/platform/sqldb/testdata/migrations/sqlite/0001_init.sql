-- +goose Up
CREATE TABLE parents (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, qty BIGINT NOT NULL CHECK (qty >= 0));
CREATE TABLE children (id TEXT PRIMARY KEY, parent_id TEXT NOT NULL REFERENCES parents(id), at_us BIGINT NOT NULL);

-- +goose Down
DROP TABLE children;
DROP TABLE parents;
