-- +goose Up
CREATE TABLE extra (id TEXT PRIMARY KEY);

-- +goose Down
DROP TABLE extra;
