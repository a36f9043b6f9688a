#!/usr/bin/env bash
# Speed of `collector checkpoint inspect --all` on a ~100 MB checkpoint.
#
# Makes a real archive with Podman + runc + CRIU 4.1 (see
# shared/ENVIRONMENT.md): a busybox `sh` that holds ~100 MB of base64 text
# (from /dev/urandom, so it does not compress) in its heap, plus a `sleep`.
# Times `inspect --all` (which streams the archive twice: once for the
# images, once through the pages for command lines and environments) and
# `show` on the Podman export (zstd) and on the same data as a plain
# kubelet-style tar. Also times the forensics commands on the same archives:
# `coredump` (every process, to a directory under the work dir), `diff`
# against a `--leave-running` checkpoint of the same container taken just
# before, `maps` and `files`. Prints markdown tables.
#
# Usage: bench/checkpoint-inspect.sh [RUNS]   (root; tests/setup.sh first)
set -euo pipefail

runs=${1:-5}
here=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$here/target}
name=ofsa-ckpt-bench
image=localhost/ofsa-busybox:bench
podman=(podman --runtime runc)

[ "$(id -u)" = 0 ] || { echo "checkpoint-inspect: must run as root" >&2; exit 1; }

work=$(mktemp -d)
cleanup() {
    "${podman[@]}" rm -f "$name" >/dev/null 2>&1 || true
    "${podman[@]}" rmi -f "$image" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

(cd "$here" && cargo build --release -q -p collector)
bin=$target/release/collector

rootfs=$work/rootfs
mkdir -p "$rootfs"/{bin,tmp,dev,proc,sys,etc}
cp /bin/busybox "$rootfs/bin/busybox"
for a in sh sleep head base64; do ln -sf busybox "$rootfs/bin/$a"; done
tar -C "$rootfs" -cf "$work/rootfs.tar" .
"${podman[@]}" rmi -f "$image" >/dev/null 2>&1 || true
"${podman[@]}" import "$work/rootfs.tar" "$image" >/dev/null

"${podman[@]}" run -d --name "$name" --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 "$image" \
    /bin/sh -c 'x=$(head -c 75000000 /dev/urandom | base64); echo ready > /tmp/ready; sleep 100000 & while :; do wait; done' >/dev/null
for _ in $(seq 60); do
    "${podman[@]}" exec "$name" sh -c "test -e /tmp/ready" 2>/dev/null && break
    sleep 1
done
# An earlier checkpoint of the same container, for `diff`.
"${podman[@]}" container checkpoint --leave-running --export="$work/before.tar.zst" "$name" >/dev/null
"${podman[@]}" container checkpoint --export="$work/export.tar.zst" "$name" >/dev/null
zstd -qdc "$work/export.tar.zst" > "$work/kubelet.tar"
zstd -qdc "$work/before.tar.zst" > "$work/before.tar"

# Wall time of one run in milliseconds.
time_ms() {
    local t0 t1
    t0=$(date +%s%N)
    "$@" >/dev/null
    t1=$(date +%s%N)
    echo $(( (t1 - t0) / 1000000 ))
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
min() { sort -n | head -1; }

echo "| archive | size | command | min ms | median ms |"
echo "|---|---|---|---|---|"
for archive in "$work/kubelet.tar" "$work/export.tar.zst"; do
    size=$(du -m "$archive" | cut -f1)
    label=$(basename "$archive")
    for cmd in "inspect --all" "show"; do
        # shellcheck disable=SC2086
        "$bin" checkpoint $cmd "$archive" >/dev/null # warm the page cache
        samples=$(for _ in $(seq "$runs"); do
            # shellcheck disable=SC2086
            time_ms "$bin" checkpoint $cmd "$archive"
        done)
        echo "| $label | ${size} MB | checkpoint $cmd | $(echo "$samples" | min) | $(echo "$samples" | median) |"
    done
done

echo
echo "| archive | size | command | min ms | median ms |"
echo "|---|---|---|---|---|"
for archive in "$work/kubelet.tar" "$work/export.tar.zst"; do
    size=$(du -m "$archive" | cut -f1)
    label=$(basename "$archive")
    case $archive in *.zst) before=$work/before.tar.zst ;; *) before=$work/before.tar ;; esac
    for cmd in coredump diff maps files; do
        case $cmd in
            coredump) args=(coredump "$archive" -o "$work/cores") ;;
            diff) args=(diff "$before" "$archive") ;;
            maps) args=(maps "$archive" --pid 1) ;;
            files) args=(files "$archive") ;;
        esac
        "$bin" checkpoint "${args[@]}" >/dev/null # warm the page cache
        samples=$(for _ in $(seq "$runs"); do
            rm -rf "$work/cores"
            time_ms "$bin" checkpoint "${args[@]}"
        done)
        echo "| $label | ${size} MB | checkpoint $cmd | $(echo "$samples" | min) | $(echo "$samples" | median) |"
        if [ "$cmd" = coredump ]; then
            echo "$label: cores $(du -sh --apparent-size "$work/cores" | cut -f1) apparent, $(du -sh "$work/cores" | cut -f1) on disk" >&2
        fi
    done
done
