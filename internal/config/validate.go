package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Limits enforced by Validate.
const (
	MinIdempotencyTTL     = time.Minute
	MinRefreshInterval    = 100 * time.Millisecond
	MaxOutboxBatchSize    = 10_000
	MinBusMaxStoreBytes   = 1 * MiB
	MinServerMaxBodyBytes = 1 * KiB
	MaxCheckpointInterval = time.Minute
)

// Validate checks every section and returns an *Error listing every
// problem, each with the dotted path of the bad field.
func (c Config) Validate() error {
	return asError(c.problems())
}

func (c Config) problems() []Problem {
	var ps problems
	if strings.TrimSpace(c.DataDir) == "" {
		ps.add("data_dir", "must not be empty")
	}
	ps = append(ps, under("server", c.Server.validate())...)
	ps = append(ps, under("database", c.Database.validate())...)
	ps = append(ps, under("bus", c.Bus.validate())...)
	ps = append(ps, under("redis", c.Redis.validate())...)
	ps = append(ps, under("idempotency", c.Idempotency.validate())...)
	if c.Idempotency.Storage == IdemStorageRedis && !c.Redis.Configured() {
		ps.add("idempotency.storage", `"redis" needs redis.url or redis.cluster_addrs`)
	}
	ps = append(ps, under("outbox", c.Outbox.validate())...)
	ps = append(ps, under("catalog", c.Catalog.validate())...)
	ps = append(ps, under("rewards", c.Rewards.validate())...)
	ps = append(ps, under("ledger", c.Ledger.validate())...)
	ps = append(ps, under("webhooks", c.Webhooks.validate())...)
	ps = append(ps, under("activity", c.Activity.validate())...)
	ps = append(ps, under("coupons", c.Coupons.validate())...)
	ps = append(ps, under("tasks", c.Tasks.validate())...)
	ps = append(ps, under("events", c.Events.validate())...)
	ps = append(ps, under("auth", c.Auth.validate())...)
	ps = append(ps, under("log", c.Log.validate())...)
	return ps
}

// problems collects a section's problems with paths relative to it.
type problems []Problem

