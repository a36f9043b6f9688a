# Shared pieces of the tracing benchmarks (bench/overhead, bench/start-overhead,
# bench/machine-cost): a busybox rootfs, a private hooks dir, container runs
# that clean up after themselves, medians, summary.json fields and the
# RESULTS.md section writer. Sourced, not run.
#
# Every script that sources this calls bench_init, which installs an EXIT trap:
# it removes the containers the script started (podman rm -f), ends the
# tracers it started (by pid), ends recorder/hook processes of its own
# containers (by pid, matched on the container id), and removes any
# oci_ftrace_* instance that belongs to one of its containers. Instances of
# other containers (someone else's) are reported, never touched.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)
TRACEFS=/sys/kernel/tracing
TRACE_ANN=oci-ftrace-syscall-analyzer/trace=true
MODE_FULL_ANN=oci-ftrace-syscall-analyzer/mode=full

# Filled in as the script goes; read by bench_cleanup.
BENCH_CONTAINERS=()   # container names we started
BENCH_IDS=()          # full ids of containers we started
BENCH_PIDS=()         # tracer processes we started (bpftrace, strace)
WORK=
KEEP_WORK=0

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }
die() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

# The default place of the release binaries: $CARGO_TARGET_DIR or the repo's target/.
default_bin_dir() { echo "${CARGO_TARGET_DIR:-$REPO_DIR/target}/release"; }

# bench_init NAME: checks, work dir, traps.
bench_init() {
    [ "$(id -u)" = 0 ] || die "must run as root (podman, tracefs, bpftrace, strace)"
    local t
    for t in podman runc jq busybox "$@"; do
        command -v "$t" >/dev/null 2>&1 || die "$t is not installed (run scripts/setup.sh)"
    done
    grep -q ' tracefs ' /proc/self/mountinfo || mount -t tracefs nodev "$TRACEFS"
    WORK=$(mktemp -d /tmp/oci-ftrace-bench.XXXXXX)
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
}

# Processes whose argv[0] is our collector or hook and whose arguments name
# one of our container ids (the recorder `collector record <id>`, a hook
# still waiting). Printed one pid a line.
own_helper_pids() {
    local p cmd id
    for p in /proc/[0-9]*; do
        cmd=$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null) || continue
        case ${cmd%% *} in */collector|collector|*/oci-ftrace-hook|oci-ftrace-hook) ;; *) continue ;; esac
        for id in "${BENCH_IDS[@]}"; do
            [ -n "$id" ] && [[ $cmd == *"$id"* ]] && { echo "${p#/proc/}"; break; }
        done
    done
}

POOL_DIR=/run/oci-ftrace-syscall-analyzer/pool

# The id a slot (oci_ftrace_@slotN) records, if it is in use.
slot_user() {
    local f="$POOL_DIR/slot${1#oci_ftrace_@slot}.json"
    [ -f "$f" ] && grep -q '"phase": "in-use"' "$f" && sed -n 's/^ *"id": "\(.*\)",$/\1/p' "$f"
    return 0
}

# Instances (names) that record one of our containers: their own, or a
# slot in use by one.
own_instances() {
    local inst id who
    [ -d "$TRACEFS/instances" ] || return 0
    for inst in $(ls "$TRACEFS/instances" 2>/dev/null); do
        case $inst in
            oci_ftrace_@slot*) who=$(slot_user "$inst") ;;
            oci_ftrace_*) who=$inst ;;
            *) continue ;;
        esac
        for id in "${BENCH_IDS[@]}"; do
            [ -n "$id" ] && [ -n "$who" ] && [[ $who == *"${id:0:12}"* ]] && { echo "$inst"; break; }
        done
    done
    return 0
}

# oci_ftrace_* instances recording what is not ours (another user's
# containers). A free slot records nothing and is nobody's.
foreign_instances() {
    local inst mine
    mine=" $(own_instances | tr '\n' ' ') "
    for inst in $(ls "$TRACEFS/instances" 2>/dev/null); do
        case $inst in
            oci_ftrace_@slot*) [ -n "$(slot_user "$inst")" ] && [[ $mine != *" $inst "* ]] && echo "$inst" ;;
            oci_ftrace_*) [[ $mine == *" $inst "* ]] || echo "$inst" ;;
        esac
    done
    return 0
}

# Free slots (armed, recording nothing, waiting for the next container).
free_slots() {
    local inst
    for inst in $(ls "$TRACEFS/instances" 2>/dev/null); do
        case $inst in oci_ftrace_@slot*) [ -z "$(slot_user "$inst")" ] && echo "$inst" ;; esac
    done
    return 0
}

