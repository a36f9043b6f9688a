#!/usr/bin/env bash
# CRI-O for the end-to-end tests (tests/crio.rs): find or build crio, pinns
# and crictl, then start a private CRI-O with the project's hooks and stop it.
#
#   scripts/crio.sh build [--crio PATH]     print the directory holding crio, pinns, crictl
#   scripts/crio.sh start [--crio PATH] --hook-bin DIR
#                                           start CRI-O; write $RUN/env for the tests
#   scripts/crio.sh stop                    remove its pods, stop it by pid
#   scripts/crio.sh run [--crio PATH] --hook-bin DIR -- CMD...
#                                           start, run CMD, stop (on every path)
#
# Which CRI-O: `--crio PATH` (or CRIO=PATH), else `crio` on PATH, else a
# build from $CRIO_SRC/*.tar.zst (default: ../shared/crio beside the repo)
# with Debian's Go 1.24. A build is cached by the tarballs' hash in
# $CRIO_CACHE/crio-<hash>/bin (GOCACHE in $CRIO_CACHE/gocache), so a second
# run skips it. crictl likewise: on PATH, else built from the same folder.
#
# The CRI-O started here is private: its own socket, config, state under
# $RUN and its own container storage, so neither a CRI-O installed on the
# machine nor podman's store (and podman's tests) see its containers. Its
# hooks_dir holds the project's hooks.d rendered for the binaries in
# --hook-bin (writing to $RUN/state). Exit status 2 means "cannot here"
# (no CRI-O and nothing to build it from): the tests then say SKIPPED, or
# fail under CI=true.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
CRIO_SRC=${CRIO_SRC:-$repo/../shared/crio}
CRIO_CACHE=${CRIO_CACHE:-/var/cache/oci-ftrace-syscall-analyzer}
RUN=${CRIO_RUN:-/run/oci-ftrace-syscall-analyzer-e2e/crio}
STORAGE=${CRIO_STORAGE:-/var/lib/oci-ftrace-syscall-analyzer-e2e/crio-storage}
GO=${GO:-/usr/lib/go-1.24/bin/go}
IMAGE=localhost/oci-ftrace-e2e-busybox:latest
BUILD_TAGS="containers_image_openpgp containers_image_ostree_stub exclude_graphdriver_btrfs exclude_graphdriver_devicemapper seccomp libsqlite3"

say() { echo "crio.sh: $*" >&2; }
cannot() { say "$*"; exit 2; }

crio_arg=${CRIO:-}
hook_bin=
cmd=${1:-}
[ $# -gt 0 ] && shift
while [ $# -gt 0 ]; do
    case $1 in
        --crio) crio_arg=$2; shift 2 ;;
        --crio=*) crio_arg=${1#--crio=}; shift ;;
        --hook-bin) hook_bin=$2; shift 2 ;;
        --hook-bin=*) hook_bin=${1#--hook-bin=}; shift ;;
        --) shift; break ;;
        *) say "unknown argument $1"; exit 1 ;;
    esac
done

# The tarballs' hash: names the cache entry.
src_hash() {
    (cd "$CRIO_SRC" && sha256sum cri-o-*.tar.zst cri-tools-*.tar.zst) | sha256sum | cut -c1-16
}

