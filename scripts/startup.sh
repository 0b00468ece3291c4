#!/usr/bin/env bash
# Measures perk's start-up: from exec to the first 200 from /healthz, on a fresh and on an existing
# data dir (embedded SQLite + embedded NATS). Prints each run and the median. Usage: scripts/startup.sh [runs]
set -euo pipefail
runs=${1:-5}
bin=$(mktemp -d)/perk
go build -o "$bin" ./cmd/perk
port=18091
measure() { # data dir
  local start end pid
  start=$(date +%s%N)
  PERK_LOG_LEVEL=warn "$bin" serve --demo --data-dir "$1" --addr 127.0.0.1:$port >/dev/null 2>&1 &
  pid=$!
  until curl -fs -o /dev/null "http://127.0.0.1:$port/healthz"; do sleep 0.002; done
  end=$(date +%s%N)
  kill -TERM $pid; wait $pid || true
  echo $(( (end - start) / 1000000 ))
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
fresh=(); warm=()
for _ in $(seq "$runs"); do
  dir=$(mktemp -d)
  fresh+=("$(measure "$dir")")
  warm+=("$(measure "$dir")")
  rm -rf "$dir"
done
echo "fresh data dir (migrate, create keys, demo): ${fresh[*]} ms; median $(printf '%s\n' "${fresh[@]}" | median) ms"
echo "existing data dir:                           ${warm[*]} ms; median $(printf '%s\n' "${warm[@]}" | median) ms"
