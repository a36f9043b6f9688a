#!/usr/bin/env bash
# The whole test suite (what `make test` and .ci/run run): build everything,
# run every test, and close with one tally line. Under CI=true, or when
# asked with VM_TEST=1, the tested matrix follows (vm/run-matrix: the
# end-to-end tests in VMs with kernels 6.1 and 6.12, runc and crun, and on
# this host); it takes about 20 minutes and needs no more than root.
set -uo pipefail
cd "$(dirname "$0")/.."

matrix=0
if [ "${CI:-}" = true ] || [ "${VM_TEST:-0}" = 1 ]; then
    matrix=1
fi

log=$(mktemp)
mlog=$(mktemp)
trap 'rm -f "$log" "$mlog"' EXIT

cargo build --locked --workspace --all-targets || exit 1
# Tests that need the kernel and podman serialise themselves; the rest run
# in parallel.
cargo test --locked --workspace --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

vm_status=0
if [ $matrix = 1 ]; then
    echo
    echo "== the tested matrix (vm/run-matrix)"
    bash vm/run-matrix 2>&1 | tee "$mlog"
    vm_status=${PIPESTATUS[0]}
fi

passed=$(awk '/^test result:/ {for (i=1;i<=NF;i++) if ($i ~ /^passed;?$/) s+=$(i-1)} END {print s+0}' "$log")
failed=$(awk '/^test result:/ {for (i=1;i<=NF;i++) if ($i ~ /^failed;?$/) s+=$(i-1)} END {print s+0}' "$log")
skipped=$(grep -c '^SKIPPED:' "$log" || true)
echo
echo "total: $passed passed, $failed failed, $skipped skipped"
if [ $matrix = 1 ]; then
    cells=$(grep -m1 '^cells: ' "$mlog" || echo "cells: the matrix did not finish (exit $vm_status)")
    echo "vm matrix: ${cells#cells: }"
else
    echo "vm matrix: not run (it runs under CI=true, or with VM_TEST=1; alone: make vm-test)"
fi
[ "$status" = 0 ] && [ "$vm_status" = 0 ]
