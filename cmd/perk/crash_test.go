package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// crashUser is one simulated user: the events it sends and what they must earn under the demo
// tasks (daily-checkin: 10 points on the first check-in of the day; weekly-orders: 100 growth on
// the third order of at least 5,000 in the week; monthly-spend: 50 points at a monthly sum of
// 50,000 and 150 more at 100,000). All events carry one time, so they fall in one day, week and
// month.
type crashUser struct {
	id     string
	events []map[string]any
	points int64
	growth int64
}

// crashLoad builds the users and their events, shuffled into one stream of batches.
func crashLoad(users int, at time.Time, rng *rand.Rand) ([]crashUser, [][]map[string]any) {
	us := make([]crashUser, users)
	var all []map[string]any
	amounts := []int64{3000, 6000, 12000, 25000}
	for i := range us {
		u := &us[i]
		u.id = fmt.Sprintf("crash-u%05d", i)
		event := func(typ string, data map[string]any) {
			u.events = append(u.events, map[string]any{"specversion": "1.0", "id": fmt.Sprintf("%s-%d", u.id, len(u.events)),
				"source": "crashtest", "type": typ, "subject": u.id, "time": at.Format(time.RFC3339Nano), "data": data})
		}
		if rng.IntN(5) > 0 {
			event("checkin", map[string]any{})
			event("checkin", map[string]any{}) // a second check-in the same day earns nothing
			u.points += 10
		}
		var big, sum int64
		for range rng.IntN(9) {
			a := amounts[rng.IntN(len(amounts))]
			event("order.paid", map[string]any{"amount": a, "order_id": fmt.Sprintf("o-%s-%d", u.id, len(u.events))})
			sum += a
			if a >= 5000 {
				big++
			}
		}
		if big >= 3 {
			u.growth += 100
		}
		if sum >= 50000 {
			u.points += 50
		}
		if sum >= 100000 {
			u.points += 150
		}
		all = append(all, u.events...)
	}
	rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	var batches [][]map[string]any
	for len(all) > 0 {
		n := min(100, len(all))
		batches = append(batches, all[:n])
		all = all[n:]
	}
	return us, batches
}

// perkProcess is a running `perk serve --demo`.
type perkProcess struct {
	cmd  *exec.Cmd
	base string
	key  string
}

func startPerk(t *testing.T, bin, dir string) *perkProcess {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--demo", "--data-dir", dir, "--addr", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "PERK_LOG_LEVEL=warn")
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	base := awaitBanner(t, stdout)
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	var demo struct {
		APIKey string `json:"api_key"`
	}
	// demo.json is written once the demo data is seeded, just after the banner.
	require.Eventually(t, func() bool {
		raw, err := os.ReadFile(filepath.Join(dir, "demo.json"))
		return err == nil && json.Unmarshal(raw, &demo) == nil && demo.APIKey != ""
	}, time.Minute, 20*time.Millisecond, "perk wrote no demo.json")
	return &perkProcess{cmd: cmd, base: base, key: demo.APIKey}
}

