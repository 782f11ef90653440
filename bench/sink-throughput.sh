#!/usr/bin/env bash
# Sink throughput over real Kafka and OpenSearch: fills a per-run enriched topic with ALERTS alerts, then starts
# `palisade sink` (exactly-once alerts topic and the OpenSearch index) and times both outputs through its
# metrics (bench/src/bin/sink-throughput.rs). Prints figures; asserts nothing.
#
#   scripts/testbed up; bench/sink-throughput.sh            (ALERTS=20000 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
export PALISADE_CACHE=${PALISADE_CACHE:-$HOME/.cache/palisade}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PALISADE_CACHE/target}
export PATH=$PALISADE_CACHE/tools/bin:$HOME/.cargo/bin:$PATH
eval "$(scripts/testbed env)"
cargo build --release --locked -p palisade -p palisade-bench --bin palisade --bin sink-throughput >/dev/null 2>&1
run=tp$(date +%s)
export PALISADE__KAFKA__BOOTSTRAP_SERVERS=$PALISADE_TEST_KAFKA PALISADE__KAFKA__GROUP_PREFIX=palisade-$run
export PALISADE__SINK__OPENSEARCH__URL=$PALISADE_TEST_OPENSEARCH PALISADE__SINK__OPENSEARCH__INDEX_PREFIX=palisade-$run
export PALISADE__SINK__TRANSACTIONAL_ID=palisade-sink-$run PALISADE__SINK__OPENSEARCH__RETENTION_DAYS=0
for topic in node_events audit_events cloud_activity detections enriched alerts dead_letter cluster_state; do
  export "PALISADE__TOPICS__${topic^^}=$run.$topic"
done
PALISADE_BIN=$CARGO_TARGET_DIR/release/palisade "$CARGO_TARGET_DIR/release/sink-throughput" "${ALERTS:-20000}"
