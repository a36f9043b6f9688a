#!/bin/bash
# Captures a binary ring-buffer fixture: format files, and per-CPU
# trace_pipe_raw pages of a short busybox workload, plus the text trace of
# the same buffer as the oracle.
set -euo pipefail
OUT=${1:?out dir}
T=/sys/kernel/tracing
I=$T/instances/oci_ftrace_capture
mkdir -p "$OUT/formats"
mkdir "$I"
trap 'echo 0 > $I/tracing_on; rmdir $I' EXIT
echo 0 > $I/tracing_on
echo 64 > $I/buffer_size_kb
echo 1 > $I/options/event-fork
echo 1 > $I/options/record-tgid
for e in raw_syscalls/sys_enter sched/sched_process_fork sched/sched_process_exec sched/sched_process_exit syscalls/sys_enter_openat syscalls/sys_exit_openat task/task_newtask; do
    echo 1 > $I/events/$e/enable
    mkdir -p "$OUT/formats/$(dirname $e)"
    cp $T/events/$e/format "$OUT/formats/$e.format"
done
cp $T/events/header_page "$OUT/formats/header_page"
cp $T/events/header_event "$OUT/formats/header_event"
# A paused shell: its pid goes in before it runs the workload.
fifo=$(mktemp -u); mkfifo $fifo
/bin/busybox sh -c "read x < $fifo; /bin/busybox ls / >/dev/null; /bin/busybox cat /etc/hostname >/dev/null & wait" &
pid=$!
echo $pid > $I/set_event_pid
echo 1 > $I/tracing_on
echo go > $fifo; wait $pid; rm -f $fifo
echo 0 > $I/tracing_on
echo $pid > "$OUT/pid"
cat $I/trace > "$OUT/trace.txt"
for c in $I/per_cpu/cpu*; do
    n=$(basename $c)
    dd if=$c/trace_pipe_raw of="$OUT/$n.raw" bs=4096 iflag=nonblock status=none 2>/dev/null || true
done
ls -la "$OUT"
