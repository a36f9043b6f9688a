#!/usr/bin/env python3
"""Writes the bad-input corpus run by tests/corpus.rs: one file per case,
named for what it is, and MANIFEST (kind, file, what the one-line error
must say, or "ok" when the input is to be accepted or ignored quietly).
Binary cases are derived from the committed fixtures, so re-running this
gives the same bytes. Run from the repository root: python3 tests/corpus/generate.py"""
import gzip, io, json, os, struct, tarfile, shutil

ROOT = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(ROOT, "../../collector/tests/data")
manifest = []

def case(kind, name, data, expect):
    d = os.path.join(ROOT, kind)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    manifest.append((kind, name, expect))

def state(**kw):
    s = {"ociVersion": "1.0.2", "id": "corpus0", "status": "creating", "pid": 1, "bundle": "/",
         "annotations": {"oci-ftrace-syscall-analyzer/trace": "true"}}
    for k, v in kw.items():
        if v is None:
            s.pop(k, None)
        else:
            s[k] = v
    return json.dumps(s)

# -- hook stdin and annotations (prestart and poststop, fail-closed and fail-open)
H = "hook-stdin"
case(H, "empty", "", "not valid JSON")
case(H, "plain-text", "hello\n", "not valid JSON")
case(H, "truncated-object", state()[:40], "not valid JSON")
case(H, "json-array", "[1, 2]", "not a JSON object")
case(H, "json-null", "null", "not a JSON object")
case(H, "json-string", '"creating"', "not a JSON object")
case(H, "missing-id", state(id=None), "container id is empty")
case(H, "missing-oci-version-untraced", state(ociVersion=None, annotations={}), "ok")
case(H, "id-empty", state(id=""), "container id is empty")
case(H, "id-dot-dot", state(id=".."), "is not allowed")
case(H, "id-climbing-path", state(id="../../etc/cron.d/x"), "character outside")
case(H, "id-absolute-path", state(id="/etc/passwd"), "character outside")
case(H, "id-too-long", state(id="a" * 4096), "more than 128")
case(H, "id-with-nul", state(id="ab\u0000cd"), "character outside")
case(H, "id-with-newline", state(id="ab\ncd"), "character outside")
case(H, "id-with-escape-sequence", state(id="\u001b]0;PWN\u0007\u001b[2J"), "character outside")
case(H, "id-number", state(id=42), "not valid JSON")
case(H, "status-number", state(status=5), "not valid JSON")
case(H, "status-unknown-word", state(status="exploding"), "not valid JSON")
case(H, "pid-string", state(pid="12"), "not valid JSON")
case(H, "annotations-array", state(annotations=["oci-ftrace-syscall-analyzer/trace"]), "not valid JSON")
case(H, "annotation-value-bool", state(annotations={"oci-ftrace-syscall-analyzer/trace": True}), "not valid JSON")
case(H, "invalid-utf8", state().replace("corpus0", "corp\udcffus").encode("utf-8", "surrogateescape"), "not valid JSON")
case(H, "utf16-encoded", state().encode("utf-16"), "not valid JSON")
case(H, "deep-nesting", "[" * 200 + "]" * 200, "recursion limit")
case(H, "trace-annotation-uppercase", state(annotations={"oci-ftrace-syscall-analyzer/trace": "TRUE"}), "ok")
case(H, "trace-annotation-absent", state(annotations={}), "ok")
case(H, "pod-sandbox-with-trace", state(annotations={"oci-ftrace-syscall-analyzer/trace": "true",
                                                    "io.kubernetes.cri-o.ContainerType": "sandbox",
                                                    "io.kubernetes.cri.container-type": "sandbox"}), "ok")

