#!/usr/bin/env bash
# Collector overhead and throughput, as root. Prints figures; asserts nothing.
#
#   bench/collector-overhead.sh            (N_EXEC, N_OPEN, N_CONNECT, ROUNDS override the sizes; STORMS and
#                                           CONDITIONS pick a subset, e.g. STORMS=exec CONDITIONS="none palisade")
#
# 1. Storms (exec, file open on a watched path and on an unwatched one, connect) with: nothing, `palisade collect` (the node agent alone,
#    publishing to the testbed's Kafka; only when PALISADE_TEST_KAFKA is set), `palisade run` (the collector plus
#    the whole in-process pipeline), and Linux auditd with an execve rule — median wall time of ROUNDS interleaved
#    rounds.
# 2. Per-program cost from kernel.bpf_stats_enabled (restored afterwards), via bpftool; and the cost of a syscall
#    no program hooks (getppid), with and without the collector loaded.
# 3. Sustained node events/s from `palisade collect` into the testbed's Kafka, with drops and collector CPU
#    (needs `scripts/testbed up`; skipped with a message otherwise).
# 4. The same at paced rates (RATES, default "25000 50000" opens/s for PACED_SECS=10 s, from bench's open-storm,
#    which costs only the syscalls): events published per second, drops, and the collector's CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
export PALISADE_CACHE=${PALISADE_CACHE:-$HOME/.cache/palisade}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PALISADE_CACHE/target}
export PATH=$PALISADE_CACHE/tools/bin:$HOME/.cargo/bin:$PATH
N_EXEC=${N_EXEC:-3000}
N_OPEN=${N_OPEN:-200000}
N_CONNECT=${N_CONNECT:-20000}
ROUNDS=${ROUNDS:-3}
STORMS=${STORMS:-exec open plainopen connect}
CONDITIONS=${CONDITIONS:-none ${PALISADE_TEST_KAFKA:+collect} palisade auditd}
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
missing=""
for tool in bpftool:bpftool auditctl:auditd; do
  command -v "${tool%%:*}" >/dev/null || missing="$missing ${tool##*:}"
done
[ -z "$missing" ] || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $missing >/dev/null; }
cargo build --release --locked -p palisade >/dev/null 2>&1
cargo build --release --locked -p palisade-bench --bin open-storm --bin syscall-cost >/dev/null 2>&1
palisade=$CARGO_TARGET_DIR/release/palisade
open_storm_paced=$CARGO_TARGET_DIR/release/open-storm
syscall_cost=$CARGO_TARGET_DIR/release/syscall-cost
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

