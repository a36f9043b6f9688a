#!/usr/bin/env bash
# The main job, end to end: run a traced container through the installed
# hook, print its report and profile, then run it again under the profile
# and show that a call it never made is denied.
set -euo pipefail

STATE_DIR=${STATE_DIR:-/var/lib/oci-ftrace-syscall-analyzer}
WORK=$(mktemp -d /tmp/oci-ftrace-demo.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
COLLECTOR=$(command -v collector || echo /usr/local/bin/collector)

# A registry-free image: busybox and one symlink per applet.
ROOTFS=$WORK/rootfs
mkdir -p "$ROOTFS"/{bin,etc,tmp,proc,sys,dev,root,run}
cp /bin/busybox "$ROOTFS/bin/"
for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$ROOTFS/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$ROOTFS/etc/passwd"

WORKLOAD='echo hello from a traced container; ls /; cat /etc/passwd'
run() {
    podman --runtime runc run --rm --network none \
        --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 "$@"
}

echo "== 1. run with the annotation oci-ftrace-syscall-analyzer/trace=true"
run --cidfile "$WORK/cid" --annotation oci-ftrace-syscall-analyzer/trace=true \
    --rootfs "$ROOTFS" sh -c "$WORKLOAD"
ID=$(cat "$WORK/cid")
PROFILE=$STATE_DIR/$ID/seccomp.json

echo
echo "== 2. collector report ${ID:0:12}"
"$COLLECTOR" report "${ID:0:12}" --state-dir "$STATE_DIR"

echo
echo "== 3. the profile: $PROFILE"
cat "$PROFILE"

echo
echo "== 4. the same workload under the profile"
run --security-opt seccomp="$PROFILE" --rootfs "$ROOTFS" sh -c "$WORKLOAD"

echo
echo "== 5. something the recording never saw (mkdir) is denied"
if run --security-opt seccomp="$PROFILE" --rootfs "$ROOTFS" sh -c 'mkdir /tmp/x'; then
    echo "unexpected: mkdir was allowed" >&2
    exit 1
fi

echo
echo "== 6. a checkpoint of a traced container, next to its trace"
# PID 1 waits for a shell that waits for a sleep. The container is
# checkpointed while it runs (CRIU's own calls stay out of the profile),
# then stopped; poststop finds the archive in the annotated directory, a
# subdirectory of the kubelet's, which `make install` configures as a
# checkpoint root (--checkpoint-root in the poststop hook's args).
NAME=ofsa-demo-$$
CKPTS=/var/lib/kubelet/checkpoints/$NAME
mkdir -p "$CKPTS"
trap 'rm -rf "$WORK" "$CKPTS"' EXIT
run -d --name "$NAME" --cidfile "$WORK/cid2" \
    --annotation oci-ftrace-syscall-analyzer/trace=true \
    --annotation oci-ftrace-syscall-analyzer/checkpoint-dir="$NAME" \
    --rootfs "$ROOTFS" sh -c 'sh -c "sleep 100000; :" & while :; do sleep 0.2; done' > /dev/null
ID2=$(cat "$WORK/cid2")
sleep 1
podman container checkpoint --leave-running --export="$CKPTS/$NAME.tar.zst" "$NAME" > /dev/null
podman stop -t 0 "$NAME" > /dev/null
for _ in $(seq 100); do
    [ -s "$STATE_DIR/$ID2/correlation.json" ] && break
    sleep 0.1
done
# (head ends the pipe early on purpose: its writers' SIGPIPE is no failure.)
"$COLLECTOR" report "${ID2:0:12}" --state-dir "$STATE_DIR" | sed -n '/^checkpoints/,/^$/p;/^Checkpoint /,$p' | cut -c1-120 | head -60 || true

echo
sleep 0.5 # the recorders let their instances go right after their summaries
# Nothing may still record: no instance of a container's own, no slot in
# use. Free slots wait for the next traced container, then go by themselves.
own=$(ls /sys/kernel/tracing/instances | grep '^oci_ftrace_' | grep -vc '^oci_ftrace_@slot' || true)
in_use=$({ grep -l '"phase": "in-use"' /run/oci-ftrace-syscall-analyzer/pool/*.json 2>/dev/null || true; } | wc -l)
free=$(ls /sys/kernel/tracing/instances | grep -c '^oci_ftrace_@slot' || true)
echo "== trace instances still recording: $((own + in_use)); free slots waiting for the next container: $((free - in_use)) (torn down after --slot-linger-secs, 10 s, or now with: collector gc --reap-idle)"
[ "$own" = 0 ] && [ "$in_use" = 0 ]
