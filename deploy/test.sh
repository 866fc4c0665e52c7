#!/usr/bin/env bash
# Runs all of Pluribus' tests: installs missing dependencies (deploy/install-deps.sh), builds
# the whole workspace (the integration tests spawn its binaries), then runs
# `cargo test --workspace`, forwarding any extra arguments, e.g.
#   deploy/test.sh                  # everything
#   deploy/test.sh -- --nocapture   # extra args go to cargo test
# Exits with cargo's status.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ -d "$HOME/.cargo/bin" && ":$PATH:" != *":$HOME/.cargo/bin:"* ]]; then
  PATH="$HOME/.cargo/bin:$PATH"
fi

bash deploy/install-deps.sh

locked=()
if [[ -f Cargo.lock ]]; then
  locked=(--locked)
fi

echo "== cargo build --workspace ${locked[*]}"
cargo build --workspace "${locked[@]}"

echo "== cargo test --workspace --no-fail-fast ${locked[*]} $*"
exec cargo test --workspace --no-fail-fast "${locked[@]}" "$@"
