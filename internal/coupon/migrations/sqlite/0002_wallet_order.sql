-- +goose Up
-- The wallet is read in expiry order: with the order in the index, no sort per read.
DROP INDEX coupons_wallet;
CREATE INDEX coupons_wallet ON coupons (tenant_id, user_id, state, expires_at, id);

-- +goose Down
DROP INDEX coupons_wallet;
CREATE INDEX coupons_wallet ON coupons (tenant_id, user_id, state);
