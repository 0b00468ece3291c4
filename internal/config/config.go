// Package config is perk's configuration: one typed tree with defaults,
// read from a YAML file and PERK_* environment variables, validated as a
// whole, and described by a JSON Schema.
//
// Precedence, lowest first: Default, the YAML file, environment variables,
// then command-line flags, which the cmd layer applies to the loaded Config.
package config

// Byte sizes used by the defaults.
const (
	KiB int64 = 1 << 10
	MiB int64 = 1 << 20
	GiB int64 = 1 << 30
)

// Config is the whole configuration. Each field's yaml and json names are
// its key in the file and in the schema; its environment variable is PERK_
// followed by the upper-cased dotted path with dots as underscores.
type Config struct {
	// DataDir holds the embedded database, bus and other local state.
	DataDir     string      `yaml:"data_dir" json:"data_dir"`
	Server      Server      `yaml:"server" json:"server"`
	Database    Database    `yaml:"database" json:"database"`
	Bus         Bus         `yaml:"bus" json:"bus"`
	Redis       Redis       `yaml:"redis" json:"redis"`
	Idempotency Idempotency `yaml:"idempotency" json:"idempotency"`
	Outbox      Outbox      `yaml:"outbox" json:"outbox"`
	Catalog     Catalog     `yaml:"catalog" json:"catalog"`
	Auth        Auth        `yaml:"auth" json:"auth"`
	Log         Log         `yaml:"log" json:"log"`
	Metrics     Metrics     `yaml:"metrics" json:"metrics"`
	Demo        Demo        `yaml:"demo" json:"demo"`
	Rewards     Rewards     `yaml:"rewards" json:"rewards"`
	Ledger      Ledger      `yaml:"ledger" json:"ledger"`
	Webhooks    Webhooks    `yaml:"webhooks" json:"webhooks"`
	Activity    Activity    `yaml:"activity" json:"activity"`
	Coupons     Coupons     `yaml:"coupons" json:"coupons"`
	Tasks       Tasks       `yaml:"tasks" json:"tasks"`
	Events      Events      `yaml:"events" json:"events"`
}

// Server configures the HTTP server.
type Server struct {
	// Addr is the host:port to listen on.
	Addr string `yaml:"addr" json:"addr"`
	// BaseURL is the public URL of the server; empty means derived from Addr.
	BaseURL string `yaml:"base_url" json:"base_url"`
	// MaxBodyBytes is the largest request body accepted.
	MaxBodyBytes int64 `yaml:"max_body_bytes" json:"max_body_bytes"`
	// ReadTimeout bounds reading a whole request.
	ReadTimeout Duration `yaml:"read_timeout" json:"read_timeout"`
	// WriteTimeout bounds writing a response.
	WriteTimeout Duration `yaml:"write_timeout" json:"write_timeout"`
	// ShutdownTimeout bounds the graceful shutdown.
	ShutdownTimeout Duration `yaml:"shutdown_timeout" json:"shutdown_timeout"`
}

// Database configures the SQL store.
type Database struct {
	// URL is a postgres:// or postgresql:// URL; empty means embedded
	// SQLite under DataDir.
	URL string `yaml:"url" json:"url"`
	// ReadURL is an optional PostgreSQL read replica for lag-tolerant reads.
	ReadURL string `yaml:"read_url" json:"read_url"`
	// MaxOpenConns caps the PostgreSQL connection pool.
	MaxOpenConns int `yaml:"max_open_conns" json:"max_open_conns"`
	// SQLite tunes the embedded store.
	SQLite SQLite `yaml:"sqlite" json:"sqlite"`
	// AutoMigrate applies pending migrations at start-up.
	AutoMigrate bool `yaml:"auto_migrate" json:"auto_migrate"`
}

