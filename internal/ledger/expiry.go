package ledger

import (
	"time"

	"github.com/perkhq/perk/internal/platform/problem"
)

// ExpiryPolicy says when granted value expires.
type ExpiryPolicy string

// The expiry policies. Periods are computed in the tenant's time zone.
const (
	// ExpireNever keeps the value until spent (the default).
	ExpireNever ExpiryPolicy = "never"
	// ExpireAt expires at a fixed instant (Expiry.At), which must be in the future.
	ExpireAt ExpiryPolicy = "fixed"
	// ExpireAfterDays keeps the value through the end of the local day Expiry.Days days from now.
	ExpireAfterDays ExpiryPolicy = "days"
	// ExpireEndOfMonth keeps the value through the end of the current local month.
	ExpireEndOfMonth ExpiryPolicy = "end_of_month"
	// ExpireEndOfYear keeps the value through the end of the current local year.
	ExpireEndOfYear ExpiryPolicy = "end_of_year"
)

// maxExpiryDays bounds ExpireAfterDays (100 years).
const maxExpiryDays = 36500

// Expiry is a grant's expiry policy with its parameter.
type Expiry struct {
	Policy ExpiryPolicy `json:"policy"`
	// At is the instant of a fixed expiry.
	At time.Time `json:"at,omitzero"`
	// Days is the number of days of an ExpireAfterDays policy (1 to 36500).
	Days int `json:"days,omitempty"`
}

// expiresAt turns the policy into the stored lot expiry (neverLot for never). loc is the tenant's
// time zone (nil means UTC). Problems are added to fs under path.
func (e Expiry) expiresAt(fs *problem.Fields, path string, now time.Time, loc *time.Location) int64 {
	if loc == nil {
		loc = time.UTC
	}
	local := now.In(loc)
	day := time.Date(local.Year(), local.Month(), local.Day(), 0, 0, 0, 0, loc)
	switch e.Policy {
	case "", ExpireNever:
		return neverLot
	case ExpireAt:
		if !e.At.After(now) {
			fs.Add(path+".at", "must be in the future")
			return neverLot
		}
		return e.At.UnixMicro()
	case ExpireAfterDays:
		if e.Days < 1 || e.Days > maxExpiryDays {
			fs.Add(path+".days", "must be between 1 and %d", maxExpiryDays)
			return neverLot
		}
		return day.AddDate(0, 0, e.Days+1).UnixMicro()
	case ExpireEndOfMonth:
		return time.Date(local.Year(), local.Month()+1, 1, 0, 0, 0, 0, loc).UnixMicro()
	case ExpireEndOfYear:
		return time.Date(local.Year()+1, 1, 1, 0, 0, 0, 0, loc).UnixMicro()
	}
	fs.Add(path+".policy", "must be one of never, fixed, days, end_of_month, end_of_year")
	return neverLot
}

// lotTime turns a stored lot expiry into a time, nil for never (and for the debt lot).
func lotTime(expiresAt int64) *time.Time {
	if expiresAt == neverLot || expiresAt == debtLot {
		return nil
	}
	t := time.UnixMicro(expiresAt).UTC()
	return &t
}
