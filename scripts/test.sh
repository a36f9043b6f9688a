#!/usr/bin/env bash
# The whole test suite (what `make test` and .ci/run run): build everything,
# run every test, and close with one tally line.
set -uo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp)
trap 'rm -f "$log"' EXIT

cargo build --locked --workspace --all-targets || exit 1
# Tests that need the kernel and podman serialise themselves; the rest run
# in parallel.
cargo test --locked --workspace --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

passed=$(awk '/^test result:/ {for (i=1;i<=NF;i++) if ($i ~ /^passed;?$/) s+=$(i-1)} END {print s+0}' "$log")
failed=$(awk '/^test result:/ {for (i=1;i<=NF;i++) if ($i ~ /^failed;?$/) s+=$(i-1)} END {print s+0}' "$log")
skipped=$(grep -c '^SKIPPED:' "$log" || true)
echo
echo "total: $passed passed, $failed failed, $skipped skipped"
exit "$status"
