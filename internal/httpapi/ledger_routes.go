package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/perkhq/perk/internal/ledger"
	"github.com/perkhq/perk/internal/platform/problem"
	"github.com/perkhq/perk/internal/tenant"
)

type accountsOut struct {
	Body struct {
		Accounts []ledger.Account `json:"accounts"`
	}
}

type listLedgerIn struct {
	UserPath
	ListQuery
	Asset      string    `query:"asset" doc:"Only this asset"`
	From       time.Time `query:"from" doc:"RFC 3339; inclusive"`
	To         time.Time `query:"to" doc:"RFC 3339; exclusive"`
	SourceKind string    `query:"source_kind" doc:"Only entries from this kind of source, e.g. task"`
	SourceID   string    `query:"source_id" doc:"Only entries from this source"`
}

type entryPageOut struct{ Body ledger.Page[ledger.Entry] }

type adjustIn struct {
	UserPath
	Body struct {
		Asset  string `json:"asset" doc:"points, growth or an asset the merchant defined"`
		Amount int64  `json:"amount" doc:"Added when positive, removed when negative; never zero"`
		Reason string `json:"reason" doc:"Why: mandatory, kept on the entry for the audit"`
		// BusinessKey makes the adjustment idempotent within the merchant.
		BusinessKey   string `json:"business_key" doc:"Idempotency key of the adjustment, unique per merchant"`
		AllowNegative bool   `json:"allow_negative,omitempty" doc:"Let a negative adjustment take the balance below zero (a debt)"`
	}
}

type entryOut struct {
	Status int
	Body   ledger.Entry
}

type holdIn struct {
	UserPath
	Body struct {
		Asset       string `json:"asset"`
		Amount      int64  `json:"amount" doc:"Reserved from the available balance"`
		TTLSeconds  int64  `json:"ttl_seconds,omitempty" doc:"Released automatically after this long; default 900, at most 30 days"`
		BusinessKey string `json:"business_key" doc:"Idempotency key of the hold, unique per merchant"`
		SourceKind  string `json:"source_kind,omitempty" doc:"What the hold is for, e.g. order"`
		SourceID    string `json:"source_id,omitempty"`
	}
}

type holdOut struct {
	Status int
	Body   ledger.Hold
}

// HoldPath is the {hold_id} of hold routes.
type HoldPath struct {
	HoldID string `path:"hold_id" doc:"Hold id (hld_…)"`
}

type captureIn struct {
	HoldPath
	Body *struct {
		Amount int64  `json:"amount,omitempty" doc:"Capture part of the hold (the rest is released); default all of it"`
		Reason string `json:"reason,omitempty"`
	}
}

type captureOut struct {
	Body struct {
		Hold  ledger.Hold  `json:"hold"`
		Entry ledger.Entry `json:"entry"`
	}
}

type expiringIn struct {
	UserPath
	Asset string `query:"asset" default:"points" doc:"The asset (default points)"`
	Days  int    `query:"days" default:"30" doc:"The window, in days from now (1 to 3650)"`
	By    string `query:"by" default:"day" enum:"day,month" doc:"Sum per local day or month"`
}

type expiringOut struct{ Body ledger.ExpiringSummary }

type liabilityIn struct {
	Asset string `query:"asset" default:"points" doc:"The asset (default points)"`
}

type liabilityOut struct{ Body ledger.Liability }

// ledgerBodyFields are the request body fields of ledger writes, as the ledger names them.
var ledgerBodyFields = []string{"asset", "amount", "reason", "business_key", "ttl_seconds", "source_kind", "source_id"}

// ledgerLocate maps the ledger's field paths to where they are in the request.
func ledgerLocate(err error, renames map[string]string) error {
	if e, ok := problem.As(err); ok {
		for i, f := range e.Fields {
			if to, ok := renames[f.Path]; ok {
				e.Fields[i].Path = to
			} else if f.Path == "user_id" {
				e.Fields[i].Path = "path.user_id"
			}
		}
	}
	return locate(err, ledgerBodyFields...)
}