exec_storm() { local i=0; while [ $i -lt "$N_EXEC" ]; do /bin/true; i=$((i+1)); done; }
open_storm() { python3 -c "
for _ in range($N_OPEN):
    open('/etc/passwd').close()"; }
# Opens of a file nothing watches: the common case, which the kernel filters (the open's exit still checks the
# returned file's inode against the watched files).
plainopen_storm() { python3 -c "
for _ in range($N_OPEN):
    open('/etc/hostname').close()"; }
connect_storm() { python3 -c "
import socket
for _ in range($N_CONNECT):
    s = socket.socket(); s.connect_ex(('127.0.0.1', 9)); s.close()"; }

seconds() { local start end; start=$(date +%s.%N); "$@"; end=$(date +%s.%N); echo "$end - $start" | bc; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
cpu_seconds() { awk '{print ($14+$15)/100}' "/proc/$1/stat"; }

# The storms repeat one act; the collector folds a process's identical file events beyond 100/s, which would
# measure folding, not reporting: FOLD=1 keeps the default, otherwise every event is reported (the worst case).
repeat_limit=$([ "${FOLD:-0}" = 1 ] && echo 100 || echo 0)
start_palisade() {
  PALISADE__COLLECT__REPEAT_LIMIT_PER_SEC=$repeat_limit PALISADE__AUDIT__LISTEN_ADDR=127.0.0.1:0 "$palisade" run --quiet --alerts-file "$work/alerts.jsonl" 2>"$work/run.log" &
  palisade_pid=$!
  until grep -q "palisade: running" "$work/run.log" 2>/dev/null; do sleep 0.2; done
}
stop_palisade() { kill -TERM "$palisade_pid"; wait "$palisade_pid" || true; }
metrics=127.0.0.1:19465
start_collect() { # topic
  PALISADE__COLLECT__REPEAT_LIMIT_PER_SEC=$repeat_limit \
    PALISADE__KAFKA__BOOTSTRAP_SERVERS=$PALISADE_TEST_KAFKA PALISADE__TOPICS__NODE_EVENTS=$1 \
    PALISADE__METRICS_LISTEN_ADDR=$metrics PALISADE__NODE_NAME=bench "$palisade" collect 2>"$work/collect.log" &
  collect_pid=$!
  sleep 3
}
stop_collect() { kill -TERM "$collect_pid"; wait "$collect_pid" || true; }
start_auditd() {
  systemctl stop auditd >/dev/null 2>&1 || true
  auditd -s disable >/dev/null 2>&1 || true
  pgrep -x auditd >/dev/null || auditd
  sleep 0.5
  auditctl -D >/dev/null
  auditctl -a always,exit -F arch=b64 -S execve -k palisade-bench >/dev/null
  auditctl -e 1 >/dev/null
}
stop_auditd() { auditctl -D >/dev/null; auditctl -e 0 >/dev/null || true; pkill -x auditd || true; sleep 0.5; }

if [ "${ONLY_KAFKA:-0}" = 1 ]; then SKIP_STORMS=1; fi
declare -A times
for storm in $STORMS; do
  for condition in $CONDITIONS; do times[$storm,$condition]=""; done
done
for round in $( [ -n "${SKIP_STORMS:-}" ] || seq 1 "$ROUNDS"); do
  for condition in $CONDITIONS; do
    case $condition in
      palisade) start_palisade ;; collect) start_collect "bench.node.events.$$.storms" ;; auditd) start_auditd ;;
    esac
    for storm in $STORMS; do
      [ "$condition" = auditd ] && [ "$storm" != exec ] && continue
      times[$storm,$condition]+="$(seconds ${storm}_storm) "
    done
    if [ "$condition" = palisade ]; then
      echo "round $round: palisade run used $(cpu_seconds "$palisade_pid")s CPU over the storms" >&2
      stop_palisade
    fi
    if [ "$condition" = collect ]; then
      echo "round $round: palisade collect used $(cpu_seconds "$collect_pid")s CPU over the storms" >&2
      stop_collect
    fi
    [ "$condition" = auditd ] && stop_auditd
  done
done
if [ -z "${SKIP_STORMS:-}" ]; then
echo "storm        condition   median wall (s)   vs none"
for storm in $STORMS; do
  base=$(echo "${times[$storm,none]}" | tr ' ' '\n' | grep . | median)
  for condition in $CONDITIONS; do
    [ -n "${times[$storm,$condition]}" ] || continue
    value=$(echo "${times[$storm,$condition]}" | tr ' ' '\n' | grep . | median)
    printf '%-12s %-11s %-17s %+.1f %%\n' "$storm" "$condition" "$value" "$(echo "($value - $base) * 100 / $base" | bc -l)"
  done
done
echo "(exec storm: $N_EXEC × /bin/true; open storm: $N_OPEN × open('/etc/passwd'); plainopen storm: $N_OPEN ×" \
  "open('/etc/hostname'); connect storm: $N_CONNECT connects)"
fi

if [ -z "${SKIP_STORMS:-}" ]; then
echo "--- per-program cost (kernel.bpf_stats_enabled)"
previous=$(sysctl -n kernel.bpf_stats_enabled)
sysctl -qw kernel.bpf_stats_enabled=1
start_palisade
exec_storm; open_storm; plainopen_storm; connect_storm
bpftool -j prog show | python3 -c "
import json, sys
for p in json.load(sys.stdin):
    if p.get('run_cnt'):
        name = p.get('name', '?')
        print(f\"{name:<24} runs {p['run_cnt']:>9}   avg {p['run_time_ns'] / p['run_cnt']:8.0f} ns\")
" | sort -k5 -n -r | head -25
stop_palisade
sysctl -qw kernel.bpf_stats_enabled="$previous"
echo "--- an unhooked syscall (getppid), ns per call: without / with the collector's programs attached"
for round in $(seq 1 "$ROUNDS"); do
  without=$("$syscall_cost")
  start_palisade
  with=$("$syscall_cost")
  stop_palisade
  echo "round $round: $without / $with"
done
fi

counter() { curl -s "http://$metrics/metrics" | awk -v m="$1" '$1 == m {v = $2} END {print v + 0}'; }
published() { curl -s "http://$metrics/metrics" | awk '/^palisade_collect_published_total/ {s += $2} END {print s + 0}'; }
# `palisade collect` into Kafka while COMMAND... runs, then 2 s to drain: events published, drops, CPU.
into_kafka() { # label command...
  local label=$1; shift
  start_collect "bench.node.events.$$.$label"
  local published_before cpu_before start end events cpu
  published_before=$(published); cpu_before=$(cpu_seconds "$collect_pid"); start=$(date +%s.%N)
  "$@"
  sleep 2
  end=$(date +%s.%N)
  events=$(( $(published) - published_before ))
  cpu=$(echo "$(cpu_seconds "$collect_pid") - $cpu_before" | bc)
  echo "$label: published $events node events in $(echo "$end - $start" | bc)s (incl. 2 s drain) =" \
       "$(echo "$events / ($end - $start)" | bc) events/s; kernel drops $(counter 'palisade_collect_events_total{what="kernel_drop"}')," \
       "queue drops $(counter 'palisade_collect_events_total{what="queue_drop"}'), send failures" \
       "$(counter 'palisade_dropped_total{component="collect",reason="bus_error"}'); collector CPU ${cpu}s =" \
       "$(echo "$cpu * 1000000 / ($events + 1)" | bc) µs/event"
  stop_collect
}
three_storms() {
  open_storm & local pids=$!
  exec_storm & pids="$pids $!"
  connect_storm & pids="$pids $!"
  # shellcheck disable=SC2086
  wait $pids
}

echo "--- sustained node events into Kafka"
if [ -z "${PALISADE_TEST_KAFKA:-}" ]; then
  echo "skipped: PALISADE_TEST_KAFKA unset (eval \"\$(scripts/testbed env)\" after scripts/testbed up)"
  exit 0
fi
into_kafka three-storms three_storms
echo "--- paced open storms into Kafka"
for rate in ${RATES:-25000 50000}; do
  into_kafka "paced-$rate" "$open_storm_paced" "$rate" "${PACED_SECS:-10}"
done
