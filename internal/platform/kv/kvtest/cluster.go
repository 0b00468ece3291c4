package kvtest

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// StartCluster starts a 3-master Redis Cluster as local redis-server processes on free loopback
// ports, waits until every node reports cluster_state:ok, and returns the nodes' addresses. The
// processes are killed when the test ends. Missing redis-server or redis-cli fail the test.
func StartCluster(t testing.TB) []string {
	t.Helper()
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("the Redis Cluster test needs %s on PATH (apt-get install redis-server): %v", bin, err)
		}
	}
	dir := t.TempDir()
	addrs := make([]string, 3)
	for i := range addrs {
		port := freePort(t)
		addrs[i] = "127.0.0.1:" + strconv.Itoa(port)
		startNode(t, dir, i, port)
	}
	for _, a := range addrs {
		waitPing(t, a)
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	out, err := exec.Command("redis-cli", args...).CombinedOutput()
	require.NoError(t, err, "redis-cli --cluster create: %s", out)
	for _, a := range addrs {
		waitClusterOK(t, a)
	}
	return addrs
}

func startNode(t testing.TB, dir string, i, port int) {
	t.Helper()
	var logs bytes.Buffer
	cmd := exec.Command("redis-server",
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--cluster-enabled", "yes",
		"--cluster-config-file", filepath.Join(dir, fmt.Sprintf("nodes-%d.conf", i)),
		"--save", "", "--appendonly", "no", "--dir", dir)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start(), "start redis-server on port %d", port)
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("redis-server :%d output:\n%s", port, logs.String())
		}
	})
}

// freePort finds a loopback port p such that p and its cluster bus port p+10000 are both free.
func freePort(t testing.TB) int {
	t.Helper()
	for range 100 {
		p := 20000 + rand.IntN(25000)
		if portFree(p) && portFree(p+10000) {
			return p
		}
	}
	t.Fatal("kvtest: no free port pair for a Redis Cluster node")
	return 0
}

func portFree(p int) bool {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

func waitPing(t testing.TB, addr string) {
	t.Helper()
	require.Eventually(t, func() bool {
		out, err := cli(addr, "ping")
		return err == nil && strings.TrimSpace(out) == "PONG"
	}, 20*time.Second, 50*time.Millisecond, "redis-server at %s did not start", addr)
}

func waitClusterOK(t testing.TB, addr string) {
	t.Helper()
	require.Eventually(t, func() bool {
		out, err := cli(addr, "cluster", "info")
		return err == nil && strings.Contains(out, "cluster_state:ok")
	}, 30*time.Second, 100*time.Millisecond, "Redis Cluster node %s never reported cluster_state:ok", addr)
}

func cli(addr string, args ...string) (string, error) {
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "redis-cli", append([]string{"-h", host, "-p", port}, args...)...).Output()
	return string(out), err
}