// registerLedgerRoutes adds the points and growth ledger: a user's accounts, entries and expiring
// value, adjustments, holds, and the merchant's liability.
func (s *Server) registerLedgerRoutes(svc *ledger.Service) {
	tags := []string{"Ledger"}
	register(s, Op{Operation: huma.Operation{OperationID: "list-user-accounts", Method: http.MethodGet,
		Path: "/v1/users/{user_id}/accounts", Summary: "A user's balances by asset, with what expires soon", Tags: tags},
		Access: AccessUserRead},
		func(ctx context.Context, p tenant.Principal, in *UserPath) (*accountsOut, error) {
			userID, err := userOf(p, in.UserID)
			if err != nil {
				return nil, err
			}
			accts, err := svc.Accounts(ctx, p.TenantID, userID)
			out := &accountsOut{}
			out.Body.Accounts = accts
			return out, ledgerLocate(err, nil)
		})
	register(s, Op{Operation: huma.Operation{OperationID: "list-user-ledger", Method: http.MethodGet,
		Path: "/v1/users/{user_id}/ledger", Summary: "A user's ledger entries, newest first", Tags: tags},
		Access: AccessUserRead},
		func(ctx context.Context, p tenant.Principal, in *listLedgerIn) (*entryPageOut, error) {
			userID, err := userOf(p, in.UserID)
			if err != nil {
				return nil, err
			}
			page, err := svc.Entries(ctx, ledger.ListEntriesParams{TenantID: p.TenantID, UserID: userID,
				Asset: in.Asset, From: in.From, To: in.To, SourceKind: in.SourceKind, SourceID: in.SourceID,
				Cursor: in.Cursor, Limit: in.Limit})
			return &entryPageOut{Body: page}, ledgerLocate(err, nil)
		})
	register(s, Op{Operation: huma.Operation{OperationID: "adjust-user-balance", Method: http.MethodPost,
		Path: "/v1/users/{user_id}/adjustments", Summary: "Adjust a user's balance, with a reason",
		DefaultStatus: http.StatusCreated, Tags: tags}, Access: AccessWrite},
		func(ctx context.Context, p tenant.Principal, in *adjustIn) (*entryOut, error) {
			userID, err := userOf(p, in.UserID)
			if err != nil {
				return nil, err
			}
			b := in.Body
			e, created, err := svc.Adjust(ctx, ledger.AdjustParams{TenantID: p.TenantID, UserID: userID, Asset: b.Asset,
				Amount: b.Amount, Reason: b.Reason, BusinessKey: b.BusinessKey, AllowNegative: b.AllowNegative,
				SourceKind: "adjustment", SourceID: actor(p)})
			return &entryOut{Status: createdStatus(created), Body: e}, ledgerLocate(err, nil)
		})
	s.registerHoldRoutes(svc, tags)
	s.registerLedgerReports(svc, tags)
}

