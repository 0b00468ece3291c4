-- +goose Up
-- Qualification reads a user's usable coupons (id, template, validity) in expiry order many
-- thousand times a second: the wallet index carries those columns, so the read never visits the
-- table.
DROP INDEX coupons_wallet;
CREATE INDEX coupons_wallet ON coupons (tenant_id, user_id, state, expires_at, id) INCLUDE (template_key, template_version, starts_at);

-- +goose Down
DROP INDEX coupons_wallet;
CREATE INDEX coupons_wallet ON coupons (tenant_id, user_id, state, expires_at, id);