# Tears the free slots down (BIN_DIR's collector), waiting up to $1 s.
reap_free_slots() {
    local limit=$1 i
    [ -n "$(free_slots)" ] && [ -x "${BIN_DIR:-}/collector" ] || return 0
    "$BIN_DIR/collector" gc --reap-idle >/dev/null 2>&1 &
    for i in $(seq "$limit"); do [ -z "$(free_slots)" ] && break; sleep 1; done
    log "free slots torn down in $i s; left: $(free_slots | wc -l)"
}

# Stops the tracer process $1 (SIGINT first, then SIGKILL) and reaps it.
stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -INT "$pid" 2>/dev/null || true
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# Removes containers by name, waiting for their poststop hooks.
remove_containers() {
    [ $# -gt 0 ] || return 0
    podman rm -f -t 0 "$@" >/dev/null 2>&1 || true
}

# Waits up to $1 seconds for our instances to disappear; prints how many are left.
wait_own_instances_gone() {
    local limit=$1 i n
    for i in $(seq $((limit * 5))); do
        n=$(own_instances | wc -l)
        [ "$n" = 0 ] && { echo 0; return 0; }
        sleep 0.2
    done
    own_instances | wc -l
}

bench_cleanup() {
    local rc=$? pid inst
    trap - EXIT INT TERM HUP
    set +e
    for pid in "${BENCH_PIDS[@]}"; do stop_pid "$pid"; done
    remove_containers "${BENCH_CONTAINERS[@]}"
    if [ "$(wait_own_instances_gone 30)" != 0 ]; then
        for pid in $(own_helper_pids); do
            log "cleanup: ending $(tr '\0' ' ' < /proc/$pid/cmdline 2>/dev/null) (pid $pid)"
            kill -TERM "$pid" 2>/dev/null
        done
        sleep 2
        for pid in $(own_helper_pids); do kill -KILL "$pid" 2>/dev/null; done
        for inst in $(own_instances); do
            log "cleanup: removing leftover instance $inst"
            echo 0 > "$TRACEFS/instances/$inst/tracing_on" 2>/dev/null
            echo > "$TRACEFS/instances/$inst/set_event" 2>/dev/null
            rmdir "$TRACEFS/instances/$inst" 2>/dev/null || log "cleanup: could not remove $inst"
        done
    fi
    reap_free_slots 180
    local left stray foreign
    left=$(own_instances | wc -l)
    stray=0
    for pid in "${BENCH_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && stray=$((stray + 1)); done
    foreign=$(foreign_instances | wc -l)
    log "cleanup: our instances left: $left; our tracer processes left: $stray; other oci_ftrace_* instances (not ours, untouched): $foreign"
    if [ "$KEEP_WORK" = 1 ]; then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
    [ "$left" = 0 ] && [ "$stray" = 0 ] || rc=${rc/#0/1}
    exit "$rc"
}

# make_rootfs DIR: busybox, one symlink per applet, /etc/passwd, mount points.
make_rootfs() {
    local root=$1 applet
    mkdir -p "$root"/{bin,etc,tmp,proc,sys,dev,root,run,data,sync}
    cp /bin/busybox "$root/bin/"
    for applet in $(/bin/busybox --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
    done
    echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
}

# install_hooks BIN_DIR HOOKS_DIR STATE_DIR [HOOK_ARG...]
install_hooks() {
    local bin=$1 hooks=$2 state=$3; shift 3
    local args=() a
    for a in "$@"; do args+=("--hook-arg=$a"); done
    mkdir -p "$hooks" "$state"
    "$bin/collector" install-hooks --hook-path "$bin/oci-ftrace-hook" \
        --hooks-dir "$hooks" --state-dir "$state" "${args[@]}" > "$WORK/install-hooks.log" 2>&1 ||
        { cat "$WORK/install-hooks.log" >&2; die "collector install-hooks failed"; }
}

# check_bins BIN_DIR
check_bins() {
    [ -x "$1/collector" ] && [ -x "$1/oci-ftrace-hook" ] ||
        die "no release binaries in $1 (cargo build --release, or pass --bin-dir)"
}

# Which source the binaries were built from: BIN_DIR/BUILT_FROM (written by
# bench/lib/build-commit.sh) or else the repository's HEAD with a caveat.
binaries_label() {
    local bin=$1
    if [ -s "$bin/BUILT_FROM" ]; then
        echo "built from $(cat "$bin/BUILT_FROM")"
    else
        echo "from $bin (built $(date -r "$bin/oci-ftrace-hook" '+%F %T')); repository HEAD $(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$REPO_DIR" diff --quiet HEAD 2>/dev/null || echo ' with uncommitted changes')"
    fi
}

# The hook accepts --max-instances?
hook_has_cap() { "$1/oci-ftrace-hook" --help 2>/dev/null | grep -q -- '--max-instances'; }

# podman with the benchmark's common options; the caller adds the rest.
PODMAN_RUN_OPTS=(--rm --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024)

# Host pid of a container's init, waiting up to $2 seconds for it to run.
container_pid() {
    local id=$1 limit=${2:-30} i pid
    for i in $(seq $((limit * 10))); do
        pid=$(podman inspect --format '{{.State.Pid}}' "$id" 2>/dev/null || true)
        [ -n "$pid" ] && [ "$pid" -gt 0 ] 2>/dev/null && { echo "$pid"; return 0; }
        sleep 0.1
    done
    return 1
}

# Waits up to $2 seconds for file $1 to be non-empty.
wait_file() {
    local f=$1 limit=${2:-30} i
    for i in $(seq $((limit * 10))); do [ -s "$f" ] && return 0; sleep 0.1; done
    return 1
}

# median: numbers on stdin (one a line, "n/a" ignored) → median or n/a.
median() {
    { grep -E '^-?[0-9.]+(e-?[0-9]+)?$' || true; } | sort -g | awk '{a[NR]=$1} END {
        if (NR == 0) { print "n/a"; exit }
        if (NR % 2) print a[(NR+1)/2]; else printf "%.6g\n", (a[NR/2] + a[NR/2+1]) / 2 }'
}

# max: numbers on stdin → max or n/a.
max() {
    local v
    v=$({ grep -E '^-?[0-9.]+(e-?[0-9]+)?$' || true; } | sort -g | tail -1)
    echo "${v:-n/a}"
}

# jq_or_na FILE EXPR: the value, or n/a when the file or field is missing/null.
jq_or_na() {
    local f=$1 expr=$2 v
    [ -s "$f" ] || { echo n/a; return 0; }
    v=$(jq -r "($expr) | if . == null then \"n/a\" else tostring end" "$f" 2>/dev/null) || v=n/a
    [ -n "$v" ] && [ "$v" != null ] || v=n/a
    echo "$v"
}

# fmt NUMBER PRINTF_FORMAT: formats a number, passes n/a through.
fmt() {
    case $1 in ''|n/a) echo n/a ;; *) awk -v v="$1" -v f="$2" 'BEGIN { printf f "\n", v }' ;; esac
}