# Builds crio, pinns and crictl into $CRIO_CACHE/crio-<hash>/bin unless
# they are there; prints that directory.
build_cached() {
    local tar_crio tar_tools
    tar_crio=$(ls "$CRIO_SRC"/cri-o-*.tar.zst 2>/dev/null | head -1 || true)
    tar_tools=$(ls "$CRIO_SRC"/cri-tools-*.tar.zst 2>/dev/null | head -1 || true)
    [ -n "$tar_crio" ] && [ -n "$tar_tools" ] || cannot "no CRI-O installed and no sources in $CRIO_SRC (cri-o-*.tar.zst, cri-tools-*.tar.zst)"
    local out
    out=$CRIO_CACHE/crio-$(src_hash)
    if [ -x "$out/bin/crio" ] && [ -x "$out/bin/pinns" ] && [ -x "$out/bin/crictl" ]; then
        say "cached build in $out/bin"
        echo "$out/bin"
        return
    fi
    [ -x "$GO" ] || cannot "no Go 1.24 at $GO (scripts/setup.sh installs golang-1.24-go)"
    mkdir -p "$CRIO_CACHE"
    # One build at a time on this machine; the second waits and finds it.
    exec 8>"$CRIO_CACHE/build.lock"
    flock 8
    if [ -x "$out/bin/crio" ] && [ -x "$out/bin/pinns" ] && [ -x "$out/bin/crictl" ]; then
        flock -u 8; echo "$out/bin"; return
    fi
    local work t0
    work=$(mktemp -d "$CRIO_CACHE/build.XXXXXX")
    t0=$(date +%s)
    say "building CRI-O from $tar_crio and $tar_tools (cold: ~3 min) in $work"
    tar --zstd -C "$work" -xf "$tar_crio"
    tar --zstd -C "$work" -xf "$tar_tools"
    mkdir -p "$work/bin"
    (
        export PATH=$(dirname "$GO"):$PATH GOTOOLCHAIN=local GOFLAGS=-mod=vendor GOPROXY=off CGO_ENABLED=1
        export GOCACHE=$CRIO_CACHE/gocache GOPATH=$work/gopath
        cd "$work/cri-o"
        go build -trimpath -tags "$BUILD_TAGS" -o "$work/bin/crio" ./cmd/crio
        make -s -C pinns >/dev/null
        cp bin/pinns "$work/bin/pinns"
        cd "$work/cri-tools"
        go build -trimpath -o "$work/bin/crictl" ./cmd/crictl
    ) >&2 || { rm -rf "$work"; flock -u 8; say "build failed"; exit 1; }
    rm -rf "$out"
    mkdir -p "$out"
    mv "$work/bin" "$out/bin"
    rm -rf "$work"
    say "built in $(( $(date +%s) - t0 )) s: $out/bin"
    flock -u 8
    echo "$out/bin"
}

# Sets crio, pinns, crictl (absolute paths).
find_binaries() {
    local built=
    if [ -n "$crio_arg" ]; then
        crio=$(readlink -f "$crio_arg")
        [ -x "$crio" ] || { say "--crio $crio_arg: not an executable"; exit 1; }
    else
        crio=$(command -v crio || true)
    fi
    crictl=$(command -v crictl || true)
    pinns=
    if [ -n "$crio" ]; then
        for p in "$(dirname "$crio")/pinns" "$(command -v pinns || true)"; do
            [ -n "$p" ] && [ -x "$p" ] && { pinns=$p; break; }
        done
    fi
    if [ -z "$crio" ] || [ -z "$pinns" ] || [ -z "$crictl" ]; then
        built=$(build_cached)
        [ -n "$crio" ] && [ -n "$pinns" ] || { crio=$built/crio; pinns=$built/pinns; }
        [ -n "$crictl" ] || crictl=$built/crictl
    fi
}

write_config() {
    local hooks=$RUN/hooks.d
    mkdir -p "$RUN/crio.conf.d" "$RUN/cni" "$RUN/exits" "$RUN/attach" "$RUN/logs" "$RUN/state" "$hooks"
    : > "$RUN/crio.conf"
    cat > "$RUN/crio.conf.d/10-oci-ftrace-e2e.conf" <<CONF
# Written by scripts/crio.sh for the end-to-end tests; removed by its stop.
[crio]
root = "$STORAGE/root"
runroot = "$RUN/storage"
storage_driver = "overlay"
log_dir = "$RUN/logs"
version_file = "$RUN/version"
version_file_persist = "$RUN/version-persist"
clean_shutdown_file = "$RUN/clean.shutdown"
[crio.api]
listen = "$RUN/crio.sock"
[crio.runtime]
default_runtime = "runc"
cgroup_manager = "cgroupfs"
conmon_cgroup = "pod"
hooks_dir = ["$hooks"]
pinns_path = "$pinns"
drop_infra_ctr = true
enable_criu_support = true
container_exits_dir = "$RUN/exits"
container_attach_socket_dir = "$RUN/attach"
[crio.runtime.runtimes.runc]
runtime_path = "$(command -v runc)"
runtime_type = "oci"
runtime_root = "$RUN/runc"
monitor_path = "$(command -v conmon)"
monitor_cgroup = "pod"
[crio.image]
pause_image = "$IMAGE"
pause_command = "/pause"
[crio.network]
network_dir = "$RUN/cni/"
plugin_dirs = ["/usr/lib/cni/"]
CONF
    # The project's hooks for the binaries under test; their state dir is
    # $RUN/state (the tests read E2E_CRIO_STATE_DIR).
    "$hook_bin/collector" install-hooks --hook-path "$hook_bin/oci-ftrace-hook" \
        --hooks-dir "$hooks" --state-dir "$RUN/state" \
        --hook-arg=--max-instances=16 >/dev/null 2>&1 ||
        { say "collector install-hooks failed (is $hook_bin the cargo target dir?)"; exit 1; }
}

