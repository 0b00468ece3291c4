package task

import (
	"embed"

	"github.com/perkhq/perk/internal/platform/sqldb"
)

//go:embed migrations
var migrationFiles embed.FS

// Migrations is the task center's migration set (module "task"), for sqldb.DB.Migrate.
var Migrations = sqldb.Migrations{Module: "task", FS: migrationFiles, Dir: "migrations"}