func (ps *problems) add(path, format string, args ...any) {
	*ps = append(*ps, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

func (ps *problems) positive(path string, d Duration) {
	if d <= 0 {
		ps.add(path, "must be positive, got %s", d)
	}
}

func (ps *problems) atLeast(path string, d Duration, min time.Duration) {
	if d.Std() < min {
		ps.add(path, "must be at least %s, got %s", Duration(min), d)
	}
}

func (ps *problems) notNegative(path string, d Duration) {
	if d < 0 {
		ps.add(path, "must not be negative, got %s", d)
	}
}

func (ps *problems) minInt(path string, n, min int64) {
	if n < min {
		ps.add(path, "must be at least %d, got %d", min, n)
	}
}

func (ps *problems) maxInt(path string, n, max int64) {
	if n > max {
		ps.add(path, "must be at most %d, got %d", max, n)
	}
}

func (ps *problems) oneOf(path, got string, allowed ...string) {
	if !slices.Contains(allowed, got) {
		ps.add(path, "must be one of %s, got %q", strings.Join(allowed, ", "), got)
	}
}

// urlWithScheme checks that raw parses as a URL with one of the schemes.
func (ps *problems) urlWithScheme(path, raw, want string, schemes ...string) {
	u, err := url.Parse(raw)
	if err != nil || !slices.Contains(schemes, u.Scheme) {
		ps.add(path, "want %s", want)
	}
}

func (ps *problems) hostPort(path, addr, example string) {
	if !validHostPort(addr) {
		ps.add(path, "want host:port, e.g. %s, got %q", example, addr)
	}
}

func validHostPort(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 0 && n <= 65535
}

func (s Server) validate() []Problem {
	var ps problems
	ps.hostPort("addr", s.Addr, "127.0.0.1:8080")
	if s.BaseURL != "" {
		u, err := url.Parse(s.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			ps.add("base_url", "want an absolute http:// or https:// URL without query or fragment, got %q", s.BaseURL)
		}
	}
	ps.minInt("max_body_bytes", s.MaxBodyBytes, MinServerMaxBodyBytes)
	ps.positive("read_timeout", s.ReadTimeout)
	ps.positive("write_timeout", s.WriteTimeout)
	ps.positive("shutdown_timeout", s.ShutdownTimeout)
	return ps
}

const postgresURL = "a postgres:// or postgresql:// URL"

func (d Database) validate() []Problem {
	var ps problems
	if d.URL != "" {
		ps.urlWithScheme("url", d.URL, postgresURL+", or empty for the embedded SQLite store", "postgres", "postgresql")
	}
	if d.ReadURL != "" {
		if d.URL == "" {
			ps.add("read_url", "needs database.url: the embedded SQLite store has no read replica")
		}
		ps.urlWithScheme("read_url", d.ReadURL, postgresURL, "postgres", "postgresql")
	}
	ps.minInt("max_open_conns", int64(d.MaxOpenConns), 1)
	ps.positive("sqlite.busy_timeout", d.SQLite.BusyTimeout)
	ps.minInt("sqlite.read_conns", int64(d.SQLite.ReadConns), 1)
	ps.minInt("sqlite.cache_mib", int64(d.SQLite.CacheMiB), 2)
	ps.minInt("sqlite.read_cache_mib", int64(d.SQLite.ReadCacheMiB), 2)
	ps.notNegative("sqlite.checkpoint_interval", d.SQLite.CheckpointInterval)
	if d.SQLite.CheckpointInterval.Std() > MaxCheckpointInterval {
		ps.add("sqlite.checkpoint_interval", "must be at most %s, got %s", Duration(MaxCheckpointInterval), d.SQLite.CheckpointInterval)
	}
	return ps
}

var busPrefix = regexp.MustCompile(`^[A-Za-z0-9_-]*$`)

func (b Bus) validate() []Problem {
	var ps problems
	if b.URL != "" && !validNATSURLs(b.URL) {
		ps.add("url", "want nats://host:port, several separated by commas, or empty for the embedded server")
	}
	if !busPrefix.MatchString(b.Prefix) {
		ps.add("prefix", "may contain only letters, digits, '_' and '-', got %q", b.Prefix)
	}
	ps.minInt("embedded.max_store_bytes", b.Embedded.MaxStoreBytes, MinBusMaxStoreBytes)
	return ps
}

func validNATSURLs(list string) bool {
	for raw := range strings.SplitSeq(list, ",") {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil || u.Scheme != "nats" || u.Host == "" {
			return false
		}
	}
	return true
}

func (r Redis) validate() []Problem {
	var ps problems
	if r.URL != "" {
		ps.urlWithScheme("url", r.URL, "a redis:// or rediss:// URL, or empty for the in-process store", "redis", "rediss")
	}
	for i, addr := range r.ClusterAddrs {
		ps.hostPort(fmt.Sprintf("cluster_addrs.%d", i), addr, "10.0.0.1:6379")
	}
	if r.URL != "" && len(r.ClusterAddrs) > 0 {
		ps.add("cluster_addrs", "set either redis.url or redis.cluster_addrs, not both")
	}
	if strings.ContainsAny(r.KeyPrefix, "{}") {
		ps.add("key_prefix", "must not contain '{' or '}': they mark Redis Cluster hash tags")
	}
	return ps
}

func (i Idempotency) validate() []Problem {
	var ps problems
	ps.oneOf("storage", string(i.Storage), string(IdemStorageAuto), string(IdemStorageRedis), string(IdemStorageSQL))
	ps.atLeast("ttl", i.TTL, MinIdempotencyTTL)
	ps.oneOf("default_policy", string(i.DefaultPolicy), string(IdemPolicyReplay), string(IdemPolicyDuplicate), string(IdemPolicyFail))
	return ps
}

func (o Outbox) validate() []Problem {
	var ps problems
	ps.positive("poll_interval", o.PollInterval)
	if o.BatchSize < 1 || o.BatchSize > MaxOutboxBatchSize {
		ps.add("batch_size", "must be between 1 and %d, got %d", MaxOutboxBatchSize, o.BatchSize)
	}
	ps.positive("max_backoff", o.MaxBackoff)
	if o.MaxBackoff > 0 && o.MaxBackoff < o.PollInterval {
		ps.add("max_backoff", "must not be shorter than outbox.poll_interval (%s), got %s", o.PollInterval, o.MaxBackoff)
	}
	return ps
}

func (c Catalog) validate() []Problem {
	var ps problems
	ps.atLeast("refresh_interval", c.RefreshInterval, MinRefreshInterval)
	return ps
}

func (a Auth) validate() []Problem {
	var ps problems
	ps.notNegative("token_leeway", a.TokenLeeway)
	ps.notNegative("key_touch_interval", a.KeyTouchInterval)
	ps.notNegative("key_cache_ttl", a.KeyCacheTTL)
	if a.KeyCacheTTL.Std() > time.Minute {
		ps.add("key_cache_ttl", "must be at most 1m, so that revocations take effect quickly")
	}
	return ps
}

func (l Log) validate() []Problem {
	var ps problems
	ps.oneOf("level", string(l.Level), string(LogDebug), string(LogInfo), string(LogWarn), string(LogError))
	ps.oneOf("format", string(l.Format), string(LogJSON), string(LogText))
	return ps
}

func (c Activity) validate() []Problem {
	var ps problems
	ps.notNegative("retention", c.Retention)
	ps.positive("prune_interval", c.PruneInterval)
	return ps
}

func (c Webhooks) validate() []Problem {
	var ps problems
	ps.positive("timeout", c.Timeout)
	ps.positive("poll_interval", c.PollInterval)
	return ps
}

func (c Ledger) validate() []Problem {
	var ps problems
	ps.positive("sweep_interval", c.SweepInterval)
	ps.minInt("max_batch", int64(c.MaxBatch), 1)
	return ps
}

func (c Rewards) validate() []Problem {
	var ps problems
	ps.positive("sweep_interval", c.SweepInterval)
	ps.minInt("max_batch", int64(c.MaxBatch), 1)
	return ps
}

func (c Events) validate() []Problem {
	var ps problems
	ps.minInt("max_event_bytes", int64(c.MaxEventBytes), 1024)
	ps.maxInt("max_event_bytes", int64(c.MaxEventBytes), 1<<20)
	ps.minInt("max_batch", int64(c.MaxBatch), 1)
	ps.maxInt("max_batch", int64(c.MaxBatch), 10000)
	ps.positive("max_lateness", c.MaxLateness)
	ps.notNegative("max_future_skew", c.MaxFutureSkew)
	return ps
}

func (c Tasks) validate() []Problem {
	var ps problems
	ps.minInt("batch_size", int64(c.BatchSize), 1)
	ps.maxInt("batch_size", int64(c.BatchSize), 4096)
	ps.positive("sweep_interval", c.SweepInterval)
	return ps
}

func (c Coupons) validate() []Problem {
	var ps problems
	ps.oneOf("rollback_policy", c.RollbackPolicy, "restore_if_valid", "never_restore")
	ps.notNegative("archive_after", c.ArchiveAfter)
	ps.positive("sweep_interval", c.SweepInterval)
	ps.notNegative("wallet_cache_ttl", c.WalletCacheTTL)
	ps.minInt("wallet_cache_coupons", int64(c.WalletCacheCoupons), 1)
	ps.maxInt("wallet_cache_coupons", int64(c.WalletCacheCoupons), 100_000_000)
	return ps
}