# A busybox-static image in CRI-O's store, imported with podman pointed at
# that store (no registry here); /pause sleeps until TERM.
import_image() {
    local pod=(podman --root "$STORAGE/root" --runroot "$RUN/storage" --storage-driver overlay)
    if "${pod[@]}" image exists "$IMAGE" 2>/dev/null; then
        return
    fi
    local root
    root=$(mktemp -d)
    mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/proc" "$root/sys" "$root/dev" "$root/root" "$root/run"
    cp /bin/busybox "$root/bin/busybox"
    for a in $(/bin/busybox --list); do
        [ "$a" = busybox ] || ln -s busybox "$root/bin/$a"
    done
    echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
    echo 'root:x:0:' > "$root/etc/group"
    printf '#!/bin/sh\ntrap "exit 0" TERM\nwhile :; do sleep 1; done\n' > "$root/pause"
    chmod 0755 "$root/pause"
    tar -C "$root" -c . | "${pod[@]}" import --quiet --change 'CMD ["/bin/sh"]' - "$IMAGE" >/dev/null
    rm -rf "$root"
}

crictl_run() { "$crictl" --runtime-endpoint "unix://$RUN/crio.sock" --timeout 30s "$@"; }

start() {
    [ -n "$hook_bin" ] || { say "start: --hook-bin DIR (the built oci-ftrace-hook and collector) is needed"; exit 1; }
    hook_bin=$(readlink -f "$hook_bin")
    [ "$(id -u)" = 0 ] || cannot "must run as root"
    for t in runc conmon podman; do command -v $t >/dev/null || cannot "$t not installed (run scripts/setup.sh)"; done
    [ -e /bin/busybox ] || cannot "/bin/busybox not installed (run scripts/setup.sh)"
    if [ -f "$RUN/crio.pid" ] && kill -0 "$(cat "$RUN/crio.pid")" 2>/dev/null; then
        say "a CRI-O started by this script is still running (pid $(cat "$RUN/crio.pid")); stopping it first"
        stop
    fi
    find_binaries
    rm -rf "$RUN/state"
    write_config
    import_image
    local t0 pid
    t0=$(date +%s%N)
    setsid "$crio" --config "$RUN/crio.conf" --config-dir "$RUN/crio.conf.d" --log-level warn \
        >"$RUN/crio.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" > "$RUN/crio.pid"
    for _ in $(seq 1 300); do
        crictl_run version >/dev/null 2>&1 && break
        kill -0 "$pid" 2>/dev/null || { tail -20 "$RUN/crio.log" >&2; rm -f "$RUN/crio.pid"; say "crio exited at start"; exit 1; }
        sleep 0.1
    done
    crictl_run version >/dev/null 2>&1 || { tail -20 "$RUN/crio.log" >&2; stop; say "crio did not answer in 30 s"; exit 1; }
    local version
    version=$(crictl_run version 2>/dev/null | awk '/^RuntimeVersion:/ {print $2; exit}')
    cat > "$RUN/env" <<ENV
E2E_CRIO_ENDPOINT=unix://$RUN/crio.sock
E2E_CRICTL=$crictl
E2E_CRIO_STATE_DIR=$RUN/state
E2E_CRIO_IMAGE=$IMAGE
E2E_CRIO_VERSION=$version
ENV
    say "CRI-O $version (pid $pid, $crio) answers on $RUN/crio.sock after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
}

# Removes every pod of this CRI-O (their containers with them), then stops
# it: TERM, and KILL after 15 s. Its conmons have gone with the pods.
stop() {
    local pid
    pid=$(cat "$RUN/crio.pid" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        crictl=$(awk -F= '/^E2E_CRICTL=/ {print $2}' "$RUN/env" 2>/dev/null || true)
        if [ -n "$crictl" ] && [ -x "$crictl" ]; then
            crictl_run rmp --all --force >/dev/null 2>&1 || say "crictl rmp --all failed"
        fi
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 150); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && { say "crio (pid $pid) ignored TERM; KILL"; kill -KILL "$pid" 2>/dev/null || true; }
        say "CRI-O (pid $pid) stopped"
    fi
    rm -f "$RUN/crio.pid" "$RUN/env" "$RUN/crio.sock"
}

case $cmd in
    build) find_binaries; echo "crio=$crio pinns=$pinns crictl=$crictl" ;;
    start) start ;;
    stop) stop ;;
    run)
        [ $# -gt 0 ] || { say "run: a command after --"; exit 1; }
        trap stop EXIT INT TERM
        start
        set -a; . "$RUN/env"; set +a
        "$@"
        ;;
    *) say "usage: $0 build|start|stop|run [--crio PATH] [--hook-bin DIR] [-- CMD...]"; exit 1 ;;
esac
