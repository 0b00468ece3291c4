package ledger

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/perkhq/perk/internal/platform/ids"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// GrantParams describes value issued to a user.
type GrantParams struct {
	TenantID string
	UserID   string
	Asset    string
	Amount   int64
	// BusinessKey makes the grant idempotent: a second grant with the same key (within the tenant)
	// returns the first entry and writes nothing.
	BusinessKey string
	// Expiry is when the granted value expires (default never).
	Expiry Expiry
	// Location is the tenant's time zone, for period expiries (nil means UTC).
	Location   *time.Location
	SourceKind string
	SourceID   string
	Reason     string
}

type grantRequest struct {
	p posting
}

type grantResult struct {
	entry   Entry
	created bool
}

// GrantTx posts a grant inside the caller's transaction: the entry, the user's balance and lot,
// the issuance account and the event are written in tx and commit or roll back with it. A grant
// whose business key exists returns the existing entry with created=false and changes nothing; if
// that entry differs in kind, user, asset or amount, the result is a Conflict
// (ledger-key-reused). GrantTx never leaves tx unusable on a duplicate key.
func (s *Service) GrantTx(ctx context.Context, tx *sqldb.Tx, p GrantParams) (Entry, bool, error) {
	pst, err := s.prepareGrant(ctx, p)
	if err != nil {
		return Entry{}, false, err
	}
	results, err := s.postGrants(ctx, tx, []posting{pst}, shardOf(p.UserID))
	if err != nil {
		return Entry{}, false, err
	}
	return unpack(results[0])
}

// GrantManyTx posts several grants inside the caller's transaction with the set-based statements
// of the group commit: one multi-row insert of the entries, one upsert of the accounts, one of the
// lots, one batch of events (per 512 grants). It returns, per grant and in order, the entry and
// whether it was created: a grant whose business key exists (in the database or earlier in ps)
// gets the existing entry with created=false. An invalid grant or a key reused for a different
// movement fails the call; writes already made in tx are then the caller's to roll back.
func (s *Service) GrantManyTx(ctx context.Context, tx *sqldb.Tx, ps []GrantParams) ([]Entry, []bool, error) {
	reqs := make([]grantRequest, len(ps))
	for i, p := range ps {
		pst, err := s.prepareGrant(ctx, p)
		if err != nil {
			return nil, nil, err
		}
		reqs[i] = grantRequest{p: pst}
	}
	leaders, follow := dedupe(reqs)
	posted, err := s.postGrants(ctx, tx, leaderPostings(reqs, leaders), rand.IntN(systemShards))
	if err != nil {
		return nil, nil, err
	}
	entries, created := make([]Entry, len(ps)), make([]bool, len(ps))
	for i, r := range spread(reqs, leaders, follow, posted) {
		if r.Err != nil {
			return nil, nil, r.Err
		}
		entries[i], created[i] = r.Value.entry, r.Value.created
	}
	return entries, created, nil
}

// Grant posts a grant in its own transaction, coalesced with concurrent grants into one group
// commit. It returns once the transaction holding the grant has committed (the entry is durable),
// with the same duplicate-key behaviour as GrantTx. Never call it while holding a write
// transaction on SQLite: the committer needs the one writer connection.
func (s *Service) Grant(ctx context.Context, p GrantParams) (Entry, bool, error) {
	pst, err := s.prepareGrant(ctx, p)
	if err != nil {
		return Entry{}, false, err
	}
	r, err := s.committer.Do(ctx, grantRequest{p: pst})
	if err != nil {
		return Entry{}, false, err
	}
	return r.entry, r.created, nil
}

func unpack(r Result[grantResult]) (Entry, bool, error) {
	if r.Err != nil {
		return Entry{}, false, r.Err
	}
	return r.Value.entry, r.Value.created, nil
}