# -- state-dir files (FILE--what), read by `collector report` and `list`
S = "state-dir"
case(S, "summary.json--empty", "", "summary.json is not valid")
case(S, "summary.json--truncated", '{"id": "x", "analysis": {', "summary.json is not valid")
case(S, "summary.json--wrong-types", '{"id": 5, "complete": "yes"}', "summary.json is not valid")
case(S, "summary.json--binary-garbage", bytes(range(256)) * 4, "summary.json is not valid")
case(S, "summary.json--deep-nesting", '{"a":' * 200 + "1" + "}" * 200, "summary.json is not valid")
case(S, "summary.json--a-json-array", "[]", "summary.json is not valid")
case(S, "state.json--truncated-without-summary", '{"id": "x", "oci_state": {', "state.json is not valid")
case(S, "state.json--not-json-without-summary", "\x00\x01\x02", "state.json is not valid")
case(S, "correlation.json--truncated", '{"container": [', "ok")
case(S, "correlation.json--wrong-shape", '[1,2,3]', "ok")
case(S, "seccomp.json--truncated", '{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [', "ok")

# -- seccomp JSON given as FILE to export, diff and merge
P = "seccomp-json"
good = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1, "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}]}
def prof(**kw):
    p = json.loads(json.dumps(good))
    p.update(kw)
    return json.dumps(p)
case(P, "empty", "", "not a seccomp profile")
case(P, "not-json", "defaultAction: allow\n", "not a seccomp profile")
case(P, "truncated", prof()[:50], "not a seccomp profile")
case(P, "syscalls-not-a-list", prof(syscalls={"read": 1}), "not a seccomp profile")
case(P, "names-not-strings", prof(syscalls=[{"names": [0, 1], "action": "SCMP_ACT_ALLOW"}]), "not a seccomp profile")
case(P, "default-action-number", prof(defaultAction=5), "not a seccomp profile")
case(P, "architectures-number", prof(architectures=64), "not a seccomp profile")
case(P, "a-json-array", "[]", "not a seccomp profile")
case(P, "binary-garbage", bytes(range(256)), "not a seccomp profile")

# -- checkpoint archives and CRIU images, read by `collector checkpoint show`
C = "checkpoint"
with open(os.path.join(FIX, "checkpoints/podman-export.tar.zst"), "rb") as f:
    zst = f.read()
kube = [p for p in os.listdir(os.path.join(FIX, "checkpoints")) if p.endswith(".tar.gz")][0]
with gzip.open(os.path.join(FIX, "checkpoints", kube), "rb") as f:
    plain = f.read()

# Members a reader does not decode by default, dropped to keep cases small.
BULKY = ("checkpoint/pages-", "checkpoint/tmpfs-", "checkpoint/cgroup", "checkpoint/mountpoints",
         "dump.log", "spec.dump", "devshm-", "checkpoint/seccomp.img", "config.dump", "artifacts")

def members():
    with tarfile.open(fileobj=io.BytesIO(plain)) as t:
        for m in t.getmembers():
            if m.name.startswith(BULKY):
                continue
            yield m, (t.extractfile(m).read() if m.isfile() else None)

def rebuilt(edit=None, extra=()):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as t:
        for m, data in members():
            if edit and m.isfile():
                data = edit(m.name, data)
                if data is None:
                    continue
                m.size = len(data)
            t.addfile(m, io.BytesIO(data) if data is not None else None)
        for name, data in extra:
            i = tarfile.TarInfo(name)
            i.size = len(data)
            t.addfile(i, io.BytesIO(data))
    return out.getvalue()

def only(member, fn):
    return lambda name, data: fn(data) if name == member else data

def without(member):
    return lambda name, data: None if name == member else data

