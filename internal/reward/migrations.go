package reward

import (
	"embed"
	"io/fs"

	"github.com/perkhq/perk/internal/platform/sqldb"
)

//go:embed migrations
var migrationFiles embed.FS

// Migrations is the reward module's migration set (module "reward"), for sqldb.DB.Migrate.
var Migrations = sqldb.Migrations{Module: "reward", FS: mustSub(migrationFiles, "migrations")}

func mustSub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic("reward: " + err.Error())
	}
	return sub
}
