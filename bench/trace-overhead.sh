#!/usr/bin/env bash
# The cost of OTLP trace export: fills a per-run audit topic with EVENTS audit events, then times `palisade detect`
# over it with tracing off, at the default sampling ratio and at 1.0, exporting to the testbed's Jaeger
# (bench/src/bin/trace-overhead.rs). Prints figures; asserts nothing.
#
#   scripts/testbed up kafka jaeger; bench/trace-overhead.sh      (EVENTS=200000 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
export PALISADE_CACHE=${PALISADE_CACHE:-$HOME/.cache/palisade}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PALISADE_CACHE/target}
export PATH=$PALISADE_CACHE/tools/bin:$HOME/.cargo/bin:$PATH
eval "$(scripts/testbed env)"
cargo build --release --locked -p palisade -p palisade-bench --bin palisade --bin trace-overhead >/dev/null 2>&1
run=to$(date +%s)
export PALISADE__KAFKA__BOOTSTRAP_SERVERS=$PALISADE_TEST_KAFKA
for topic in node_events audit_events cloud_activity detections enriched alerts dead_letter cluster_state; do
  export "PALISADE__TOPICS__${topic^^}=$run.$topic"
done
PALISADE_BIN=$CARGO_TARGET_DIR/release/palisade "$CARGO_TARGET_DIR/release/trace-overhead" "${EVENTS:-200000}"
