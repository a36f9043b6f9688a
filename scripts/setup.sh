#!/usr/bin/env bash
# Installs the system packages the demo and the test suite need, on a fresh
# Debian 12 machine. Idempotent: a second run only checks.
set -euo pipefail

[ "$(id -u)" = 0 ] || { echo "setup: must run as root (apt-get, tracefs, podman)" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive

need=()
# gcc and libc6-dev build the static C fixtures of the e2e tests (tests/fixtures).
for pair in runc:runc podman:podman busybox-static:/bin/busybox jq:jq strace:strace \
            zstd:zstd make:make bpftrace:bpftrace gdb:gdb gcc:gcc \
            libc6-dev:/usr/lib/x86_64-linux-gnu/libc.a; do
    pkg=${pair%%:*} probe=${pair#*:}
    case $probe in
        /*) [ -e "$probe" ] || need+=("$pkg") ;;
        *) command -v "$probe" >/dev/null 2>&1 || need+=("$pkg") ;;
    esac
done

updated=0
apt_update() { [ $updated = 1 ] || { apt-get update -qq; updated=1; }; }

if [ ${#need[@]} -gt 0 ]; then
    apt_update
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The trixie source reuses the URI already configured, pinned low so nothing
# else is pulled from it; CRIU 4.x and Go 1.24 come from there.
trixie_source() {
    [ -f /etc/apt/sources.list.d/trixie.sources ] && [ -f /etc/apt/preferences.d/trixie-low ] && return
    local src=/etc/apt/sources.list.d/debian.sources uri
    uri=$(awk '/^URIs:/ {print $2; exit}' "$src")
    [ -n "$uri" ] || { echo "setup: no URIs line in $src" >&2; exit 1; }
    cat > /etc/apt/sources.list.d/trixie.sources <<SRC
Types: deb
URIs: $uri
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    cat > /etc/apt/preferences.d/trixie-low <<PIN
Package: *
Pin: release n=trixie
Pin-Priority: 100
PIN
    updated=0
}

# CRIU: Debian 12's 3.17 fails on this kernel (vDSO); 4.x from trixie works.
criu_ok() { command -v criu >/dev/null 2>&1 && criu --version 2>/dev/null | grep -qE 'Version: (4|[5-9])\.'; }
if ! criu_ok; then
    trixie_source; apt_update
    apt-get install -y -qq --no-install-recommends -t trixie criu >/dev/null
    criu_ok || { echo "setup: criu 4.x did not install" >&2; exit 1; }
fi

# CRI-O for tests/crio.rs: scripts/crio.sh builds crio, pinns and crictl
# from shared/crio with Go 1.24 (trixie; bookworm has 1.19), and runs them
# with conmon, runc and the CNI plugins.
crio_need=()
[ -x /usr/lib/go-1.24/bin/go ] || crio_need+=(golang-1.24-go)
for pair in libseccomp-dev:/usr/include/seccomp.h libsqlite3-dev:/usr/include/sqlite3.h \
            pkg-config:/usr/bin/pkg-config gcc:/usr/bin/gcc conmon:/usr/bin/conmon \
            containernetworking-plugins:/usr/lib/cni/loopback; do
    [ -e "${pair#*:}" ] || crio_need+=("${pair%%:*}")
done
if [ ${#crio_need[@]} -gt 0 ]; then
    trixie_source; apt_update
    for pkg in "${crio_need[@]}"; do
        if [ "$pkg" = golang-1.24-go ]; then
            apt-get install -y -qq --no-install-recommends -t trixie golang-1.24-go >/dev/null
        else
            apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null
        fi
    done
fi

# tracefs is not mounted on these machines; the hook mounts it too, but tests
# look at it directly.
if ! grep -q ' tracefs ' /proc/self/mountinfo; then
    mount -t tracefs nodev /sys/kernel/tracing
fi

echo "setup: ok ($(runc --version | head -1); podman $(podman --version | awk '{print $3}'); $(criu --version | head -1); $(/usr/lib/go-1.24/bin/go version | awk '{print $3}'))"