// prepareGrant validates a grant and builds its entry.
func (s *Service) prepareGrant(ctx context.Context, p GrantParams) (posting, error) {
	now := s.clock.Now()
	var fs problem.Fields
	checkTenant(&fs, p.TenantID)
	checkUser(&fs, p.UserID)
	if err := s.checkAsset(ctx, &fs, p.TenantID, p.Asset); err != nil {
		return posting{}, err
	}
	checkAmount(&fs, p.Amount)
	checkKey(&fs, "business_key", p.BusinessKey)
	checkSource(&fs, p.SourceKind, p.SourceID)
	if len(p.Reason) > 500 {
		fs.Add("reason", "must be at most 500 characters")
	}
	lot := p.Expiry.expiresAt(&fs, "expiry", now, p.Location)
	if err := fs.Err("the grant is invalid"); err != nil {
		return posting{}, err
	}
	return posting{lot: lot, Entry: Entry{ID: ids.New("led", now), TenantID: p.TenantID, UserID: p.UserID,
		Kind: KindGrant, Asset: p.Asset, Amount: p.Amount, Debit: AccountIssuance, Credit: p.UserID, Delta: p.Amount,
		BusinessKey: p.BusinessKey, SourceKind: p.SourceKind, SourceID: p.SourceID, Reason: p.Reason,
		LotExpiresAt: lotTime(lot), CreatedAt: now}}, nil
}

// postGrants writes grants with set-based statements and returns one result per posting. Every
// business key in ps must be distinct. Per-grant outcomes (a reused key) are in the results; the
// error is for the batch.
func (s *Service) postGrants(ctx context.Context, tx *sqldb.Tx, ps []posting, shard int) ([]Result[grantResult], error) {
	now := s.clock.Now()
	var (
		inserted map[string]bool
		err      error
	)
	if s.db.Dialect() == sqldb.Postgres {
		inserted, err = postGrantsPostgres(ctx, tx, ps, shard, now)
	} else {
		inserted, err = s.postGrantsSteps(ctx, tx, ps, shard, now)
	}
	if err != nil {
		return nil, err
	}
	results := make([]Result[grantResult], len(ps))
	if err := s.resolveDuplicates(ctx, tx, ps, inserted, results); err != nil {
		return nil, err
	}
	var posted []Entry
	for i, p := range ps {
		if inserted[p.ID] {
			results[i].Value = grantResult{entry: p.Entry, created: true}
			posted = append(posted, p.Entry)
		}
	}
	if err := s.emit(ctx, tx, posted); err != nil {
		return nil, err
	}
	s.posted(tx, posted)
	return results, nil
}

// postGrantsSteps is postGrants on SQLite, where a statement is a function call rather than a
// round trip and the one writer needs no lock order: one multi-row INSERT of the entries
// (duplicates skipped), then one upsert of the accounts (users and issuance) and one of the lots.
func (s *Service) postGrantsSteps(ctx context.Context, tx *sqldb.Tx, ps []posting, shard int, now time.Time) (map[string]bool, error) {
	inserted, err := insertEntries(ctx, tx, ps)
	if err != nil || len(inserted) == 0 {
		return inserted, err
	}
	deltas := map[accountKey]int64{}
	lots := map[lotKey]int64{}
	for _, p := range ps {
		if inserted[p.ID] {
			deltas[accountKey{p.TenantID, p.UserID, p.Asset, 0}] += p.Amount
			deltas[accountKey{p.TenantID, AccountIssuance, p.Asset, shard}] -= p.Amount
			lots[lotKey{p.TenantID, p.UserID, p.Asset, p.lot}] += p.Amount
		}
	}
	if err := upsertAccounts(ctx, tx, deltas, now); err != nil {
		return nil, err
	}
	return inserted, addToLots(ctx, tx, lots, now, func() string { return ids.New("lot", now) })
}

