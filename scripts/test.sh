#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh machine, then runs the gate —
# format check, clippy with warnings as errors, and every test (unit, scenario, capture replays,
# and, as root, the network-namespace end-to-end tests), then 30 s of coverage-guided fuzzing per
# target (scripts/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
(cd fuzz && cargo fmt -- --check)
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --all-targets --locked --no-fail-fast
echo "== cargo test, the policy engine and the charging system on PostgreSQL"
WEIR_TEST_STORE=postgres cargo test --locked --no-fail-fast --test policy_engine --test charging_system
echo "== fuzz (30 s per target)"
scripts/fuzz.sh 30
