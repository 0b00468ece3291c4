-- +goose Up
-- A merchant's users' attributes and tags, which task audiences, trigger filters and coupon
-- conditions read as `user`.
CREATE TABLE tenant_user_profiles (
    tenant_id  TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    attributes TEXT NOT NULL,
    tags       TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);

-- +goose Down
DROP TABLE tenant_user_profiles;
