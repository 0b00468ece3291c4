package config_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/config"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		change func(*config.Config)
		want   []config.Problem
	}{
		{"empty data dir", func(c *config.Config) { c.DataDir = " " },
			[]config.Problem{{"data_dir", "must not be empty"}}},
		{"addr without port", func(c *config.Config) { c.Server.Addr = "localhost" },
			[]config.Problem{{"server.addr", `want host:port, e.g. 127.0.0.1:8080, got "localhost"`}}},
		{"addr bad port", func(c *config.Config) { c.Server.Addr = "localhost:99999" },
			[]config.Problem{{"server.addr", `want host:port, e.g. 127.0.0.1:8080, got "localhost:99999"`}}},
		{"relative base url", func(c *config.Config) { c.Server.BaseURL = "/api" },
			[]config.Problem{{"server.base_url", `want an absolute http:// or https:// URL without query or fragment, got "/api"`}}},
		{"base url with query", func(c *config.Config) { c.Server.BaseURL = "https://x.example/?a=1" },
			[]config.Problem{{"server.base_url", `want an absolute http:// or https:// URL without query or fragment, got "https://x.example/?a=1"`}}},
		{"events limits out of range", func(c *config.Config) {
			c.Events.MaxEventBytes, c.Events.MaxBatch, c.Events.MaxLateness = 2<<20, 0, 0
		}, []config.Problem{
			{"events.max_batch", "must be at least 1, got 0"},
			{"events.max_event_bytes", "must be at most 1048576, got 2097152"},
			{"events.max_lateness", "must be positive, got 0s"},
		}},
		{"tasks batch too big", func(c *config.Config) { c.Tasks.BatchSize = 5000 },
			[]config.Problem{{"tasks.batch_size", "must be at most 4096, got 5000"}}},
		{"unknown rollback policy", func(c *config.Config) { c.Coupons.RollbackPolicy = "always" },
			[]config.Problem{{"coupons.rollback_policy", `must be one of restore_if_valid, never_restore, got "always"`}}},
		{"tiny body", func(c *config.Config) { c.Server.MaxBodyBytes = 10 },
			[]config.Problem{{"server.max_body_bytes", "must be at least 1024, got 10"}}},
		{"zero timeouts", func(c *config.Config) {
			c.Server.ReadTimeout, c.Server.WriteTimeout, c.Server.ShutdownTimeout = 0, 0, -1
		}, []config.Problem{
			{"server.read_timeout", "must be positive, got 0s"},
			{"server.shutdown_timeout", "must be positive, got -1ns"},
			{"server.write_timeout", "must be positive, got 0s"},
		}},
		{"mysql url", func(c *config.Config) { c.Database.URL = "mysql://db/perk" },
			[]config.Problem{{"database.url", "want a postgres:// or postgresql:// URL, or empty for the embedded SQLite store"}}},
		{"read url without url", func(c *config.Config) { c.Database.ReadURL = "postgres://replica/perk" },
			[]config.Problem{{"database.read_url", "needs database.url: the embedded SQLite store has no read replica"}}},
		{"read url not postgres", func(c *config.Config) {
			c.Database.URL, c.Database.ReadURL = "postgresql://db/perk", "sqlite://x"
		}, []config.Problem{{"database.read_url", "want a postgres:// or postgresql:// URL"}}},
		{"pool sizes", func(c *config.Config) {
			c.Database.MaxOpenConns, c.Database.SQLite.ReadConns, c.Database.SQLite.BusyTimeout = 0, 0, 0
		}, []config.Problem{
			{"database.max_open_conns", "must be at least 1, got 0"},
			{"database.sqlite.busy_timeout", "must be positive, got 0s"},
			{"database.sqlite.read_conns", "must be at least 1, got 0"},
		}},
		{"bus url", func(c *config.Config) { c.Bus.URL = "nats://a:4222, tls://b:4222" },
			[]config.Problem{{"bus.url", "want nats://host:port, several separated by commas, or empty for the embedded server"}}},
		{"bus prefix", func(c *config.Config) { c.Bus.Prefix = "a.b" },
			[]config.Problem{{"bus.prefix", `may contain only letters, digits, '_' and '-', got "a.b"`}}},
		{"bus store", func(c *config.Config) { c.Bus.Embedded.MaxStoreBytes = 1024 },
			[]config.Problem{{"bus.embedded.max_store_bytes", "must be at least 1048576, got 1024"}}},
		{"redis url", func(c *config.Config) { c.Redis.URL = "http://cache" },
			[]config.Problem{{"redis.url", "want a redis:// or rediss:// URL, or empty for the in-process store"}}},
		{"redis url and cluster", func(c *config.Config) {
			c.Redis.URL, c.Redis.ClusterAddrs = "redis://a:6379", []string{"b:6379", "c"}
		}, []config.Problem{
			{"redis.cluster_addrs", "set either redis.url or redis.cluster_addrs, not both"},
			{"redis.cluster_addrs.1", `want host:port, e.g. 10.0.0.1:6379, got "c"`},
		}},
		{"redis hash tag in prefix", func(c *config.Config) { c.Redis.KeyPrefix = "{perk}:" },
			[]config.Problem{{"redis.key_prefix", "must not contain '{' or '}': they mark Redis Cluster hash tags"}}},
		{"idempotency", func(c *config.Config) {
			c.Idempotency = config.Idempotency{Storage: "memcached", TTL: config.Seconds(59), DefaultPolicy: "ignore"}
		}, []config.Problem{
			{"idempotency.default_policy", `must be one of replay, duplicate, fail, got "ignore"`},
			{"idempotency.storage", `must be one of auto, redis, sql, got "memcached"`},
			{"idempotency.ttl", "must be at least 1m, got 59s"},
		}},
		{"idempotency in redis without redis", func(c *config.Config) { c.Idempotency.Storage = config.IdemStorageRedis },
			[]config.Problem{{"idempotency.storage", `"redis" needs redis.url or redis.cluster_addrs`}}},
		{"outbox", func(c *config.Config) {
			c.Outbox = config.Outbox{PollInterval: 0, BatchSize: 10_001, MaxBackoff: 0}
		}, []config.Problem{
			{"outbox.batch_size", "must be between 1 and 10000, got 10001"},
			{"outbox.max_backoff", "must be positive, got 0s"},
			{"outbox.poll_interval", "must be positive, got 0s"},
		}},
		{"outbox backoff below poll", func(c *config.Config) { c.Outbox.MaxBackoff = config.Millis(100) },
			[]config.Problem{{"outbox.max_backoff", "must not be shorter than outbox.poll_interval (200ms), got 100ms"}}},
		{"catalog", func(c *config.Config) { c.Catalog.RefreshInterval = config.Millis(99) },
			[]config.Problem{{"catalog.refresh_interval", "must be at least 100ms, got 99ms"}}},
		{"auth", func(c *config.Config) { c.Auth.TokenLeeway, c.Auth.KeyTouchInterval = -1, -1 },
			[]config.Problem{
				{"auth.key_touch_interval", "must not be negative, got -1ns"},
				{"auth.token_leeway", "must not be negative, got -1ns"},
			}},
		{"log", func(c *config.Config) { c.Log = config.Log{Level: "trace", Format: "xml"} },
			[]config.Problem{
				{"log.format", `must be one of json, text, got "xml"`},
				{"log.level", `must be one of debug, info, warn, error, got "trace"`},
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := config.Default()
			tc.change(&c)
			err := c.Validate()
			var cerr *config.Error
			require.ErrorAs(t, err, &cerr)
			require.Equal(t, tc.want, cerr.Problems)
		})
	}
}