// SQLite tunes the embedded SQLite store.
type SQLite struct {
	// BusyTimeout is how long a statement waits for a lock.
	BusyTimeout Duration `yaml:"busy_timeout" json:"busy_timeout"`
	// ReadConns is the size of the read connection pool.
	ReadConns int `yaml:"read_conns" json:"read_conns"`
	// CacheMiB is the writer connection's page cache, in MiB.
	CacheMiB int `yaml:"cache_mib" json:"cache_mib"`
	// ReadCacheMiB is each read connection's page cache, in MiB.
	ReadCacheMiB int `yaml:"read_cache_mib" json:"read_cache_mib"`
	// CheckpointInterval is how often a connection of its own checkpoints the write-ahead log;
	// zero: the writer checkpoints itself after its commits.
	CheckpointInterval Duration `yaml:"checkpoint_interval" json:"checkpoint_interval"`
}

// Bus configures the NATS JetStream bus.
type Bus struct {
	// URL is one or more comma-separated nats:// URLs; empty means an
	// embedded server under DataDir.
	URL string `yaml:"url" json:"url"`
	// Prefix is put before stream names and subjects, to isolate tests.
	Prefix string `yaml:"prefix" json:"prefix"`
	// Embedded tunes the embedded server.
	Embedded BusEmbedded `yaml:"embedded" json:"embedded"`
}

// BusEmbedded tunes the embedded NATS server.
type BusEmbedded struct {
	// MaxStoreBytes caps JetStream's file storage.
	MaxStoreBytes int64 `yaml:"max_store_bytes" json:"max_store_bytes"`
}

// Redis configures the key-value store.
type Redis struct {
	// URL is a redis:// or rediss:// URL; empty (with no ClusterAddrs)
	// means in-process.
	URL string `yaml:"url" json:"url"`
	// ClusterAddrs are host:port seeds of a Redis Cluster.
	ClusterAddrs []string `yaml:"cluster_addrs" json:"cluster_addrs"`
	// KeyPrefix is put before every key.
	KeyPrefix string `yaml:"key_prefix" json:"key_prefix"`
}

// Configured reports whether a Redis server or cluster is set.
func (r Redis) Configured() bool { return r.URL != "" || len(r.ClusterAddrs) > 0 }

// IdemStorage selects where idempotency records are kept.
type IdemStorage string

// Idempotency storages.
const (
	IdemStorageAuto  IdemStorage = "auto" // Redis when configured, else SQL
	IdemStorageRedis IdemStorage = "redis"
	IdemStorageSQL   IdemStorage = "sql"
)

// IdemPolicy is what happens when a completed request is repeated.
type IdemPolicy string

// Idempotency policies.
const (
	IdemPolicyReplay    IdemPolicy = "replay"    // answer the stored response again
	IdemPolicyDuplicate IdemPolicy = "duplicate" // answer a "duplicate" problem
	IdemPolicyFail      IdemPolicy = "fail"      // answer an error
)

// Idempotency configures the idempotency component.
type Idempotency struct {
	// Storage is auto, redis or sql.
	Storage IdemStorage `yaml:"storage" json:"storage"`
	// TTL is how long a key is remembered.
	TTL Duration `yaml:"ttl" json:"ttl"`
	// DefaultPolicy applies where an endpoint sets none.
	DefaultPolicy IdemPolicy `yaml:"default_policy" json:"default_policy"`
}

// Outbox configures the outbox relay.
type Outbox struct {
	// PollInterval is how often the relay looks for unsent rows.
	PollInterval Duration `yaml:"poll_interval" json:"poll_interval"`
	// BatchSize is the most rows sent per round.
	BatchSize int `yaml:"batch_size" json:"batch_size"`
	// MaxBackoff caps the delay between retries after a failure.
	MaxBackoff Duration `yaml:"max_backoff" json:"max_backoff"`
}

// Catalog configures the config-center snapshot.
type Catalog struct {
	// RefreshInterval is how often each node reloads the full snapshot.
	RefreshInterval Duration `yaml:"refresh_interval" json:"refresh_interval"`
}

