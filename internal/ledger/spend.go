package ledger

import (
	"context"
	"math"
	"time"

	"github.com/perkhq/perk/internal/platform/ids"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

// SpendParams describes value a user spends.
type SpendParams struct {
	TenantID    string
	UserID      string
	Asset       string
	Amount      int64
	BusinessKey string
	SourceKind  string
	SourceID    string
	Reason      string
}

// Spend takes value from a user's available balance, earliest-expiring lot first, in its own
// transaction. More than the available balance is refused with a Conflict (insufficient-balance,
// extension "available") and writes nothing. A repeated business key returns the first entry
// (created=false); a key used for something else is a Conflict (ledger-key-reused).
func (s *Service) Spend(ctx context.Context, p SpendParams) (Entry, bool, error) {
	pst, err := s.prepareSpend(ctx, p)
	if err != nil {
		return Entry{}, false, err
	}
	var r Result[grantResult]
	err = s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		var err error
		r, err = s.debit(ctx, tx, pst, false)
		if err == nil {
			err = r.Err
		}
		return err
	})
	if err != nil {
		return Entry{}, false, err
	}
	return unpack(r)
}

// SpendTx is Spend inside the caller's transaction. When it returns an error it has written
// nothing, so the caller may go on with tx.
func (s *Service) SpendTx(ctx context.Context, tx *sqldb.Tx, p SpendParams) (Entry, bool, error) {
	pst, err := s.prepareSpend(ctx, p)
	if err != nil {
		return Entry{}, false, err
	}
	r, err := s.debit(ctx, tx, pst, false)
	if err != nil {
		return Entry{}, false, err
	}
	return unpack(r)
}

func (s *Service) prepareSpend(ctx context.Context, p SpendParams) (posting, error) {
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
	if err := fs.Err("the spend is invalid"); err != nil {
		return posting{}, err
	}
	return posting{Entry: Entry{ID: ids.New("led", now), TenantID: p.TenantID, UserID: p.UserID, Kind: KindSpend,
		Asset: p.Asset, Amount: p.Amount, Debit: p.UserID, Credit: AccountSpent, Delta: -p.Amount,
		BusinessKey: p.BusinessKey, SourceKind: p.SourceKind, SourceID: p.SourceID, Reason: p.Reason, CreatedAt: now}}, nil
}

// AdjustParams describes a manual correction.
type AdjustParams struct {
	TenantID string
	UserID   string
	Asset    string
	// Amount is added to the balance when positive and removed when negative; never zero.
	Amount int64
	// Reason is mandatory: it says why, for the audit.
	Reason      string
	BusinessKey string
	// AllowNegative lets a negative adjustment take more than the available balance: what the lots
	// cannot cover becomes a debt, paid off by later credits before they can be spent.
	AllowNegative bool
	// Expiry applies to positive adjustments (default never); Location is the tenant's time zone.
	Expiry     Expiry
	Location   *time.Location
	SourceKind string
	SourceID   string
}

// Adjust posts a correction between the user and the adjustment account, in its own transaction.
// A negative adjustment takes from the lots like a spend and may not exceed the available balance
// (insufficient-balance) unless AllowNegative is set.
func (s *Service) Adjust(ctx context.Context, p AdjustParams) (Entry, bool, error) {
	pst, err := s.prepareAdjust(ctx, p)
	if err != nil {
		return Entry{}, false, err
	}
	var r Result[grantResult]
	err = s.db.Tx(ctx, func(tx *sqldb.Tx) error {
		var err error
		if p.Amount > 0 {
			r, err = s.credit(ctx, tx, pst)
		} else {
			r, err = s.debit(ctx, tx, pst, p.AllowNegative)
		}
		if err == nil {
			err = r.Err
		}
		return err
	})
	if err != nil {
		return Entry{}, false, err
	}
	return unpack(r)
}

func (s *Service) prepareAdjust(ctx context.Context, p AdjustParams) (posting, error) {
	now := s.clock.Now()
	var fs problem.Fields
	checkTenant(&fs, p.TenantID)
	checkUser(&fs, p.UserID)
	if err := s.checkAsset(ctx, &fs, p.TenantID, p.Asset); err != nil {
		return posting{}, err
	}
	if p.Amount == 0 || p.Amount == math.MinInt64 {
		fs.Add("amount", "must be a non-zero integer")
	} else if p.Amount > 0 {
		checkAmount(&fs, p.Amount)
	} else {
		checkAmount(&fs, -p.Amount)
	}
	switch {
	case len(p.Reason) == 0:
		fs.Add("reason", "is required: say why the balance is adjusted")
	case len(p.Reason) > 500:
		fs.Add("reason", "must be at most 500 characters")
	}
	checkKey(&fs, "business_key", p.BusinessKey)
	checkSource(&fs, p.SourceKind, p.SourceID)
	lot := int64(0)
	if p.Amount > 0 {
		lot = p.Expiry.expiresAt(&fs, "expiry", now, p.Location)
	}
	if err := fs.Err("the adjustment is invalid"); err != nil {
		return posting{}, err
	}
	e := Entry{ID: ids.New("led", now), TenantID: p.TenantID, UserID: p.UserID, Kind: KindAdjust, Asset: p.Asset,
		Amount: p.Amount, Debit: AccountAdjustment, Credit: p.UserID, Delta: p.Amount, BusinessKey: p.BusinessKey,
		SourceKind: p.SourceKind, SourceID: p.SourceID, Reason: p.Reason, LotExpiresAt: lotTime(lot), CreatedAt: now}
	if p.Amount < 0 {
		e.Amount, e.Debit, e.Credit = -p.Amount, p.UserID, AccountAdjustment
	}
	return posting{Entry: e, lot: lot}, nil
}

