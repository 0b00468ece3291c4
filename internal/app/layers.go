package app

// Layer is a rank in the module DAG: a package may import only packages of a lower rank (and its own
// module's subpackages). docs/architecture.md shows the same table.
type Layer struct {
	Name string
	Rank int
	// Modules are paths relative to the repository root; a module covers its subpackages.
	Modules []string
}

// Layers is the module DAG of DESIGN §2, bottom up. The kernel is split into sub-layers because its
// pieces build on each other (the outbox needs sqldb, idem needs kv and rules).
var Layers = []Layer{
	{Name: "kernel/core", Rank: 0, Modules: []string{"internal/platform/clock", "internal/platform/ids", "internal/platform/problem",
		"internal/platform/prom", "internal/platform/seedtest"}},
	{Name: "kernel/store", Rank: 1, Modules: []string{"internal/platform/sqldb", "internal/platform/rules"}},
	{Name: "kernel/services", Rank: 2, Modules: []string{"internal/platform/bus", "internal/platform/kv"}},
	{Name: "kernel/idem", Rank: 3, Modules: []string{"internal/platform/idem"}},
	{Name: "base", Rank: 10, Modules: []string{"internal/tenant", "internal/catalog", "internal/ledger",
		"internal/wallet", "internal/webhook", "internal/activity"}},
	{Name: "capability", Rank: 20, Modules: []string{"internal/reward", "internal/coupon", "internal/level"}},
	{Name: "business", Rank: 30, Modules: []string{"internal/task", "internal/campaign", "internal/membership", "internal/ingest"}},
	{Name: "edge", Rank: 40, Modules: []string{"internal/httpapi", "client", "web"}},
	{Name: "wiring", Rank: 45, Modules: []string{"internal/config"}},
	{Name: "root", Rank: 50, Modules: []string{"internal/app"}},
	{Name: "binary", Rank: 60, Modules: []string{"cmd/perk"}},
}
