package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/ledger"
	"github.com/perkhq/perk/internal/platform/sqldb"
)

func TestVersionAndUsage(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	require.Equal(t, 0, run(context.Background(), []string{"version"}, &out, &errOut))
	require.Contains(t, out.String(), "perk ")
	require.Equal(t, 2, run(context.Background(), []string{"frobnicate"}, &out, &errOut))
	require.Contains(t, errOut.String(), `unknown command "frobnicate"`)
	require.Equal(t, 2, run(context.Background(), nil, &out, &errOut))
}

func TestConfigCheck(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("server:\n  adr: x\n  max_body_bytes: -1\nlog:\n  level: loud\n"), 0o600))
	var out, errOut bytes.Buffer
	require.Equal(t, 1, run(context.Background(), []string{"config", "check", "-c", bad}, &out, &errOut))
	for _, path := range []string{"server.adr", "server.max_body_bytes", "log.level"} {
		require.Contains(t, out.String(), path)
	}
	good := filepath.Join(dir, "good.yaml")
	require.NoError(t, os.WriteFile(good, []byte("server:\n  addr: 127.0.0.1:9999\n"), 0o600))
	out.Reset()
	require.Equal(t, 0, run(context.Background(), []string{"config", "check", "-c", good}, &out, &errOut))
	require.Contains(t, out.String(), "ok")
	out.Reset()
	require.Equal(t, 0, run(context.Background(), []string{"config", "env"}, &out, &errOut))
	require.Contains(t, out.String(), "PERK_DATABASE_URL")
}

func TestMigrateCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	require.Equal(t, 0, run(context.Background(), []string{"migrate", "--data-dir", dir}, &out, &errOut), errOut.String())
	require.Regexp(t, `(?m)^migrated tenant/0001_init\.sql`, out.String())
	require.Contains(t, out.String(), "applied")
	out.Reset()
	require.Equal(t, 0, run(context.Background(), []string{"migrate", "--data-dir", dir}, &out, &errOut))
	require.Contains(t, out.String(), "up to date")
}

// TestServeDemoProcess runs the real binary the way `make run` does.
func TestServeDemoProcess(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "perk")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	require.NoError(t, build.Run())
	dir := t.TempDir()

	start := time.Now()
	cmd := exec.Command(bin, "serve", "--demo", "--data-dir", dir, "--addr", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "PERK_LOG_LEVEL=warn")
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	base := awaitBanner(t, stdout)
	get(t, base+"/healthz", http.StatusOK, `"status":"ok"`)
	t.Logf("start-up on an empty data dir to a healthy /healthz: %s", time.Since(start).Round(time.Millisecond))
	get(t, base+"/openapi.json", http.StatusOK, `"openapi":"3.1.0"`)
	get(t, base+"/docs", http.StatusOK, "<!doctype html>")
	for _, family := range []string{"perk_http_requests_total", "perk_db_open_connections", "perk_bus_connected 1",
		"perk_outbox_lag_seconds", "perk_catalog_snapshot_seq"} {
		get(t, base+"/metrics", http.StatusOK, family)
	}
	get(t, base+"/readyz", http.StatusOK, `"status":"ready"`)

	var demo struct {
		MerchantID      string `json:"merchant_id"`
		APIKey          string `json:"api_key"`
		UserTokenSecret string `json:"user_token_secret"`
		BaseURL         string `json:"base_url"`
	}
	raw, err := os.ReadFile(filepath.Join(dir, "demo.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &demo))
	require.Equal(t, base, demo.BaseURL)
	require.NotEmpty(t, demo.MerchantID)
	require.NotEmpty(t, demo.UserTokenSecret)
	req, _ := http.NewRequest("GET", base+"/v1/me", nil)
	req.Header.Set("Authorization", "Bearer "+demo.APIKey)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		require.NoError(t, err, "perk serve should exit 0 after SIGTERM")
	case <-time.After(30 * time.Second):
		t.Fatal("perk serve did not stop after SIGTERM")
	}
}

var servingLine = regexp.MustCompile(`serving at (http://\S+)`)

func awaitBanner(t *testing.T, r io.Reader) string {
	t.Helper()
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if m := servingLine.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
	}()
	select {
	case base := <-found:
		return base
	case <-time.After(60 * time.Second):
		t.Fatal("perk serve printed no 'serving at' line")
		return ""
	}
}

func get(t *testing.T, url string, status int, want string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, status, resp.StatusCode, string(body))
	require.True(t, strings.Contains(string(body), want), "%s: want %q in %.300s", url, want, body)
}

func TestLedgerVerifyCommand(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	require.Equal(t, 0, run(ctx, []string{"migrate", "--data-dir", dir}, &out, &errOut), errOut.String())

	db, err := sqldb.Open(ctx, sqldb.Options{SQLitePath: filepath.Join(dir, "perk.db")})
	require.NoError(t, err)
	defer db.Close()
	led, err := ledger.New(db, ledger.Options{})
	require.NoError(t, err)
	for i, amount := range []int64{10, 25} {
		_, _, err := led.Grant(ctx, ledger.GrantParams{TenantID: "mch_1", UserID: "u1", Asset: "points",
			Amount: amount, BusinessKey: fmt.Sprintf("k%d", i), SourceKind: "test", SourceID: "t"})
		require.NoError(t, err)
	}
	require.NoError(t, led.Close())

	out.Reset()
	require.Equal(t, 0, run(ctx, []string{"ledger", "verify", "--data-dir", dir}, &out, &errOut), errOut.String())
	require.Contains(t, out.String(), "0 mismatch(es)")

	_, err = db.Writer().Exec(`UPDATE ledger_accounts SET balance = balance + 1 WHERE user_id = 'u1'`)
	require.NoError(t, err)
	out.Reset()
	require.Equal(t, 1, run(ctx, []string{"ledger", "verify", "--data-dir", dir}, &out, &errOut))
	require.Contains(t, out.String(), "account u1")
	require.Contains(t, out.String(), "cached 36, computed 35")
}