// grantStatementPG posts grants on PostgreSQL in one round trip: data-modifying CTEs insert the
// entries (duplicates skipped) and, from the rows actually inserted, add to the users' accounts,
// their lots and the issuance account. Each step reads the previous one's count, which makes
// PostgreSQL run them in that order (users, lots, then the shared issuance row), the lock order
// every other writer follows. Parameters after the entries: now, shard.
const grantStatementPG = `WITH ins AS (
	INSERT INTO ledger_entries (` + entryColumns + `) VALUES %s
	ON CONFLICT (tenant_id, business_key) DO NOTHING
	RETURNING id, tenant_id, user_id, asset, amount, lot_expires_at
), acc AS (
	INSERT INTO ledger_accounts AS a (tenant_id, user_id, asset, shard, balance, held, created_at, updated_at)
	SELECT tenant_id, user_id, asset, 0, SUM(amount), 0, $%[2]d::bigint, $%[2]d::bigint FROM ins
	GROUP BY tenant_id, user_id, asset ORDER BY tenant_id, user_id, asset
	ON CONFLICT (tenant_id, user_id, asset, shard) DO UPDATE SET balance = a.balance + excluded.balance,
		updated_at = excluded.updated_at
	RETURNING 1
), lots AS (
	INSERT INTO ledger_lots AS l (tenant_id, user_id, asset, expires_at, id, granted, remaining, held, expired,
		created_at, updated_at)
	SELECT tenant_id, user_id, asset, lot_expires_at, 'lot_' || replace(gen_random_uuid()::text, '-', ''),
		SUM(amount), SUM(amount), 0, 0, $%[2]d::bigint, $%[2]d::bigint
	FROM ins WHERE (SELECT COUNT(*) FROM acc) >= 0
	GROUP BY tenant_id, user_id, asset, lot_expires_at ORDER BY tenant_id, user_id, asset, lot_expires_at
	ON CONFLICT (tenant_id, user_id, asset, expires_at) DO UPDATE SET granted = l.granted + excluded.granted,
		remaining = l.remaining + excluded.remaining, updated_at = excluded.updated_at
	RETURNING 1
), sys AS (
	INSERT INTO ledger_accounts AS a (tenant_id, user_id, asset, shard, balance, held, created_at, updated_at)
	SELECT tenant_id, '` + AccountIssuance + `', asset, $%[3]d::int, -SUM(amount), 0, $%[2]d::bigint, $%[2]d::bigint
	FROM ins WHERE (SELECT COUNT(*) FROM lots) >= 0
	GROUP BY tenant_id, asset ORDER BY tenant_id, asset
	ON CONFLICT (tenant_id, user_id, asset, shard) DO UPDATE SET balance = a.balance + excluded.balance,
		updated_at = excluded.updated_at
	RETURNING 1
)
SELECT id FROM ins WHERE (SELECT COUNT(*) FROM sys) >= 0`

// postGrantsPostgres runs grantStatementPG over ps, in chunks.
func postGrantsPostgres(ctx context.Context, tx *sqldb.Tx, ps []posting, shard int, now time.Time) (map[string]bool, error) {
	inserted := make(map[string]bool, len(ps))
	for start := 0; start < len(ps); start += chunk {
		part := ps[start:min(start+chunk, len(ps))]
		var vals strings.Builder
		vals.WriteString(sqldb.Postgres.Tuples(len(part), entryCols))
		args := make([]any, 0, entryCols*len(part)+2)
		for _, p := range part {
			args = append(args, p.args()...)
		}
		args = append(args, sqldb.Micros(now), shard)
		q := fmt.Sprintf(grantStatementPG, vals.String(), len(args)-1, len(args))
		rows, err := tx.Query(ctx, q, args...)
		if err != nil {
			return nil, fmt.Errorf("ledger: post grants: %w", err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, err
			}
			inserted[id] = true
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("ledger: post grants: %w", err)
		}
	}
	return inserted, nil
}

// resolveDuplicates fills the results of the postings that were not inserted: the existing entry
// when it is the same grant, a Conflict when the key was used for something else.
func (s *Service) resolveDuplicates(ctx context.Context, tx *sqldb.Tx, ps []posting, inserted map[string]bool, results []Result[grantResult]) error {
	keys := map[string][]string{} // tenant → keys not inserted
	for _, p := range ps {
		if !inserted[p.ID] {
			keys[p.TenantID] = append(keys[p.TenantID], p.BusinessKey)
		}
	}
	for tenantID, ks := range keys {
		existing, err := entriesByKey(ctx, tx, tx.Dialect(), tenantID, ks)
		if err != nil {
			return err
		}
		for i, p := range ps {
			if inserted[p.ID] || p.TenantID != tenantID {
				continue
			}
			e, ok := existing[p.BusinessKey]
			if !ok {
				// Only possible if the row vanished, which append-only forbids.
				results[i].Err = problem.Unavailable("the grant could not be posted; retry")
				continue
			}
			results[i] = sameEntry(e, p.Entry)
		}
	}
	return nil
}