// send posts one batch; it reports whether perk acknowledged it (202).
func (p *perkProcess) send(batch []map[string]any) bool {
	body, _ := json.Marshal(batch)
	req, _ := http.NewRequest(http.MethodPost, p.base+"/v1/events", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+p.key)
	req.Header.Set("Content-Type", "application/cloudevents-batch+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == http.StatusAccepted
}

// balances reads a user's points and growth.
func (p *perkProcess) balances(t *testing.T, user string) (points, growth int64) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, p.base+"/v1/users/"+user+"/accounts", nil)
	req.Header.Set("Authorization", "Bearer "+p.key)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var out struct {
		Accounts []struct {
			Asset   string `json:"asset"`
			Balance int64  `json:"balance"`
		} `json:"accounts"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	for _, a := range out.Accounts {
		switch a.Asset {
		case "points":
			points = a.Balance
		case "growth":
			growth = a.Balance
		}
	}
	return points, growth
}

// mismatches compares every user's balances with what its events earn.
func (p *perkProcess) mismatches(t *testing.T, us []crashUser) (lost, doubled int, first string) {
	for _, u := range us {
		points, growth := p.balances(t, u.id)
		if points == u.points && growth == u.growth {
			continue
		}
		if points < u.points || growth < u.growth {
			lost++
		} else {
			doubled++
		}
		if first == "" {
			first = fmt.Sprintf("%s: points %d want %d, growth %d want %d", u.id, points, u.points, growth, u.growth)
		}
	}
	return lost, doubled, first
}

// TestCrashUnderEventLoad is the task center's crash test: a real `perk serve` under event load
// is killed with SIGKILL, restarted on its data directory, and the run reconciles: the ledger
// holds exactly what the accepted events earn, 0 lost and 0 doubled. The client resends what was
// not acknowledged and, to prove de-duplication, some of what was. `make test` runs a short form;
// `make crashtest` (PERK_CRASHTEST=long) runs more users and more kills.
func TestCrashUnderEventLoad(t *testing.T) {
	t.Parallel()
	users, kills := 300, 1
	if os.Getenv("PERK_CRASHTEST") == "long" {
		users, kills = 5000, 3
	}
	bin := filepath.Join(t.TempDir(), "perk")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	require.NoError(t, build.Run())
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(7, uint64(users)))
	us, batches := crashLoad(users, time.Now().Add(-time.Minute), rng)

	acked := make([]bool, len(batches))
	p := startPerk(t, bin, dir)
	for round := 0; round <= kills; round++ {
		p = p.loadAndMaybeKill(t, bin, dir, batches, acked, round < kills)
	}
	for i, ok := range acked {
		require.True(t, ok, "batch %d was never acknowledged", i)
	}
	// Resend a few acknowledged batches: duplicates must change nothing.
	for i := 0; i < len(batches); i += 7 {
		require.True(t, p.send(batches[i]), "resend of batch %d", i)
	}

	deadline := time.Now().Add(2 * time.Minute)
	for {
		lost, doubled, first := p.mismatches(t, us)
		if lost == 0 && doubled == 0 {
			break
		}
		require.Zero(t, doubled, "rewards doubled: %s", first)
		if time.Now().After(deadline) {
			require.Failf(t, "rewards lost", "%d users short of what their events earn; first: %s", lost, first)
		}
		time.Sleep(500 * time.Millisecond)
	}
	// Whatever was still in flight has landed by now; nothing may arrive twice later.
	time.Sleep(2 * time.Second)
	lost, doubled, first := p.mismatches(t, us)
	require.Zero(t, lost+doubled, "after settling: %s", first)

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, p.cmd.Wait())
	out, err := exec.Command(bin, "ledger", "verify", "--data-dir", dir).CombinedOutput()
	require.NoError(t, err, "ledger verify: %s", out)
	require.Contains(t, string(out), "0 mismatch(es)")
}

// loadAndMaybeKill sends every batch not acknowledged yet from four clients; with kill, it
// SIGKILLs perk part-way (while requests are in flight) and returns a restarted process.
func (p *perkProcess) loadAndMaybeKill(t *testing.T, bin, dir string, batches [][]map[string]any, acked []bool, kill bool) *perkProcess {
	var todo []int
	for i, ok := range acked {
		if !ok {
			todo = append(todo, i)
		}
	}
	var mu sync.Mutex
	next, sent := 0, 0
	killAt := len(todo) / 2
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if next == len(todo) {
					mu.Unlock()
					return
				}
				i := todo[next]
				next++
				mu.Unlock()
				ok := p.send(batches[i])
				mu.Lock()
				acked[i] = ok
				sent++
				if kill && sent == killAt {
					_ = p.cmd.Process.Signal(syscall.SIGKILL)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if !kill {
		return p
	}
	_ = p.cmd.Wait()
	t.Logf("killed perk after %d of %d batches", killAt, len(todo))
	return startPerk(t, bin, dir)
}
