#!/bin/bash
# Runs in a test VM (vm/run-cell ... SCRIPT=capture/runtime-trace.sh):
# records the text trace of `podman --runtime $E2E_RUNTIME run` of the
# fixture workload, once confined (podman's default seccomp profile) and
# once unconfined, the way the runc-*.trace fixtures in
# collector/tests/data/ were recorded: an instance armed at prestart on the
# init task with raw_syscalls:sys_enter and the sched process events,
# event-fork and record-tgid, read at poststop.
# Writes $VMCELL_OUT/<runtime>-{confined,unconfined}.trace and .pid/.comm.
set -euo pipefail
rt=${E2E_RUNTIME:?}
out=${VMCELL_OUT:?}
work=$(mktemp -d)
T=/sys/kernel/tracing
I=$T/instances/fixture_capture

mkdir -p "$work/rootfs/bin" "$work/hooks"
for d in etc tmp proc sys dev root run; do mkdir -p "$work/rootfs/$d"; done
cp /bin/busybox "$work/rootfs/bin/"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$work/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$work/rootfs/etc/passwd"
echo 'root:x:0:' > "$work/rootfs/etc/group"

cat > "$work/prestart" <<HOOK
#!/bin/bash
pid=\$(jq -r .pid)
mkdir $I
echo 0 > $I/tracing_on
echo 8192 > $I/buffer_size_kb
echo 1 > $I/options/event-fork
echo 1 > $I/options/record-tgid
echo \$pid > $I/set_event_pid
for e in raw_syscalls/sys_enter sched/sched_process_fork sched/sched_process_exec sched/sched_process_exit; do
    echo 1 > $I/events/\$e/enable
done
echo 1 > $I/tracing_on
echo \$pid > $work/pid
cat /proc/\$pid/comm > $work/comm
HOOK
cat > "$work/poststop" <<HOOK
#!/bin/bash
echo 0 > $I/tracing_on
cat $I/trace > $work/trace
rmdir $I
HOOK
chmod +x "$work/prestart" "$work/poststop"
for stage in prestart poststop; do
    printf '{"version":"1.0.0","hook":{"path":"%s"},"when":{"always":true},"stages":["%s"]}\n' \
        "$work/$stage" "$stage" > "$work/hooks/$stage.json"
done

for mode in confined unconfined; do
    opt=()
    [ $mode = confined ] || opt=(--security-opt seccomp=unconfined)
    podman --runtime "$rt" --hooks-dir "$work/hooks" run --rm --network none "${opt[@]}" \
        --rootfs "$work/rootfs" sh -c 'echo hi; ls /; cat /etc/passwd'
    cp "$work/trace" "$out/$rt-$mode.trace"
    cp "$work/pid" "$out/$rt-$mode.pid"
    cp "$work/comm" "$out/$rt-$mode.comm"
    echo "$mode: init pid $(cat "$work/pid"), comm at prestart '$(cat "$work/comm")', $(grep -c sys_enter "$work/trace") sys_enter records"
done
[ -d $I ] && rmdir $I || true
rm -rf "$work"
