#!/usr/bin/env bash
# Makes sure the services the test suite talks to are up: PostgreSQL, Redis and NATS (JetStream).
# Starts a stopped one when it is installed locally; otherwise fails with a precise message.
set -u
PG_URL=${PERK_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}
REDIS_ADDR=${PERK_TEST_REDIS_ADDR:-127.0.0.1:6379}
NATS_URL=${PERK_TEST_NATS_URL:-nats://127.0.0.1:4222}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_for() { # name, check command
  for _ in $(seq 1 40); do eval "$2" && return 0; sleep 0.25; done
  return 1
}

need() { # name, check, start, hint
  local name=$1 check=$2 start=$3 hint=$4
  if eval "$check"; then echo "services: $name is up"; return 0; fi
  echo "services: $name is down; trying to start it"
  eval "$start" >/dev/null 2>&1 || true
  if wait_for "$name" "$check"; then echo "services: $name started"; return 0; fi
  echo "services: ERROR: $name is not reachable and could not be started. $hint" >&2
  return 1
}

pg_check() { pg_isready -q -d "$PG_URL" 2>/dev/null || port_open 127.0.0.1 5432; }
redis_check() { port_open "${REDIS_ADDR%:*}" "${REDIS_ADDR#*:}"; }
nats_hostport=${NATS_URL#nats://}
nats_check() { port_open "${nats_hostport%:*}" "${nats_hostport#*:}"; }

ok=0
need PostgreSQL pg_check \
  'pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql | head -n1) main start' \
  "Start PostgreSQL on 127.0.0.1:5432 with trust auth for user postgres, or set PERK_TEST_POSTGRES_URL." || ok=1
need Redis redis_check \
  'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no' \
  "Start redis-server on $REDIS_ADDR (apt-get install redis-server), or set PERK_TEST_REDIS_ADDR." || ok=1
need NATS nats_check \
  'start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server' \
  "Start nats-server with JetStream (-js) on $NATS_URL (apt-get install nats-server), or set PERK_TEST_NATS_URL." || ok=1
for tool in redis-server redis-cli nats-server pgbench; do
  command -v "$tool" >/dev/null 2>&1 || { echo "services: ERROR: $tool is not on PATH (the tests start their own instances of it)" >&2; ok=1; }
done
exit $ok
