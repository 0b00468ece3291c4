package bus

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/perkhq/perk/internal/platform/ids"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

//go:embed migrations
var migrationsFS embed.FS

// Migrations creates the bus's tables: bus_outbox and bus_processed.
var Migrations = sqldb.Migrations{Module: "bus", FS: migrationsFS, Dir: "migrations"}

// OutboxPrefix is the type prefix of outbox row ids ("obx_<ulid>").
const OutboxPrefix = "obx"

// enqueueChunk bounds the rows of one INSERT (PostgreSQL takes at most 65535 parameters).
const enqueueChunk = 500

// Enqueue writes msgs to the outbox in the caller's transaction: they are published if and only if
// it commits. A message without an ID gets its outbox row id ("obx_<ulid>") as Nats-Msg-Id. After
// the commit, every relay in this process is woken up.
//
// Row ids and created_at come from the wall clock, not an injected one: they only order the rows
// and measure the relay's lag. Rows are due at once whatever the relay's clock says.
func Enqueue(ctx context.Context, tx *sqldb.Tx, msgs ...Message) error {
	if len(msgs) == 0 {
		return nil
	}
	now := time.Now().UTC()
	for start := 0; start < len(msgs); start += enqueueChunk {
		if err := insertOutbox(ctx, tx, now, msgs[start:min(start+enqueueChunk, len(msgs))]); err != nil {
			return err
		}
	}
	tx.AfterCommit(wakeRelays)
	return nil
}

func insertOutbox(ctx context.Context, tx *sqldb.Tx, now time.Time, msgs []Message) error {
	const cols = 6
	args := make([]any, 0, len(msgs)*cols)
	for _, m := range msgs {
		if m.Subject == "" {
			return errNoSubject
		}
		header, err := json.Marshal(m.Header)
		if err != nil {
			return fmt.Errorf("bus: outbox header: %w", err)
		}
		if m.Header == nil {
			header = []byte("{}")
		}
		id := ids.New(OutboxPrefix, now)
		msgID := m.ID
		if msgID == "" {
			msgID = id
		}
		payload := m.Data
		if payload == nil {
			payload = []byte{}
		}
		args = append(args, id, msgID, m.Subject, string(header), payload, sqldb.Micros(now))
	}
	if _, err := tx.Exec(ctx, `INSERT INTO bus_outbox (id, msg_id, subject, header, payload, created_at) VALUES `+
		tx.Dialect().Tuples(len(msgs), cols), args...); err != nil {
		return fmt.Errorf("bus: enqueue: %w", err)
	}
	return nil
}

// running holds the relays running in this process, so Enqueue can wake them after a commit.
var running struct {
	sync.Mutex
	relays map[*Relay]struct{}
}

func addRunning(r *Relay) {
	running.Lock()
	defer running.Unlock()
	if running.relays == nil {
		running.relays = map[*Relay]struct{}{}
	}
	running.relays[r] = struct{}{}
}

func removeRunning(r *Relay) {
	running.Lock()
	defer running.Unlock()
	delete(running.relays, r)
}

func wakeRelays() {
	running.Lock()
	defer running.Unlock()
	for r := range running.relays {
		r.Wake()
	}
}
