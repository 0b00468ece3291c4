package idem

import (
	"context"
	"embed"
	"time"

	"github.com/perkhq/perk/internal/platform/clock"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

//go:embed migrations
var migrationsFS embed.FS

// Migrations creates the SQL storage's table (idem_records) on both engines.
var Migrations = sqldb.Migrations{Module: "idem", FS: migrationsFS, Dir: "migrations"}

// SQLStorage keeps records in the idem_records table. Expired rows are ignored (and taken over by
// the next Begin); Purge deletes them.
type SQLStorage struct {
	db    *sqldb.DB
	clock clock.Clock
}

// NewSQLStorage returns a Storage on db, which must be migrated with Migrations. A nil clock
// means clock.Real.
func NewSQLStorage(db *sqldb.DB, c clock.Clock) *SQLStorage {
	if c == nil {
		c = clock.Real{}
	}
	return &SQLStorage{db: db, clock: c}
}

var _ Storage = (*SQLStorage)(nil)

// Begin implements Storage: one upsert takes a missing or expired record, else the row is read.
func (s *SQLStorage) Begin(ctx context.Context, c Claim, lease time.Duration) (Record, bool, error) {
	now := s.clock.Now()
	var (
		rec     Record
		claimed bool
	)
	err := s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, `INSERT INTO idem_records
			(tenant_id, scope, idem_key, state, fingerprint, token, status, header, body, expires_us)
			VALUES ($1, $2, $3, 'in_flight', $4, $5, 0, '', NULL, $6)
			ON CONFLICT (tenant_id, scope, idem_key) DO UPDATE SET
				state = 'in_flight', fingerprint = EXCLUDED.fingerprint, token = EXCLUDED.token,
				status = 0, header = '', body = NULL, expires_us = EXCLUDED.expires_us
			WHERE idem_records.expires_us <= $7`,
			c.Tenant, c.Scope, c.Key, c.Fingerprint, c.Token, sqldb.Micros(now.Add(lease)), sqldb.Micros(now))
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil || n == 1 {
			claimed = n == 1
			return err
		}
		rec, err = s.read(ctx, tx, c.RecordKey)
		return err
	})
	return rec, claimed, err
}

func (s *SQLStorage) read(ctx context.Context, tx *sqldb.Tx, k RecordKey) (Record, error) {
	var (
		rec    Record
		state  string
		header string
		body   []byte
	)
	err := tx.QueryRow(ctx, `SELECT state, fingerprint, status, header, body FROM idem_records
		WHERE tenant_id = $1 AND scope = $2 AND idem_key = $3`, k.Tenant, k.Scope, k.Key).
		Scan(&state, &rec.Fingerprint, &rec.Response.Status, &header, &body)
	if err != nil {
		return Record{}, err
	}
	rec.State = State(state)
	if rec.State == StateCompleted {
		if rec.Response.Header, err = decodeHeader(header); err != nil {
			return Record{}, err
		}
		rec.Response.Body = emptyNil(body)
	} else {
		rec.Response = Response{}
	}
	return rec, nil
}

// Complete implements Storage.
func (s *SQLStorage) Complete(ctx context.Context, c Claim, resp Response, ttl time.Duration) error {
	header, err := encodeHeader(resp.Header)
	if err != nil {
		return err
	}
	now := s.clock.Now()
	return s.execOne(ctx, `UPDATE idem_records SET state = 'completed', status = $5, header = $6, body = $7,
			expires_us = $8
		WHERE tenant_id = $1 AND scope = $2 AND idem_key = $3 AND token = $4
			AND state = 'in_flight' AND expires_us > $9`,
		c.Tenant, c.Scope, c.Key, c.Token, resp.Status, header, emptyNil(resp.Body),
		sqldb.Micros(now.Add(ttl)), sqldb.Micros(now))
}

// Abandon implements Storage.
func (s *SQLStorage) Abandon(ctx context.Context, c Claim) error {
	return s.execOne(ctx, `DELETE FROM idem_records
		WHERE tenant_id = $1 AND scope = $2 AND idem_key = $3 AND token = $4
			AND state = 'in_flight' AND expires_us > $5`,
		c.Tenant, c.Scope, c.Key, c.Token, sqldb.Micros(s.clock.Now()))
}

// execOne runs one write and turns "no row touched" into ErrClaimLost.
func (s *SQLStorage) execOne(ctx context.Context, query string, args ...any) error {
	return s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, query, args...)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err == nil && n == 0 {
			err = ErrClaimLost
		}
		return err
	})
}

// Purge deletes up to limit expired records and returns how many it deleted. Run it periodically
// (every node may: deleting an expired row twice is harmless).
func (s *SQLStorage) Purge(ctx context.Context, limit int) (int64, error) {
	var n int64
	err := s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, `DELETE FROM idem_records WHERE (tenant_id, scope, idem_key) IN (
			SELECT tenant_id, scope, idem_key FROM idem_records WHERE expires_us <= $1 LIMIT $2)
			AND expires_us <= $1`,
			sqldb.Micros(s.clock.Now()), limit)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, err
}
