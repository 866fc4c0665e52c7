#!/usr/bin/env bash
# Issue 9 §6: the pace of a rate-shaped fleet (Φ, the integral of the per-device rate) at
# the claim of a shard of a 7-day-old fleet, per shape: the closed form the agents use and
# the step-by-step sum it replaced. Release build; prints Markdown rows.
#   bench/pace.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo run --release --quiet -p pluribus-common --example pace_claim
