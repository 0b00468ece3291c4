-- +goose Up
-- The wallet: one row per coupon a user holds, hash-partitioned by user in 16 partitions (every key
-- includes user_id, as partitioning and a sharding PostgreSQL require; a lookup by id alone uses
-- the non-unique coupons_id index of each partition). A coupon pins the template version it was
-- issued under (template_key, template_version). business_key makes issuance idempotent: the same
-- key never issues twice to a user. discount is the coupon's share of its redemption's discount
-- while locked or redeemed (0 otherwise); updated_at is the time of the last state change (the
-- archive's clock).
CREATE TABLE coupons (
    tenant_id        TEXT NOT NULL,
    user_id          TEXT NOT NULL,
    id               TEXT NOT NULL,
    template_key     TEXT NOT NULL,
    template_version INTEGER NOT NULL CHECK (template_version > 0),
    state            TEXT NOT NULL CHECK (state IN ('issued', 'locked', 'redeemed', 'expired', 'revoked')),
    issued_at        BIGINT NOT NULL,
    starts_at        BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    source_kind      TEXT NOT NULL DEFAULT '',
    source_id        TEXT NOT NULL DEFAULT '',
    business_key     TEXT NOT NULL,
    redemption_id    TEXT NOT NULL DEFAULT '',
    discount         BIGINT NOT NULL DEFAULT 0 CHECK (discount >= 0),
    redeemed_at      BIGINT,
    revoke_reason    TEXT NOT NULL DEFAULT '',
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, user_id, id),
    CONSTRAINT coupons_key UNIQUE (tenant_id, user_id, business_key)
) PARTITION BY HASH (user_id);
CREATE TABLE coupons_p00 PARTITION OF coupons FOR VALUES WITH (MODULUS 16, REMAINDER 0);
CREATE TABLE coupons_p01 PARTITION OF coupons FOR VALUES WITH (MODULUS 16, REMAINDER 1);
CREATE TABLE coupons_p02 PARTITION OF coupons FOR VALUES WITH (MODULUS 16, REMAINDER 2);
CREATE TABLE coupons_p03 PARTITION OF coupons FOR VALUES WITH (MODULUS 16, REMAINDER 3);
CREATE TABLE coupons_p04 PARTITION OF coupons FOR VALUES WITH (MODULUS 16, REMAINDER 4);
CREATE TABLE coupons_p05 PARTITION OF coupons FOR VALUES WITH (MODULUS 16, REMAINDER 5);
CREATE TABLE coupons_p06 PARTITION OF coupons FOR VALUES WITH (MODULUS 16, REMAINDER 6);
CREATE TABLE coupons_p07 PARTITION OF coupons FOR VALUES WITH (MODULUS 16, REMAINDER 7);
CREATE TABLE coupons_p08 PARTITION OF coupons FOR VALUES WITH (MODULUS 16, REMAINDER 8);
CREATE TABLE coupons_p09 PARTITION OF coupons FOR VALUES WITH (MODULUS 16, REMAINDER 9);
CREATE TABLE coupons_p10 PARTITION OF coupons FOR VALUES WITH (MODULUS 16, REMAINDER 10);
CREATE TABLE coupons_p11 PARTITION OF coupons FOR VALUES WITH (MODULUS 16, REMAINDER 11);
CREATE TABLE coupons_p12 PARTITION OF coupons FOR VALUES WITH (MODULUS 16, REMAINDER 12);
CREATE TABLE coupons_p13 PARTITION OF coupons FOR VALUES WITH (MODULUS 16, REMAINDER 13);
CREATE TABLE coupons_p14 PARTITION OF coupons FOR VALUES WITH (MODULUS 16, REMAINDER 14);
CREATE TABLE coupons_p15 PARTITION OF coupons FOR VALUES WITH (MODULUS 16, REMAINDER 15);

CREATE INDEX coupons_id ON coupons (tenant_id, id);
CREATE INDEX coupons_wallet ON coupons (tenant_id, user_id, state);
-- Per-template reads (stats, reconcile). template_key leads so that no planner takes this index
-- for a per-user probe, which has tenant_id but not template_key as an indexable condition.
CREATE INDEX coupons_template ON coupons (template_key, tenant_id, state);
CREATE INDEX coupons_due ON coupons (expires_at) WHERE state = 'issued';
CREATE INDEX coupons_ended ON coupons (updated_at) WHERE state IN ('redeemed', 'expired', 'revoked');

-- Ended coupons (redeemed, expired, revoked) older than the retention move here; Get still finds
-- them, issuance still counts them.
CREATE TABLE coupons_archive (
    tenant_id        TEXT NOT NULL,
    user_id          TEXT NOT NULL,
    id               TEXT NOT NULL,
    template_key     TEXT NOT NULL,
    template_version INTEGER NOT NULL,
    state            TEXT NOT NULL,
    issued_at        BIGINT NOT NULL,
    starts_at        BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    source_kind      TEXT NOT NULL DEFAULT '',
    source_id        TEXT NOT NULL DEFAULT '',
    business_key     TEXT NOT NULL,
    redemption_id    TEXT NOT NULL DEFAULT '',
    discount         BIGINT NOT NULL DEFAULT 0,
    redeemed_at      BIGINT,
    revoke_reason    TEXT NOT NULL DEFAULT '',
    updated_at       BIGINT NOT NULL,
    archived_at      BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, user_id, id),
    CONSTRAINT coupons_archive_key UNIQUE (tenant_id, user_id, business_key)
);
CREATE INDEX coupons_archive_id ON coupons_archive (tenant_id, id);
CREATE INDEX coupons_archive_template ON coupons_archive (template_key, tenant_id, state);

-- How many coupons of a template were ever issued, when the limits are kept in SQL (no Redis):
-- the row is locked by every issuing transaction of the template.
CREATE TABLE coupon_counters (
    tenant_id    TEXT NOT NULL,
    template_key TEXT NOT NULL,
    issued       BIGINT NOT NULL DEFAULT 0 CHECK (issued >= 0),
    PRIMARY KEY (tenant_id, template_key)
);

-- Redemptions: the coupons an order locks, and what became of them. order_id is unique per tenant.
-- request_hash fingerprints the lock request, so a repeat is told from a different request.
CREATE TABLE redemptions (
    tenant_id       TEXT NOT NULL,
    id              TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    order_id        TEXT NOT NULL,
    coupon_ids      TEXT NOT NULL,
    cart            TEXT NOT NULL,
    outcomes        TEXT NOT NULL,
    request_hash    TEXT NOT NULL,
    discount        BIGINT NOT NULL CHECK (discount >= 0),
    state           TEXT NOT NULL CHECK (state IN ('locked', 'confirmed', 'released', 'rolled_back')),
    release_reason  TEXT NOT NULL DEFAULT '',
    restored        TEXT NOT NULL DEFAULT '[]',
    lock_expires_at BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    confirmed_at    BIGINT,
    released_at     BIGINT,
    rolled_back_at  BIGINT,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT redemptions_order UNIQUE (tenant_id, order_id)
);
CREATE INDEX redemptions_user ON redemptions (tenant_id, user_id, id);
CREATE INDEX redemptions_due ON redemptions (lock_expires_at) WHERE state = 'locked';

-- +goose Down
DROP TABLE redemptions;
DROP TABLE coupon_counters;
DROP TABLE coupons_archive;
DROP TABLE coupons;