func TestValidateAcceptsProductionSetup(t *testing.T) {
	t.Parallel()
	c := config.Default()
	c.Server.Addr = "[::]:8443"
	c.Server.BaseURL = "https://perk.example.com/base"
	c.Database.URL = "postgres://perk:pw@primary:5432/perk?sslmode=require"
	c.Database.ReadURL = "postgresql://perk:pw@replica:5432/perk"
	c.Bus.URL = "nats://n1:4222,nats://n2:4222, nats://n3:4222"
	c.Bus.Prefix = "test_run-42"
	c.Redis.ClusterAddrs = []string{"10.0.0.1:6379", "[fd00::1]:6379", "redis-2:6379"}
	c.Idempotency.Storage = config.IdemStorageRedis
	c.Auth.TokenLeeway = 0
	require.NoError(t, c.Validate())
}

func TestErrorMessage(t *testing.T) {
	t.Parallel()
	one := &config.Error{Problems: []config.Problem{{Path: "server.adr", Message: "unknown key"}}}
	require.Equal(t, "config: server.adr: unknown key", one.Error())
	two := &config.Error{Problems: []config.Problem{{Path: "a", Message: "x"}, {Message: "file is bad"}}}
	require.Equal(t, "config: 2 problems: a: x; file is bad", two.Error())
}
