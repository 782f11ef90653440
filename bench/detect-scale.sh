#!/usr/bin/env bash
# Throughput of 1, 2 and 3 `palisade detect` instances with their state in the changelog topic, over real Kafka:
# per count a fresh 6-partition node-events topic filled with EVENTS events of the realistic node mix, then the
# instances in one group until their committed offsets cover it (bench/src/bin/detect-scale.rs). Prints figures;
# asserts nothing. On this 2-core machine the instances share the cores with Kafka and with each other.
#
#   scripts/testbed up kafka; bench/detect-scale.sh          (EVENTS=1000000, COUNTS=1,2,3, NODES=60,
#                                                           CONTAINERS=10 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
export PALISADE_CACHE=${PALISADE_CACHE:-$HOME/.cache/palisade}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PALISADE_CACHE/target}
export PATH=$PALISADE_CACHE/tools/bin:$HOME/.cargo/bin:$PATH
eval "$(scripts/testbed env)"
cargo build --release --locked -p palisade -p palisade-bench --bin palisade --bin detect-scale >/dev/null 2>&1
export PALISADE__KAFKA__BOOTSTRAP_SERVERS=$PALISADE_TEST_KAFKA
PALISADE_BIN=$CARGO_TARGET_DIR/release/palisade "$CARGO_TARGET_DIR/release/detect-scale" "${EVENTS:-1000000}" "${COUNTS:-1,2,3}"
