package ledger

import (
	"embed"
	"io/fs"

	"github.com/perkhq/perk/internal/platform/sqldb"
)

//go:embed migrations
var migrationFiles embed.FS

// Migrations is the ledger's migration set (module "ledger"), for sqldb.DB.Migrate.
var Migrations = sqldb.Migrations{Module: "ledger", FS: mustSub(migrationFiles, "migrations")}

func mustSub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic("ledger: " + err.Error())
	}
	return sub
}
