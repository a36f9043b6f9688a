#!/usr/bin/env bash
# The whole test suite (what `make test` and .ci/run run): build everything,
# run every test, and close with one tally line. Under CI=true, or when
# asked with VM_TEST=1, the tested matrix follows (vm/run-matrix: the
# end-to-end tests in VMs with kernels 6.1 and 6.12, runc and crun, and on
# this host); it takes about 20 minutes and needs no more than root.
#
# The CRI-O tests (tests/crio.rs) talk to a private CRI-O that
# scripts/crio.sh starts here, after the build, and stops after the tests,
# on every path. `--crio PATH` (or CRIO=PATH, e.g. `make test CRIO=...`)
# names an installed crio; else `crio` on PATH, else one built from
# ../shared/crio (cached in /var/cache/oci-ftrace-syscall-analyzer).
set -uo pipefail
cd "$(dirname "$0")/.."

crio_args=()
while [ $# -gt 0 ]; do
    case $1 in
        --crio) crio_args=(--crio "$2"); shift 2 ;;
        --crio=*) crio_args=(--crio "${1#--crio=}"); shift ;;
        *) echo "test.sh: unknown argument $1" >&2; exit 1 ;;
    esac
done
[ -n "${CRIO:-}" ] && [ ${#crio_args[@]} = 0 ] && crio_args=(--crio "$CRIO")

matrix=0
if [ "${CI:-}" = true ] || [ "${VM_TEST:-0}" = 1 ]; then
    matrix=1
fi

log=$(mktemp)
mlog=$(mktemp)
clog=$(mktemp)
crio_started=0
stop_crio() {
    if [ $crio_started = 1 ]; then
        bash scripts/crio.sh stop
        crio_started=0
    fi
}
trap 'stop_crio; rm -f "$log" "$mlog" "$clog"' EXIT
trap 'exit 130' INT TERM

cargo build --locked --workspace --all-targets || exit 1

# CRI-O for tests/crio.rs. If it cannot run here, the tests say why
# (E2E_CRIO_MISSING): SKIPPED locally, a failure under CI=true.
echo "== CRI-O for tests/crio.rs (scripts/crio.sh)"
t0=$(date +%s)
crio_started=1
bash scripts/crio.sh start --hook-bin target/debug "${crio_args[@]}" 2>&1 | tee "$clog"
crio_status=${PIPESTATUS[0]}
if [ $crio_status = 0 ]; then
    set -a; . "${CRIO_RUN:-/run/oci-ftrace-syscall-analyzer-e2e/crio}/env"; set +a
    echo "CRI-O $E2E_CRIO_VERSION ready in $(( $(date +%s) - t0 )) s"
else
    stop_crio
    reason=$(tail -1 "$clog" | sed 's/^crio.sh: //')
    if [ $crio_status = 2 ]; then
        export E2E_CRIO_MISSING="CRI-O: $reason"
    else
        export E2E_CRIO_MISSING="CRI-O did not start (scripts/crio.sh exit $crio_status: $reason)"
    fi
    echo "CRI-O not started: $E2E_CRIO_MISSING"
fi
# Tests that need the kernel and podman serialise themselves; the rest run
# in parallel.
cargo test --locked --workspace --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
stop_crio
# Nothing may record after the tests, and the slots they left go.
echo "== trace slots (scripts/slots-check.sh)"
bash scripts/slots-check.sh target/debug/collector 600 || status=1

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
