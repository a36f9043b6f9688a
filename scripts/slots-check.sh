#!/usr/bin/env bash
# After a test run: no trace instance of ours may still record (an
# instance of a container's own, or a slot in use), then the free slots,
# which linger for the next container by design, are torn down.
#
#   scripts/slots-check.sh COLLECTOR LIMIT [--report-only]
#
# Fails (exit 1) if anything still records after 20 s, or, without
# --report-only, if a slot is left after LIMIT seconds of teardown. With
# --report-only (the emulated VMs, where a teardown takes many minutes) it
# says how far the teardown got in LIMIT seconds.
set -uo pipefail
collector=$1 limit=$2 report_only=${3:-}
inst=/sys/kernel/tracing/instances
pool=/run/oci-ftrace-syscall-analyzer/pool
own() { ls "$inst" 2>/dev/null | grep '^oci_ftrace_' | grep -v '^oci_ftrace_@slot' || true; }
in_use() { grep -l '"phase": "in-use"' "$pool"/*.json 2>/dev/null || true; }
slots() { ls "$inst" 2>/dev/null | grep -c '^oci_ftrace_@slot' || true; }
# Trigger files are read under the collector's writer lock: a read racing
# a removal oopsed kernel 6.1 (collector/src/tracefs/mod.rs).
triggers() { flock /run/oci-ftrace-syscall-analyzer/tracefs.lock sh -c "cat $inst/oci_ftrace_@slot*/events/syscalls/*/trigger 2>/dev/null" | grep -c '^disable_event' || true; }

t0=$(date +%s)
while [ -n "$(own)$(in_use)" ] && [ $(( $(date +%s) - t0 )) -lt 20 ]; do sleep 1; done
if [ -n "$(own)$(in_use)" ]; then
    echo "slots-check: still recording after the tests: $(own) $(in_use)" >&2
    exit 1
fi
before=$(slots) trig=$(triggers)
t0=$(date +%s)
"$collector" gc --reap-idle >/dev/null 2>&1 &
gc=$!
while [ "$(slots)" != 0 ] && [ $(( $(date +%s) - t0 )) -lt "$limit" ]; do sleep 1; done
kill $gc 2>/dev/null; wait $gc 2>/dev/null
left=$(slots)
echo "slots-check: nothing records; free slots $before ($trig triggers) → $left left ($(triggers) triggers) after $(( $(date +%s) - t0 )) s of teardown"
[ "$report_only" = --report-only ] || [ "$left" = 0 ]