# ratio A B → A/B with 2 decimals, or n/a.
ratio() {
    case "$1$2" in *n/a*|'') echo n/a ;; *) awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f\n", a / b; else print "n/a" }' ;; esac
}

# replace_section FILE "## Title" BODY_FILE: the section (heading to the next
# "## " heading) is replaced in place, or appended if absent. Other sections
# are left as they are. Written through a temp file and a rename.
replace_section() {
    local file=$1 title=$2 body=$3 tmp
    [ -f "$file" ] || printf '# Benchmark results\n' > "$file"
    tmp=$(mktemp "$file.XXXXXX")
    awk -v title="$title" -v body="$body" '
        function emit(   line) { while ((getline line < body) > 0) print line; close(body); done = 1 }
        $0 == title { emit(); skip = 1; next }
        skip && /^## / { skip = 0; print "" }
        !skip { print }
        END { if (!done) { print ""; emit() } }
    ' "$file" > "$tmp"
    # No runs of blank lines left behind by the splice.
    cat -s "$tmp" > "$tmp.2" && mv "$tmp.2" "$tmp"
    chmod --reference="$file" "$tmp" 2>/dev/null || true
    sync "$tmp" 2>/dev/null || true
    mv "$tmp" "$file"
}

# machine_line: kernel, cores, load, for the results.
machine_line() {
    echo "Linux $(uname -r), $(nproc) cores, $(awk '/^MemTotal/ {printf "%.0f", $2/1048576}' /proc/meminfo) GiB; podman $(podman --version | awk '{print $3}'), $(runc --version | head -1)"
}

# Processes that load the machine enough to show in a figure: compiles and VMs.
BUSY_PATTERN='rustc|cargo|qemu-system-.*'
busy_count() { pgrep -c -x "$BUSY_PATTERN" 2>/dev/null || true; }

# wait_quiet S: if S > 0 and a compile or a VM is running, waits until none
# has been seen for S seconds in a row (checked every 2 s, at most 15
# minutes), so it does not land in the next figure. Returns at once on a
# quiet machine.
wait_quiet() {
    local want=$1 quiet=0 waited=0
    [ "$want" -gt 0 ] 2>/dev/null || return 0
    [ "$(busy_count)" -gt 0 ] || return 0
    while [ "$quiet" -lt "$want" ] && [ "$waited" -lt 900 ]; do
        if [ "$(busy_count)" -gt 0 ]; then quiet=0; else quiet=$((quiet + 2)); fi
        [ "$quiet" -ge "$want" ] && break
        sleep 2; waited=$((waited + 2))
    done
    [ "$waited" -le "$want" ] || log "waited ${waited}s for a quiet machine"
}

# busy_note: compiles, VMs and foreign instances right now.
busy_note() {
    local f
    f=$(foreign_instances | wc -l)
    echo "rustc/cargo/qemu processes: $(busy_count); other oci_ftrace_* instances: $f; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
}
