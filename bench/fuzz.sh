#!/usr/bin/env bash
# Property tests of every decoder of untrusted bytes, with many cases (issue 9): bus
# messages and KV records (random and mutated), histograms, fleet and profile files (YAML,
# TOML, JSON), the MQTT and FIX readers. Stable Rust (proptest): no nightly for cargo-fuzz.
#   bench/fuzz.sh            # 20,000 cases per property
#   FUZZ_CASES=200000 bench/fuzz.sh
# Prints one line per test binary: properties, inputs tried, seconds, panics (the goal: 0).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CASES=${FUZZ_CASES:-20000}
export PROPTEST_CASES=$CASES
run() { # label cargo-test-args...
  local label=$1 out start end props failed
  shift
  start=$(date +%s.%N)
  out=$(cargo test --release "$@" 2>&1) && failed=0 || failed=1
  end=$(date +%s.%N)
  props=$(grep -cE '^test .*(never_panic|read_or_refused) \.\.\. ' <<<"$out" || true)
  printf '%-34s properties %2d  inputs %9d  %6.1f s  panics %s\n' "$label" "$props" \
    $((props * CASES)) "$(echo "$end - $start" | bc)" \
    "$( ((failed)) && grep -c 'panicked' <<<"$out" || echo 0)"
  ((failed)) && { echo "$out" | grep -A12 'panicked' | head -40; }
  return 0
}
cargo build --release --quiet --tests -p pluribus-common -p pluribus-agent
run "common (messages, records, files)" -p pluribus-common --test decoders -- --nocapture
run "agent (MQTT and FIX readers)" -p pluribus-agent --lib codec_fuzz -- --nocapture