func (s *Server) registerHoldRoutes(svc *ledger.Service, tags []string) {
	register(s, Op{Operation: huma.Operation{OperationID: "hold-user-balance", Method: http.MethodPost,
		Path: "/v1/users/{user_id}/holds", Summary: "Reserve part of a user's available balance for a redemption",
		DefaultStatus: http.StatusCreated, Tags: tags}, Access: AccessIntegrate},
		func(ctx context.Context, p tenant.Principal, in *holdIn) (*holdOut, error) {
			userID, err := userOf(p, in.UserID)
			if err != nil {
				return nil, err
			}
			b := in.Body
			ttl := time.Duration(0)
			switch {
			case b.TTLSeconds < 0 || b.TTLSeconds > int64(ledger.MaxHoldTTL/time.Second):
				ttl = -1 // out of range: the ledger says so, with the field
			case b.TTLSeconds > 0:
				ttl = time.Duration(b.TTLSeconds) * time.Second
			}
			h, created, err := svc.Hold(ctx, ledger.HoldParams{TenantID: p.TenantID, UserID: userID, Asset: b.Asset,
				Amount: b.Amount, TTL: ttl, BusinessKey: b.BusinessKey, SourceKind: b.SourceKind, SourceID: b.SourceID})
			return &holdOut{Status: createdStatus(created), Body: h}, ledgerLocate(err, map[string]string{"ttl": "body.ttl_seconds"})
		})
	register(s, Op{Operation: huma.Operation{OperationID: "get-hold", Method: http.MethodGet,
		Path: "/v1/holds/{hold_id}", Summary: "Get a hold", Tags: tags}, Access: AccessIntegrate},
		func(ctx context.Context, p tenant.Principal, in *HoldPath) (*holdOut, error) {
			h, err := svc.GetHold(ctx, p.TenantID, in.HoldID)
			return &holdOut{Status: http.StatusOK, Body: h}, err
		})
	register(s, Op{Operation: huma.Operation{OperationID: "capture-hold", Method: http.MethodPost,
		Path: "/v1/holds/{hold_id}/capture", Summary: "Spend what a hold reserved (all of it, or part and release the rest)",
		Tags: tags}, Access: AccessIntegrate},
		func(ctx context.Context, p tenant.Principal, in *captureIn) (*captureOut, error) {
			params := ledger.CaptureParams{TenantID: p.TenantID, HoldID: in.HoldID}
			if in.Body != nil {
				params.Amount, params.Reason = in.Body.Amount, in.Body.Reason
			}
			h, e, err := svc.Capture(ctx, params)
			out := &captureOut{}
			out.Body.Hold, out.Body.Entry = h, e
			return out, ledgerLocate(err, map[string]string{"hold_id": "path.hold_id"})
		})
	register(s, Op{Operation: huma.Operation{OperationID: "release-hold", Method: http.MethodPost,
		Path: "/v1/holds/{hold_id}/release", Summary: "Give what a hold reserved back to the available balance",
		Tags: tags}, Access: AccessIntegrate},
		func(ctx context.Context, p tenant.Principal, in *HoldPath) (*holdOut, error) {
			h, err := svc.Release(ctx, p.TenantID, in.HoldID)
			return &holdOut{Status: http.StatusOK, Body: h}, err
		})
}

func (s *Server) registerLedgerReports(svc *ledger.Service, tags []string) {
	register(s, Op{Operation: huma.Operation{OperationID: "list-user-expiring", Method: http.MethodGet,
		Path: "/v1/users/{user_id}/expiring", Summary: "What of a user's balance expires soon, per day or month",
		Tags: tags}, Access: AccessUserRead},
		func(ctx context.Context, p tenant.Principal, in *expiringIn) (*expiringOut, error) {
			userID, err := userOf(p, in.UserID)
			if err != nil {
				return nil, err
			}
			if in.Days < 1 || in.Days > 3650 {
				return nil, problem.Invalid("the window is out of range").WithField("query.days", "must be between 1 and 3650")
			}
			loc, err := s.merchantLocation(ctx, p.TenantID)
			if err != nil {
				return nil, err
			}
			within := time.Duration(in.Days) * 24 * time.Hour
			sum, err := svc.ExpiringSoon(ctx, ledger.ExpiringSoonParams{TenantID: p.TenantID, UserID: userID,
				Asset: in.Asset, Within: within, By: ledger.Period(in.By), Location: loc})
			return &expiringOut{Body: sum}, ledgerLocate(err, map[string]string{"asset": "query.asset", "by": "query.by", "within": "query.days"})
		})
	register(s, Op{Operation: huma.Operation{OperationID: "get-ledger-liability", Method: http.MethodGet,
		Path: "/v1/ledger/liability", Summary: "The merchant's outstanding balance of an asset, with issued, spent and expired",
		Tags: tags}, Access: AccessRead},
		func(ctx context.Context, p tenant.Principal, in *liabilityIn) (*liabilityOut, error) {
			l, err := svc.Liability(ctx, p.TenantID, in.Asset)
			return &liabilityOut{Body: l}, ledgerLocate(err, map[string]string{"asset": "query.asset"})
		})
}

// merchantLocation is the merchant's time zone, for per-day summaries.
func (s *Server) merchantLocation(ctx context.Context, tenantID string) (*time.Location, error) {
	m, err := s.deps.Tenants.GetMerchant(ctx, tenantID)
	if problem.Is(err, problem.KindNotFound) {
		return time.UTC, nil
	}
	if err != nil {
		return nil, err
	}
	return m.Location(), nil
}

func createdStatus(created bool) int {
	if created {
		return http.StatusCreated
	}
	return http.StatusOK
}