case(C, "empty-file.tar", b"", "the archive is empty")
case(C, "text-file.tar", b"root:x:0:0:root:/root:/bin/sh\n" * 40, "not a tar archive")
case(C, "zstd-cut-at-64-bytes.tar.zst", zst[:64], "corrupt or truncated zstd stream")
case(C, "zstd-cut-in-half.tar.zst", zst[: len(zst) // 2], "corrupt or truncated zstd stream")
case(C, "zstd-bit-flipped.tar.zst", zst[:200] + bytes([zst[200] ^ 0xFF]) + zst[201:4000], "zstd stream")
gz = gzip.compress(rebuilt(), mtime=0)
case(C, "gzip-cut-in-half.tar.gz", gz[: len(gz) // 2], "gzip stream")
case(C, "tar-cut-inside-a-member.tar", rebuilt()[:30000], "checkpoint/")
case(C, "no-inventory.tar", rebuilt(without("checkpoint/inventory.img")), "no member checkpoint/inventory.img")
case(C, "no-pstree.tar", rebuilt(without("checkpoint/pstree.img")), "no member checkpoint/pstree.img")
case(C, "inventory-wrong-magic.tar", rebuilt(only("checkpoint/inventory.img", lambda d: b"\xde\xad\xbe\xef" + d[4:])), "wrong magic")
case(C, "pstree-truncated.tar", rebuilt(only("checkpoint/pstree.img", lambda d: d[:len(d) - 5])), "checkpoint/pstree.img")
case(C, "pstree-entry-length-4gib.tar", rebuilt(only("checkpoint/pstree.img", lambda d: d[:8] + b"\xff\xff\xff\xff" + d[12:])), "checkpoint/pstree.img")
case(C, "core-1-garbage-protobuf.tar", rebuilt(only("checkpoint/core-1.img", lambda d: d[:12] + b"\xff" * (len(d) - 12))), "checkpoint/core-1.img")
case(C, "config-dump-not-json.tar", rebuilt(extra=[("config.dump", b"{\"id\": ")]), "ok")
case(C, "seccomp-img-garbage.tar", rebuilt(extra=[("checkpoint/seccomp.img", struct.pack("<II", 0x54564319, 0x64413049) + b"\x07" * 64)]), "ok")
case(C, "files-img-truncated.tar", rebuilt(only("checkpoint/files.img", lambda d: d[:20])), "ok")
case(C, "rootfs-diff-not-a-tar.tar", rebuilt(only("rootfs-diff.tar", lambda d: b"\x01" * 2048)), "ok")
case(C, "dotdot-and-absolute-members.tar", rebuilt(extra=[("../../etc/evil", b"x"), ("/etc/evil", b"y")]), "ok")

def hdr(name, size):
    i = tarfile.TarInfo(name)
    i.size = size
    return i.tobuf(format=tarfile.GNU_FORMAT)

# A header claiming a huge member with nothing behind it.
case(C, "member-size-lies-100-gib.tar", hdr("checkpoint/core-1.img", 100 << 30) + b"\0" * 1024, "core-1.img")

# -- trace pages (per-CPU trace_pipe_raw), decoded with the fixture's formats
T = "trace-pages"
with open(os.path.join(FIX, "raw-6.18/cpu0.raw"), "rb") as f:
    page = f.read()[:4096]
def commit(p, n):
    return p[:8] + struct.pack("<Q", n) + p[16:]
case(T, "all-zero-page", b"\0" * 4096, "ok")
case(T, "all-ones-page", b"\xff" * 4096, "malformed")
case(T, "commit-past-page-end", commit(page, 0xFFFF), "malformed")
case(T, "commit-with-flag-bits", commit(page, (1 << 31) | (1 << 30) | 4000), "malformed")
case(T, "half-page", page[:2048], "malformed")
case(T, "header-only", page[:16], "malformed")
case(T, "events-zeroed-after-header", page[:16] + b"\0" * 4080, "malformed")
# type_len 31 everywhere: absolute timestamps, valid records with no event.
case(T, "all-absolute-timestamps", page[:16] + (b"\xff\xff\xff\xff" * 1020), "ok")
case(T, "xorshift-noise", bytes(((i * 2654435761) >> 13) & 0xFF for i in range(4096)), "malformed")

with open(os.path.join(ROOT, "MANIFEST"), "w") as f:
    f.write("# kind\tfile\texpected one-line error (or ok); written by generate.py\n")
    for k, n, e in manifest:
        f.write(f"{k}\t{n}\t{e}\n")
print(f"{len(manifest)} cases")
