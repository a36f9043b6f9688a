#!/bin/bash
# Captures the checkpoint-episode fixtures: a busybox container traced from
# its first instruction (a prestart hook writes its pid into the instance),
# running a loop of sleeps and small file I/O. With "ckpt" it is
# checkpointed twice with --leave-running (plain, then --export); with
# "plain" it is not. Saved: format files, per-CPU trace_pipe_raw pages, the
# text trace of the same buffer (zstd), the init pid, and the uptime around each
# checkpoint.
#
#   collector/tests/data/capture-checkpoint.sh ckpt  collector/tests/data/episodes-6.18/ckpt
#   collector/tests/data/capture-checkpoint.sh plain collector/tests/data/episodes-6.18/plain
#
# Root, podman, runc, criu 4.x, jq and zstd; run scripts/setup.sh first.
set -euo pipefail
MODE=${1:?ckpt or plain}; OUT=$(realpath -m "${2:?out dir}")
T=$(awk '{for (i = 7; i < NF; i++) if ($i == "-") { if ($(i + 1) == "tracefs") { print $5; exit } break }}' /proc/self/mountinfo)
[ -n "$T" ] || { echo "tracefs is not mounted" >&2; exit 1; }
I=$T/instances/oci_ftrace_capture_ckpt
WORK=$(mktemp -d); NAME=capture-ckpt-$$
PODMAN=(podman --runtime runc)
cleanup() {
    "${PODMAN[@]}" rm -f -t 0 "$NAME" >/dev/null 2>&1 || true
    if [ -d "$I" ]; then echo 0 > "$I/tracing_on"; : > "$I/set_event"; rmdir "$I"; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# A busybox rootfs; the loop runs until /stop appears in it.
R=$WORK/rootfs
mkdir -p "$R"/{bin,etc,tmp,proc,sys,dev,root,run}
cp /bin/busybox "$R/bin/"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$R/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$R/etc/passwd"; echo 'root:x:0:' > "$R/etc/group"

# The events the recorder arms, with raw_syscalls:sys_enter standing in for
# the per-syscall enter events (one format file instead of 360).
mkdir "$I"
echo 0 > "$I/tracing_on"
echo 4096 > "$I/buffer_size_kb"
echo 1 > "$I/options/event-fork"
echo 1 > "$I/options/record-tgid"
echo 'sig == 17 && code >= 4 && code <= 5' > "$I/events/signal/signal_generate/filter"
mkdir -p "$OUT/formats"
for e in raw_syscalls/sys_enter sched/sched_process_fork sched/sched_process_exec sched/sched_process_exit \
         task/task_newtask signal/signal_generate; do
    echo 1 > "$I/events/$e/enable"
    mkdir -p "$OUT/formats/$(dirname $e)"
    cp "$T/events/$e/format" "$OUT/formats/$e.format"
done
cp "$T/events/header_page" "$OUT/formats/header_page"

# prestart hook: the container's init pid goes into the filter before runc
# lets it run.
mkdir "$WORK/hooks"
cat > "$WORK/hook.sh" <<HOOK
#!/bin/sh
pid=\$(jq -r .pid)
echo "\$pid" > "$I/set_event_pid"
echo "\$pid" > "$WORK/pid"
echo 1 > "$I/tracing_on"
HOOK
chmod +x "$WORK/hook.sh"
cat > "$WORK/hooks/capture.json" <<JSON
{"version": "1.0.0", "hook": {"path": "$WORK/hook.sh"},
 "when": {"annotations": {"^capture-checkpoint\$": "^true\$"}}, "stages": ["prestart"]}
JSON

"${PODMAN[@]}" --hooks-dir "$WORK/hooks" run -d --name "$NAME" --network none \
    --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --annotation capture-checkpoint=true \
    --rootfs "$R" sh -c 'while [ ! -e /stop ]; do echo x > /tmp/f; cat /tmp/f > /dev/null; sleep 0.3; done' >/dev/null
uptime() { cut -d' ' -f1 /proc/uptime; }
: > "$OUT/info"
sleep 1.5
if [ "$MODE" = ckpt ]; then
    echo "plain-start $(uptime)" >> "$OUT/info"
    "${PODMAN[@]}" container checkpoint --leave-running "$NAME" >/dev/null
    echo "plain-end $(uptime)" >> "$OUT/info"
    sleep 1
    echo "export-start $(uptime)" >> "$OUT/info"
    "${PODMAN[@]}" container checkpoint --leave-running --export="$WORK/export.tar.zst" "$NAME" >/dev/null
    echo "export-end $(uptime)" >> "$OUT/info"
    sleep 1
else
    sleep 2
fi
touch "$R/stop"
"${PODMAN[@]}" wait "$NAME" >/dev/null
echo 0 > "$I/tracing_on"
cp "$WORK/pid" "$OUT/pid"
cat "$I/trace" | zstd -q -19 -f -o "$OUT/trace.txt.zst"
for c in "$I"/per_cpu/cpu*; do
    n=$(basename "$c")
    grep -E '^(overrun|dropped events):' "$c/stats" | sed "s/^/$n /" >> "$OUT/info"
    dd if="$c/trace_pipe_raw" of="$OUT/$n.raw" bs=4096 iflag=nonblock status=none 2>/dev/null || true
done
cat "$OUT/info"
