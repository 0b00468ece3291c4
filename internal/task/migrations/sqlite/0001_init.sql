-- +goose Up
-- Tables are WITHOUT ROWID: stored in primary-key order, one b-tree fewer per row written.

-- User tasks: one per (tenant, user, task, period key). The period key is the period ("2026-11-21",
-- "2026-W47", "2026-11", "once") with "#<round>" after the first round of a task that may be
-- completed several times per period. task_version pins the spec the row started under. progress
-- is the metric (count, sum, distinct values seen, streak length); seen holds the distinct values
-- (a JSON array, at most the largest target); stages_done is a bit set of the completed stages and
-- stage their count. rev counts writes: every writer checks the rev it read (optimistic locking).
CREATE TABLE user_tasks (
    tenant_id    TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    task_key     TEXT NOT NULL,
    period_key   TEXT NOT NULL,
    id           TEXT NOT NULL,
    period       TEXT NOT NULL,
    round        INTEGER NOT NULL DEFAULT 1 CHECK (round >= 1),
    task_version INTEGER NOT NULL CHECK (task_version >= 1),
    state        TEXT NOT NULL CHECK (state IN ('claimed', 'completed', 'rewarded', 'failed', 'expired', 'terminated')),
    progress     BIGINT NOT NULL DEFAULT 0,
    seen         TEXT NOT NULL DEFAULT '[]',
    stages_done  BIGINT NOT NULL DEFAULT 0,
    stage        INTEGER NOT NULL DEFAULT 0 CHECK (stage >= 0),
    reason       TEXT NOT NULL DEFAULT '',
    claimed_at   BIGINT NOT NULL,
    completed_at BIGINT,
    rewarded_at  BIGINT,
    expires_at   BIGINT NOT NULL DEFAULT 0,
    updated_at   BIGINT NOT NULL,
    rev          BIGINT NOT NULL DEFAULT 1,
    PRIMARY KEY (tenant_id, user_id, task_key, period_key)
) WITHOUT ROWID;
CREATE INDEX user_tasks_id ON user_tasks (id);
CREATE INDEX user_tasks_state ON user_tasks (tenant_id, state, task_key);
CREATE INDEX user_tasks_due ON user_tasks (expires_at) WHERE state = 'claimed' AND expires_at > 0;

-- The grants user tasks earned: one per stage (kind 'stage', seq = stage index) and per streak
-- reward (kind 'streak', seq = streak length; user_task_id is the row of the day it was earned on,
-- '' for a make-up). state follows the grant's events; cost columns are what it delivers.
CREATE TABLE user_task_grants (
    tenant_id    TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    grant_id     TEXT NOT NULL,
    user_task_id TEXT NOT NULL DEFAULT '',
    task_key     TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('stage', 'streak')),
    seq          INTEGER NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('pending', 'succeeded', 'failed', 'dead')),
    points       BIGINT NOT NULL DEFAULT 0,
    growth       BIGINT NOT NULL DEFAULT 0,
    coupons      BIGINT NOT NULL DEFAULT 0,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, user_id, grant_id)
) WITHOUT ROWID;
CREATE INDEX user_task_grants_user_task ON user_task_grants (tenant_id, user_id, user_task_id);
CREATE INDEX user_task_grants_task ON user_task_grants (tenant_id, task_key, state);

-- Streak trackers: one per (tenant, user, task). runs is a JSON array of [first day, last day,
-- frozen days] (day numbers in the tenant's time zone), the recent runs of consecutive covered
-- days; the last one is the streak. makeup_used and freeze_used count the month's cards and freezes.
CREATE TABLE task_streaks (
    tenant_id   TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    task_key    TEXT NOT NULL,
    id          TEXT NOT NULL,
    current     INTEGER NOT NULL DEFAULT 0,
    longest     INTEGER NOT NULL DEFAULT 0,
    last_day    INTEGER NOT NULL DEFAULT 0,
    runs        TEXT NOT NULL DEFAULT '[]',
    makeup_used INTEGER NOT NULL DEFAULT 0,
    freeze_used INTEGER NOT NULL DEFAULT 0,
    month       TEXT NOT NULL DEFAULT '',
    updated_at  BIGINT NOT NULL,
    rev         BIGINT NOT NULL DEFAULT 1,
    PRIMARY KEY (tenant_id, user_id, task_key)
) WITHOUT ROWID;

-- What each task's budget has spent: completions and points, taken with conditional updates.
CREATE TABLE task_budgets (
    tenant_id   TEXT NOT NULL,
    task_key    TEXT NOT NULL,
    completions BIGINT NOT NULL DEFAULT 0 CHECK (completions >= 0),
    cost        BIGINT NOT NULL DEFAULT 0 CHECK (cost >= 0),
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, task_key)
) WITHOUT ROWID;

-- Completion receipts, unique on their business id: a repeat with the same payload replays, another
-- payload is refused.
CREATE TABLE task_receipts (
    tenant_id    TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    task_key     TEXT NOT NULL,
    business_id  TEXT NOT NULL,
    payload_hash TEXT NOT NULL,
    user_task_id TEXT NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, user_id, task_key, business_id)
) WITHOUT ROWID;

-- +goose Down
DROP TABLE task_receipts;
DROP TABLE task_budgets;
DROP TABLE task_streaks;
DROP TABLE user_task_grants;
DROP TABLE user_tasks;
