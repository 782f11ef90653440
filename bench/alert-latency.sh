#!/usr/bin/env bash
# End-to-end latency and throughput over real Kafka and OpenSearch: starts `palisade detect`, `enrich` and
# `sink` (exactly-once alerts topic, OpenSearch index) on per-run topics, then runs the load generator
# (bench/src/bin/alert-latency.rs) at RATE alerts/s for DURATION_SECS. Prints figures; asserts nothing.
#
#   scripts/testbed up; bench/alert-latency.sh            (RATE=1000 DURATION_SECS=20 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
export PALISADE_CACHE=${PALISADE_CACHE:-$HOME/.cache/palisade}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PALISADE_CACHE/target}
export PATH=$PALISADE_CACHE/tools/bin:$HOME/.cargo/bin:$PATH
RATE=${RATE:-1000}
SECONDS_RUN=${DURATION_SECS:-20}
eval "$(scripts/testbed env)"
cargo build --release --locked -p palisade -p palisade-bench --bin palisade --bin alert-latency >/dev/null 2>&1
run=lat$(date +%s)
export PALISADE__KAFKA__BOOTSTRAP_SERVERS=$PALISADE_TEST_KAFKA PALISADE__KAFKA__GROUP_PREFIX=palisade-$run
export PALISADE__SINK__OPENSEARCH__URL=$PALISADE_TEST_OPENSEARCH PALISADE__SINK__OPENSEARCH__INDEX_PREFIX=palisade-$run
export PALISADE__SINK__OPENSEARCH__BATCH_MAX_WAIT_MS=${BATCH_MAX_WAIT_MS:-20}
export PALISADE__SINK__TRANSACTIONAL_ID=palisade-sink-$run PALISADE__ENRICH__DEDUP_WINDOW_SECS=0
for topic in node_events audit_events cloud_activity detections enriched alerts dead_letter cluster_state; do
  export "PALISADE__TOPICS__${topic^^}=$run.$topic"
done
logs=$(mktemp -d)
pids=()
for stage in detect enrich sink; do
  PALISADE__METRICS_LISTEN_ADDR=127.0.0.1:0 "$CARGO_TARGET_DIR/release/palisade" "$stage" 2>"$logs/$stage.log" &
  pids+=($!)
done
trap 'kill -TERM "${pids[@]}" 2>/dev/null; wait; rm -rf "$logs"' EXIT
sleep 4
"$CARGO_TARGET_DIR/release/alert-latency" "$RATE" "$SECONDS_RUN"