// Auth configures API keys and user tokens.
type Auth struct {
	// TokenLeeway is the clock skew allowed when checking token times.
	TokenLeeway Duration `yaml:"token_leeway" json:"token_leeway"`
	// KeyTouchInterval is how often an API key's last-used time is written.
	KeyTouchInterval Duration `yaml:"key_touch_interval" json:"key_touch_interval"`
	// KeyCacheTTL is how long a verified API key is remembered by a node; a revocation made on
	// another node takes effect within it. 0 checks the database on every request.
	KeyCacheTTL Duration `yaml:"key_cache_ttl" json:"key_cache_ttl"`
}

// LogLevel is the lowest level logged.
type LogLevel string

// Log levels.
const (
	LogDebug LogLevel = "debug"
	LogInfo  LogLevel = "info"
	LogWarn  LogLevel = "warn"
	LogError LogLevel = "error"
)

// LogFormat is how log records are written.
type LogFormat string

// Log formats.
const (
	LogJSON LogFormat = "json"
	LogText LogFormat = "text"
)

// Log configures logging.
type Log struct {
	// Level is debug, info, warn or error.
	Level LogLevel `yaml:"level" json:"level"`
	// Format is json or text.
	Format LogFormat `yaml:"format" json:"format"`
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	// Enabled serves /metrics.
	Enabled bool `yaml:"enabled" json:"enabled"`
}

// Demo configures the demo data and C-end demo page.
type Demo struct {
	// Enabled seeds demo data and serves the demo page.
	Enabled bool `yaml:"enabled" json:"enabled"`
}

// Activity configures the activity log.
type Activity struct {
	// Retention How long activity records are kept; 0 keeps them forever.
	Retention Duration `yaml:"retention" json:"retention"`
	// PruneInterval How often old records are pruned.
	PruneInterval Duration `yaml:"prune_interval" json:"prune_interval"`
}

// Webhooks configures outbound webhooks.
type Webhooks struct {
	// Timeout How long one delivery attempt may take.
	Timeout Duration `yaml:"timeout" json:"timeout"`
	// PollInterval How often the dispatcher looks for due deliveries (a new delivery wakes it at once).
	PollInterval Duration `yaml:"poll_interval" json:"poll_interval"`
	// AllowPrivateNetworks Allow endpoints on loopback, private and link-local addresses (off
	AllowPrivateNetworks bool `yaml:"allow_private_networks" json:"allow_private_networks"`
}

// Ledger configures the points and growth ledger.
type Ledger struct {
	// SweepInterval How often expired points lots and expired holds are swept (every node; claims make it safe).
	SweepInterval Duration `yaml:"sweep_interval" json:"sweep_interval"`
	// MaxBatch The most grants one group commit writes in one transaction.
	MaxBatch int `yaml:"max_batch" json:"max_batch"`
}

// Rewards configures grants and reward flows.
type Rewards struct {
	// SweepInterval How often failed and stuck grants are looked for and replayed.
	SweepInterval Duration `yaml:"sweep_interval" json:"sweep_interval"`
	// MaxBatch The most inline grants coalesced into one transaction (1 turns the fast path off).
	MaxBatch int `yaml:"max_batch" json:"max_batch"`
}

// Events configures behaviour-event ingestion (POST /v1/events).
type Events struct {
	// MaxEventBytes The largest event accepted, in bytes (1 KiB to 1 MiB).
	MaxEventBytes int `yaml:"max_event_bytes" json:"max_event_bytes"`
	// MaxBatch The most events one request may carry (1 to 10000).
	MaxBatch int `yaml:"max_batch" json:"max_batch"`
	// MaxLateness Events whose time is older than this are refused (reason too_late); late events within it count in the period of their time.
	MaxLateness Duration `yaml:"max_lateness" json:"max_lateness"`
	// MaxFutureSkew Events whose time is further in the future than this are refused (reason in_future).
	MaxFutureSkew Duration `yaml:"max_future_skew" json:"max_future_skew"`
}

