package tenant

import (
	"context"
	"sync"
	"time"
)

// userVarsTTL is how long a node reuses a user's profile for rules. SetProfile drops the user's
// entry on the node that made the change; other nodes see it when their entry expires.
const userVarsTTL = 2 * time.Second

// maxCachedUserVars bounds the cache; it is emptied when full.
const maxCachedUserVars = 100_000

// userVarsCache remembers users' rule variables (Profile.UserVars) for userVarsTTL. As in the key
// cache, every drop moves an epoch and a read stores only under the epoch it began in, so a read
// that saw a profile before a change committed cannot store it after the drop.
type userVarsCache struct {
	mu      sync.Mutex
	entries map[string]cachedUserVars // tenant/user → entry
	epoch   uint64
}

type cachedUserVars struct {
	vars    map[string]any
	expires time.Time
}

// UserVars is the `user` rules see for a user — Profile(...).UserVars() — served from a per-node
// cache for a couple of seconds (the task center reads it for every event it applies).
func (s *Service) UserVars(ctx context.Context, tenantID, userID string) (map[string]any, error) {
	c := &s.userVars
	key := tenantID + "/" + userID
	now := s.opts.Clock.Now()
	c.mu.Lock()
	e, ok := c.entries[key]
	epoch := c.epoch
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.vars, nil
	}
	p, err := s.Profile(ctx, tenantID, userID)
	if err != nil {
		return nil, err
	}
	vars := p.UserVars()
	c.mu.Lock()
	defer c.mu.Unlock()
	if epoch == c.epoch {
		if c.entries == nil || len(c.entries) >= maxCachedUserVars {
			c.entries = map[string]cachedUserVars{}
		}
		c.entries[key] = cachedUserVars{vars: vars, expires: now.Add(userVarsTTL)}
	}
	return vars, nil
}

// drop forgets a user's variables on this node.
func (c *userVarsCache) drop(tenantID, userID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	delete(c.entries, tenantID+"/"+userID)
}