// insufficient is the refusal of a debit larger than the available balance.
func insufficient(available, amount int64) error {
	return problem.Conflict("the available balance is %d, less than the %d asked for", available, amount).
		WithCode("insufficient-balance").With("available", available)
}

// debit posts an entry that takes value from the user (spend, negative adjustment): it locks the
// account, answers a repeated key with the existing entry, checks the available balance, and only
// then writes — so a refusal writes nothing. With allowNegative, what the lots cannot cover is
// recorded as debt.
func (s *Service) debit(ctx context.Context, tx *sqldb.Tx, p posting, allowNegative bool) (Result[grantResult], error) {
	acct, exists, err := s.lockAccount(ctx, tx, p.TenantID, p.UserID, p.Asset, false)
	if err != nil {
		return Result[grantResult]{}, err
	}
	if e, ok, err := entryByKey(ctx, tx, tx.Dialect(), p.TenantID, p.BusinessKey); err != nil || ok {
		return sameEntry(e, p.Entry), err
	}
	if p.Amount > acct.available() && !allowNegative {
		return Result[grantResult]{}, insufficient(acct.available(), p.Amount)
	}
	if r, dup, err := s.insertOne(ctx, tx, p); err != nil || dup {
		return r, err
	}
	now := s.clock.Now()
	if !exists {
		if _, err := s.ensureAccount(ctx, tx, p.TenantID, p.UserID, p.Asset, now); err != nil {
			return Result[grantResult]{}, err
		}
	}
	lots, err := loadLots(ctx, tx, p.TenantID, p.UserID, p.Asset)
	if err != nil {
		return Result[grantResult]{}, err
	}
	netDebt(lots)
	var taken int64
	for _, a := range allocate(lots, p.Amount) {
		a.lot.take(a.amount)
		taken += a.amount
	}
	if rest := p.Amount - taken; rest > 0 {
		lots = addDebt(lots, rest, now)
	}
	if err := saveLots(ctx, tx, p.TenantID, p.UserID, p.Asset, lots, now); err != nil {
		return Result[grantResult]{}, err
	}
	return s.finish(ctx, tx, p, -p.Amount, 0, now)
}

// credit posts an entry that gives value to the user outside the group commit (positive
// adjustment): the value goes to the lot of the entry's expiry.
func (s *Service) credit(ctx context.Context, tx *sqldb.Tx, p posting) (Result[grantResult], error) {
	now := s.clock.Now()
	if _, err := s.ensureAccount(ctx, tx, p.TenantID, p.UserID, p.Asset, now); err != nil {
		return Result[grantResult]{}, err
	}
	if e, ok, err := entryByKey(ctx, tx, tx.Dialect(), p.TenantID, p.BusinessKey); err != nil || ok {
		return sameEntry(e, p.Entry), err
	}
	if r, dup, err := s.insertOne(ctx, tx, p); err != nil || dup {
		return r, err
	}
	adds := map[lotKey]int64{{p.TenantID, p.UserID, p.Asset, p.lot}: p.Amount}
	if err := addToLots(ctx, tx, adds, now, func() string { return ids.New("lot", now) }); err != nil {
		return Result[grantResult]{}, err
	}
	return s.finish(ctx, tx, p, p.Amount, 0, now)
}

// insertOne writes one entry; when its key was taken meanwhile (by a transaction on another
// account) it answers with the entry holding the key and dup=true, having written nothing.
func (s *Service) insertOne(ctx context.Context, tx *sqldb.Tx, p posting) (Result[grantResult], bool, error) {
	inserted, err := insertEntries(ctx, tx, []posting{p})
	if err != nil || inserted[p.ID] {
		return Result[grantResult]{}, false, err
	}
	e, ok, err := entryByKey(ctx, tx, tx.Dialect(), p.TenantID, p.BusinessKey)
	if err != nil {
		return Result[grantResult]{}, true, err
	}
	if !ok {
		return Result[grantResult]{Err: problem.Unavailable("the entry could not be posted; retry")}, true, nil
	}
	return sameEntry(e, p.Entry), true, nil
}

// finish updates the user's account by balanceDelta and heldDelta and the system side of the
// entry, emits the events and counts the entry; the entry is already inserted.
func (s *Service) finish(ctx context.Context, tx *sqldb.Tx, p posting, balanceDelta, heldDelta int64, now time.Time) (Result[grantResult], error) {
	if err := setAccount(ctx, tx, p.TenantID, p.UserID, p.Asset, balanceDelta, heldDelta, now); err != nil {
		return Result[grantResult]{}, err
	}
	if err := s.emit(ctx, tx, []Entry{p.Entry}); err != nil {
		return Result[grantResult]{}, err
	}
	system := p.Credit
	if system == p.UserID {
		system = p.Debit
	}
	deltas := map[accountKey]int64{{p.TenantID, system, p.Asset, shardOf(p.UserID)}: balanceDelta * -1}
	if err := upsertAccounts(ctx, tx, deltas, now); err != nil {
		return Result[grantResult]{}, err
	}
	s.posted(tx, []Entry{p.Entry})
	return Result[grantResult]{Value: grantResult{entry: p.Entry, created: true}}, nil
}