// sameEntry answers a repeated business key: the existing entry, or a Conflict when the repeat
// is not the same movement (the existing entry is kept in Value, for followers to compare with).
func sameEntry(existing, want Entry) Result[grantResult] {
	if existing.Kind != want.Kind || existing.UserID != want.UserID || existing.Asset != want.Asset ||
		existing.Amount != want.Amount {
		return Result[grantResult]{Value: grantResult{entry: existing}, Err: keyReused(want.BusinessKey, existing)}
	}
	return Result[grantResult]{Value: grantResult{entry: existing}}
}

func keyReused(key string, existing Entry) error {
	return problem.Conflict("business key %q was already used for a %s of %d %s to %s", key, existing.Kind,
		existing.Amount, existing.Asset, existing.UserID).WithCode("ledger-key-reused").
		WithField("business_key", "already used for a different entry").With("entry_id", existing.ID)
}

// flushGrants is the group committer's batch: grants sharing a business key are posted once (the
// others get the same answer), the rest go through postGrants in one transaction. Should the
// batch fail as a whole, each grant is retried in a transaction of its own, so one bad grant
// cannot fail the others.
func (s *Service) flushGrants(ctx context.Context, reqs []grantRequest) []Result[grantResult] {
	leaders, follow := dedupe(reqs)
	ps := leaderPostings(reqs, leaders)
	var leaderResults []Result[grantResult]
	shard := rand.IntN(systemShards)
	err := s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		var err error
		leaderResults, err = s.postGrants(ctx, tx, ps, shard)
		return err
	})
	if err != nil {
		leaderResults = s.postEach(ctx, ps)
	}
	return spread(reqs, leaders, follow, leaderResults)
}

// leaderPostings are the postings of the leaders of reqs (see dedupe).
func leaderPostings(reqs []grantRequest, leaders []int) []posting {
	ps := make([]posting, len(leaders))
	for i, li := range leaders {
		ps[i] = reqs[li].p
	}
	return ps
}

// spread gives every request its result from its leader's (see dedupe): a leader its own, a
// follower the entry that holds its key (see follower).
func spread(reqs []grantRequest, leaders []int, follow map[int][]int, posted []Result[grantResult]) []Result[grantResult] {
	results := make([]Result[grantResult], len(reqs))
	for i, li := range leaders {
		results[li] = posted[i]
		for _, fi := range follow[li] {
			results[fi] = follower(posted[i], reqs[fi].p.Entry)
		}
	}
	return results
}

// dedupe picks, for each (tenant, business key), the first request as leader and lists the
// followers of each leader.
func dedupe(reqs []grantRequest) (leaders []int, follow map[int][]int) {
	first := make(map[[2]string]int, len(reqs))
	follow = map[int][]int{}
	for i, r := range reqs {
		k := [2]string{r.p.TenantID, r.p.BusinessKey}
		if li, ok := first[k]; ok {
			follow[li] = append(follow[li], i)
			continue
		}
		first[k] = i
		leaders = append(leaders, i)
	}
	return leaders, follow
}

// follower is the answer to a request that repeated its leader's business key in the same batch.
func follower(leader Result[grantResult], want Entry) Result[grantResult] {
	if leader.Value.entry.ID == "" {
		return Result[grantResult]{Err: leader.Err}
	}
	// The entry holding the key: the leader's, or an older one the leader collided with.
	return sameEntry(leader.Value.entry, want)
}

// postEach posts grants one transaction each.
func (s *Service) postEach(ctx context.Context, ps []posting) []Result[grantResult] {
	out := make([]Result[grantResult], len(ps))
	for i, p := range ps {
		err := s.db.Tx(ctx, func(tx *sqldb.Tx) error {
			rs, err := s.postGrants(ctx, tx, []posting{p}, shardOf(p.UserID))
			if err == nil {
				out[i] = rs[0]
			}
			return err
		})
		if err != nil {
			out[i] = Result[grantResult]{Err: err}
		}
	}
	return out
}