// Tasks configures the task center.
type Tasks struct {
	// BatchSize The most events the progress consumer applies in one transaction (1 to 4096).
	BatchSize int `yaml:"batch_size" json:"batch_size"`
	// SweepInterval How often user tasks whose period has ended are expired (every node; safe to run on all).
	SweepInterval Duration `yaml:"sweep_interval" json:"sweep_interval"`
}

// Coupons configures the coupon module.
type Coupons struct {
	// RollbackPolicy What a refund's rollback does with the coupons: restore_if_valid puts back those not expired; never_restore keeps them used.
	RollbackPolicy string `yaml:"rollback_policy" json:"rollback_policy"`
	// ArchiveAfter Redeemed, expired and revoked coupons older than this move to the archive (still readable by id); 0 never archives.
	ArchiveAfter Duration `yaml:"archive_after" json:"archive_after"`
	// SweepInterval How often expired coupons, expired redemption locks and the archive are swept.
	SweepInterval Duration `yaml:"sweep_interval" json:"sweep_interval"`
	// WalletCacheTTL How long a node keeps a qualified user's usable coupons in memory for qualification (its own writes and other nodes' coupon events drop them sooner); 0 turns the cache off.
	WalletCacheTTL Duration `yaml:"wallet_cache_ttl" json:"wallet_cache_ttl"`
	// WalletCacheCoupons The most coupons a node's wallet cache holds, all wallets together (1 to 100000000; about 300 bytes each).
	WalletCacheCoupons int `yaml:"wallet_cache_coupons" json:"wallet_cache_coupons"`
}

// Default returns the configuration used when nothing is set.
func Default() Config {
	return Config{
		DataDir: "./data",
		Server: Server{
			Addr:            "127.0.0.1:8080",
			MaxBodyBytes:    1 * MiB,
			ReadTimeout:     Seconds(15),
			WriteTimeout:    Seconds(30),
			ShutdownTimeout: Seconds(20),
		},
		Database: Database{
			MaxOpenConns: 20,
			SQLite: SQLite{BusyTimeout: Seconds(5), ReadConns: 4, CacheMiB: 64, ReadCacheMiB: 16,
				CheckpointInterval: Millis(200)},
		},
		Bus:         Bus{Embedded: BusEmbedded{MaxStoreBytes: 1 * GiB}},
		Redis:       Redis{ClusterAddrs: []string{}, KeyPrefix: "perk:"},
		Idempotency: Idempotency{Storage: IdemStorageAuto, TTL: Seconds(24 * 3600), DefaultPolicy: IdemPolicyReplay},
		Outbox:      Outbox{PollInterval: Millis(200), BatchSize: 500, MaxBackoff: Seconds(60)},
		Catalog:     Catalog{RefreshInterval: Seconds(30)},
		Rewards:     Rewards{SweepInterval: Seconds(5), MaxBatch: 128},
		Ledger:      Ledger{SweepInterval: Seconds(60), MaxBatch: 512},
		Webhooks:    Webhooks{Timeout: Seconds(10), PollInterval: Seconds(1), AllowPrivateNetworks: false},
		Activity:    Activity{Retention: Seconds(7776000), PruneInterval: Seconds(3600)},
		Events:      Events{MaxEventBytes: 65536, MaxBatch: 1000, MaxLateness: Seconds(7 * 24 * 3600), MaxFutureSkew: Seconds(300)},
		Tasks:       Tasks{BatchSize: 256, SweepInterval: Seconds(60)},
		Coupons:     Coupons{RollbackPolicy: "restore_if_valid", ArchiveAfter: Seconds(90 * 24 * 3600), SweepInterval: Seconds(30), WalletCacheTTL: Seconds(10), WalletCacheCoupons: 500_000},
		Auth:        Auth{TokenLeeway: Seconds(30), KeyTouchInterval: Seconds(60), KeyCacheTTL: Seconds(2)},
		Log:         Log{Level: LogInfo, Format: LogJSON},
		Metrics:     Metrics{Enabled: true},
	}
}
