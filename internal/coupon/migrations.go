package coupon

import (
	"embed"

	"github.com/perkhq/perk/internal/platform/sqldb"
)

//go:embed migrations
var migrationFiles embed.FS

// Migrations is the coupon module's migration set (module "coupon"), for sqldb.DB.Migrate. The
// PostgreSQL set hash-partitions the wallet by user; the SQLite set keeps plain tables.
var Migrations = sqldb.Migrations{Module: "coupon", FS: migrationFiles, Dir: "migrations"}
