#!/usr/bin/env bash
# Installs the system packages the demo and the test suite need, on a fresh
# Debian 12 machine. Idempotent: a second run only checks.
set -euo pipefail

[ "$(id -u)" = 0 ] || { echo "setup: must run as root (apt-get, tracefs, podman)" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive

need=()
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

# CRIU: Debian 12's 3.17 fails on this kernel (vDSO); 4.x from trixie works.
# The trixie source reuses the URI already configured, pinned low so nothing
# else is pulled from it.
criu_ok() { command -v criu >/dev/null 2>&1 && criu --version 2>/dev/null | grep -qE 'Version: (4|[5-9])\.'; }
if ! criu_ok; then
    src=/etc/apt/sources.list.d/debian.sources
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
    updated=0; apt_update
    apt-get install -y -qq --no-install-recommends -t trixie criu >/dev/null
    criu_ok || { echo "setup: criu 4.x did not install" >&2; exit 1; }
fi

# tracefs is not mounted on these machines; the hook mounts it too, but tests
# look at it directly.
if ! grep -q ' tracefs ' /proc/self/mountinfo; then
    mount -t tracefs nodev /sys/kernel/tracing
fi

echo "setup: ok ($(runc --version | head -1); podman $(podman --version | awk '{print $3}'); $(criu --version | head -1))"
