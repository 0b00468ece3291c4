package task

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/perkhq/perk/internal/catalog"
	"github.com/perkhq/perk/internal/platform/rules"
)

// The CEL environments of task conditions.
var (
	// triggerEnv: trigger filters see the event and the user's attributes.
	triggerEnv = rules.MustNewEnv("task.trigger",
		rules.Var{Name: "event", Type: rules.MapType},
		rules.Var{Name: "user", Type: rules.MapType})
	// audienceEnv: audiences see the user's attributes.
	audienceEnv = rules.MustNewEnv("task.audience", rules.Var{Name: "user", Type: rules.MapType})
)

// programs holds every compiled task condition, per (resource, version, expression).
var programs = rules.NewCache(0)

// compiled is one published version of a task, parsed and with its conditions compiled. It is
// immutable and shared.
type compiled struct {
	key      string
	version  int
	spec     Spec
	filter   *rules.Program
	audience *rules.Program
	// needsUser: a condition reads the user's attributes.
	needsUser bool
	// err is why the version cannot be used (it validated at publish, so only a node without a
	// component the spec needs gets here).
	err error
}

// compile parses and compiles a published version of a task.
func compile(p catalog.Published) *compiled {
	c := &compiled{key: p.Key, version: p.Version}
	if err := json.Unmarshal(p.Spec, &c.spec); err != nil {
		c.err = fmt.Errorf("task %s version %d: %w", p.Key, p.Version, err)
		return c
	}
	key := rules.CacheKey{Resource: "task/" + p.ResourceID, Version: int64(p.Version)}
	var err error
	if f := c.spec.Trigger.Filter; f != "" {
		if c.filter, err = programs.Get(triggerEnv, key, f, rules.BoolType); err != nil {
			c.err = fmt.Errorf("task %s version %d: filter: %w", p.Key, p.Version, err)
		}
		c.needsUser = mentionsUser(f)
	}
	if a := c.spec.Claim.Audience; a != "" {
		if c.audience, err = programs.Get(audienceEnv, key, a, rules.BoolType); err != nil {
			c.err = fmt.Errorf("task %s version %d: audience: %w", p.Key, p.Version, err)
		}
		c.needsUser = true
	}
	return c
}

// errOrNil is c's error (nil for a nil c).
func (c *compiled) errOrNil() error {
	if c == nil {
		return nil
	}
	return c.err
}

// mentionsUser is a cheap over-approximation of "the expression reads user".
func mentionsUser(expr string) bool { return strings.Contains(expr, "user") }

// matches reports whether the version is triggered by an event of type typ.
func (c *compiled) triggeredBy(typ string) bool {
	return slices.Contains(c.spec.Trigger.EventTypes, typ)
}

// index is one tenant's live tasks, as the snapshot serves them (catalog Kind.Index).
type index struct {
	byKey  map[string]*compiled
	byType map[string][]*compiled
	// ordered lists the tasks by Spec.Order, then key.
	ordered []*compiled
}

// buildIndex is the task kind's catalog index.
func buildIndex(items []catalog.Published) any {
	idx := &index{byKey: make(map[string]*compiled, len(items)), byType: map[string][]*compiled{}}
	for _, p := range items {
		c := compile(p)
		idx.byKey[p.Key] = c
		idx.ordered = append(idx.ordered, c)
		for _, typ := range c.spec.Trigger.EventTypes {
			idx.byType[typ] = append(idx.byType[typ], c)
		}
	}
	slices.SortFunc(idx.ordered, func(a, b *compiled) int {
		return cmp.Or(cmp.Compare(a.spec.Order, b.spec.Order), strings.Compare(a.key, b.key))
	})
	for _, typ := range slices.Collect(maps.Keys(idx.byType)) {
		slices.SortFunc(idx.byType[typ], func(a, b *compiled) int { return strings.Compare(a.key, b.key) })
	}
	return idx
}
