//! Shared pieces of the end-to-end tests: prerequisites (skip locally, fail
//! under `CI=true`), a busybox rootfs, the project's hooks.d rendered for the
//! built hook, a podman runner, and tracefs inspection.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

/// Our instances carry this prefix (collector::tracefs::INSTANCE_PREFIX).
pub const INSTANCE_PREFIX: &str = "oci_ftrace_";
pub const TRACE_ANNOTATION: &str = "oci-ftrace-syscall-analyzer/trace=true";

/// How long an instance may take to go after its container ended (see
/// [`Env::assert_no_instances`]).
pub const INSTANCE_REMOVAL: std::time::Duration = std::time::Duration::from_secs(15);

/// Tests touch one kernel and one podman: run them one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn in_ci() -> bool {
    std::env::var("CI").map(|v| v == "true" || v == "1").unwrap_or(false)
}

/// Checks what the end-to-end tests need. Returns false (after saying why)
/// when a prerequisite is missing locally; panics under `CI=true`.
pub fn prerequisites(need_podman: bool) -> bool {
    let mut missing = Vec::new();
    if !nix::unistd::Uid::effective().is_root() {
        missing.push("root".to_string());
    }
    if tracefs_root().is_none() {
        missing.push("a mounted tracefs (run scripts/setup.sh)".to_string());
    }
    if need_podman {
        for tool in ["podman", &runtime()] {
            if which(tool).is_none() {
                missing.push(format!("{tool} (run scripts/setup.sh)"));
            }
        }
        if !Path::new("/bin/busybox").exists() {
            missing.push("/bin/busybox (busybox-static)".into());
        }
    }
    report_missing(missing)
}

/// [`prerequisites`] with podman, plus what `podman container checkpoint`
/// needs: CRIU 4.x (scripts/setup.sh installs it).
pub fn checkpoint_prerequisites() -> bool {
    if !prerequisites(true) {
        return false;
    }
    let criu = Command::new("criu").arg("--version").output();
    let version = criu.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    let major = version.lines().find_map(|l| l.trim().strip_prefix("Version: ")?.split('.').next()?.parse::<u32>().ok());
    let ok = major.is_some_and(|m| m >= 4);
    report_missing(if ok { Vec::new() } else { vec!["criu 4.x (run scripts/setup.sh)".to_string()] })
}

/// True when nothing is missing; otherwise says what (a skip locally, a
/// panic under `CI=true`).
fn report_missing(missing: Vec<String>) -> bool {
    if missing.is_empty() {
        return true;
    }
    let msg = format!("end-to-end prerequisites missing: {}", missing.join(", "));
    if in_ci() {
        panic!("{msg} (CI=true: this is a failure, not a skip)");
    }
    // Straight to fd 2: the test harness captures eprintln!, and a skip
    // must be seen.
    let _ = nix::unistd::write(std::io::stderr(), format!("SKIPPED: {msg}\n").as_bytes());
    false
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}

/// The tracefs mount point, from mountinfo.
pub fn tracefs_root() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let fields: Vec<&str> = l.split(' ').collect();
        let dash = fields.iter().position(|f| *f == "-")?;
        (fields.get(dash + 1) == Some(&"tracefs")).then(|| PathBuf::from(fields[4]))
    })
}

/// Names of our instances that exist right now.
pub fn our_instances() -> Vec<String> {
    let Some(root) = tracefs_root() else { return Vec::new() };
    let mut v: Vec<String> = std::fs::read_dir(root.join("instances"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with(INSTANCE_PREFIX))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// gcc and a static libc, to build the C fixtures (tests/fixtures); a
/// skip locally, a failure under CI=true.
pub fn have_static_gcc() -> bool {
    let ok = Command::new("gcc").arg("--version").output().is_ok_and(|o| o.status.success())
        && Command::new("gcc").arg("-print-file-name=libc.a").output().is_ok_and(|o| {
            Path::new(String::from_utf8_lossy(&o.stdout).trim()).is_absolute()
        });
    if !ok {
        let msg = "end-to-end prerequisites missing: gcc and libc6-dev (run scripts/setup.sh)";
        assert!(!in_ci(), "{msg} (CI=true: this is a failure, not a skip)");
        let _ = nix::unistd::write(std::io::stderr(), format!("SKIPPED: {msg}\n").as_bytes());
    }
    ok
}

/// Builds the C fixture `tests/fixtures/<name>.c` as a static binary at
/// `out` (with `extra` gcc flags); see [`have_static_gcc`].
pub fn build_fixture(name: &str, out: &Path, extra: &[&str]) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(format!("{name}.c"));
    let cc = Command::new("gcc").args(["-static", "-O2"]).args(extra).arg("-o").arg(out).arg(&src).output().expect("gcc");
    assert!(cc.status.success(), "gcc {name}.c: {}", String::from_utf8_lossy(&cc.stderr));
}

/// Where the trace slots' state files are (collector::record::pool::POOL_DIR).
pub const POOL_DIR: &str = "/run/oci-ftrace-syscall-analyzer/pool";

/// Every trace slot's state file, parsed.
pub fn slots() -> Vec<serde_json::Value> {
    let Ok(dir) = std::fs::read_dir(POOL_DIR) else { return Vec::new() };
    let mut v: Vec<serde_json::Value> = dir
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(".json")))
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect();
    v.sort_by_key(|s| s["index"].as_u64());
    v
}

/// The phase of the slot whose instance is `name` ("in-use", "releasing",
/// "free", "reaping"), if there is such a slot.
pub fn slot_phase(name: &str) -> Option<String> {
    slots().into_iter().find(|s| s["instance"] == name).and_then(|s| s["phase"].as_str().map(str::to_string))
}

/// The instance that records container `id` (state dir `state_dir`) right
/// now: its own (`oci_ftrace_<id>`) or the slot in use by it.
pub fn recording_instance(id: &str, state_dir: &std::path::Path) -> Option<String> {
    let own = format!("{INSTANCE_PREFIX}{id}");
    if our_instances().contains(&own) {
        return Some(own);
    }
    slots().into_iter().find_map(|s| {
        let mine = s["phase"] == "in-use" && s["id"] == id && s["state_dir"].as_str().map(std::path::Path::new) == Some(state_dir);
        mine.then(|| s["instance"].as_str().unwrap_or_default().to_string())
    })
}

/// Directory of the built binaries (target/<profile>), next to `deps/`.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps dir");
    deps.parent().expect("profile dir").to_path_buf()
}

pub fn hook_bin() -> PathBuf {
    bin_dir().join("oci-ftrace-hook")
}

pub fn collector_bin() -> PathBuf {
    bin_dir().join("collector")
}

/// A scratch area: a busybox rootfs, hooks.d rendered from the project's
/// files for the built hook, and a state dir.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Self {
        Self::with_hook_args(&[])
    }

    /// [`Env::new`] with more arguments for the hook (`--hook-arg=…`).
    pub fn with_hook_args(hook_args: &[&str]) -> Self {
        let dir = tempfile::Builder::new().prefix("oci-ftrace-e2e").tempdir().expect("tempdir");
        let env = Env { dir };
        make_rootfs(&env.rootfs());
        let out = Command::new(collector_bin())
            .arg("install-hooks")
            .arg("--hook-path")
            .arg(hook_bin())
            .arg("--hooks-dir")
            .arg(env.hooks_dir())
            .arg("--state-dir")
            .arg(env.state_dir())
            // Other runs on a developer's machine (benchmarks) may hold
            // instances; the cap itself is tested on its own.
            .arg("--hook-arg=--max-instances=16")
            // Poststop looks for checkpoints only under configured roots.
            .arg(format!("--checkpoint-root={}", env.checkpoints_dir().display()))
            .args(hook_args.iter().map(|a| format!("--hook-arg={a}")))
            .output()
            .expect("run collector install-hooks");
        assert!(out.status.success(), "install-hooks: {}", String::from_utf8_lossy(&out.stderr));
        env
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }
    pub fn hooks_dir(&self) -> PathBuf {
        self.dir.path().join("hooks.d")
    }
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    /// The checkpoint root the hook is configured with (it may not exist).
    pub fn checkpoints_dir(&self) -> PathBuf {
        self.dir.path().join("checkpoints")
    }
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.state_dir().join(id)
    }

    /// `podman run --rm` of `script` under `sh -c`, with the hooks loaded.
    pub fn run(&self, annotate: bool, seccomp: Option<&str>, script: &str) -> Run {
        let annotations: &[&str] = if annotate { &[TRACE_ANNOTATION] } else { &[] };
        self.podman_run(&["--rm"], annotations, seccomp, script)
    }

    /// A foreground, traced run with extra annotations (e.g. the mode).
    pub fn run_traced(&self, extra: &[&str], script: &str) -> Run {
        let annotations: Vec<&str> = std::iter::once(TRACE_ANNOTATION).chain(extra.iter().copied()).collect();
        self.podman_run(&["--rm"], &annotations, None, script)
    }

    /// A detached, traced container; removed when the guard is dropped.
    pub fn start_traced(&self, script: &str) -> Container {
        self.start_traced_with(&[], script)
    }

    /// [`Env::start_traced`] with extra annotations.
    pub fn start_traced_with(&self, extra: &[&str], script: &str) -> Container {
        let annotations: Vec<&str> = std::iter::once(TRACE_ANNOTATION).chain(extra.iter().copied()).collect();
        let run = self.podman_run(&["-d"], &annotations, None, script);
        assert!(run.ok(), "podman run -d: {}", run.stderr());
        assert!(!run.id.is_empty(), "no container id");
        Container(run.id)
    }

    fn podman_run(&self, flags: &[&str], annotations: &[&str], seccomp: Option<&str>, script: &str) -> Run {
        let tag = unique();
        let cidfile = self.dir.path().join(format!("cid-{tag}"));
        let mut cmd = podman();
        cmd.arg("--hooks-dir").arg(self.hooks_dir()).arg("run").args(flags).args(["--network", "none"]);
        cmd.args(["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]);
        cmd.arg("--cidfile").arg(&cidfile);
        cmd.arg("--label").arg(format!("{RUN_LABEL}={tag}"));
        for a in annotations {
            cmd.args(["--annotation", a]);
        }
        if let Some(s) = seccomp {
            cmd.arg("--security-opt").arg(format!("seccomp={s}"));
        }
        cmd.arg("--rootfs").arg(self.rootfs()).args(["sh", "-c", script]);
        let output = cmd.output().expect("run podman");
        let mut id = std::fs::read_to_string(&cidfile).unwrap_or_default().trim().to_string();
        if id.is_empty() {
            id = created_id(&tag);
        }
        Run { id, output }
    }
}

/// Label that tags each run with a unique value.
const RUN_LABEL: &str = "oci-ftrace-e2e-run";

/// The id of the container created with label value `tag`, from podman's
/// event log. Podman 5 deletes the `--cidfile` of a `--rm` container when
/// it removes it (Podman 4.3 keeps it).
fn created_id(tag: &str) -> String {
    let out = podman()
        .args(["events", "--stream=false", "--filter", "event=create", "--format", "{{.ID}}", "--filter"])
        .arg(format!("label={RUN_LABEL}={tag}"))
        .output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).lines().last().unwrap_or_default().trim().to_string())
        .unwrap_or_default()
}

impl Env {
    /// Ids of the containers this env recorded (folders in its state dir).
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(self.state_dir())
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.path().is_dir())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// Our instances that belong to this env's containers. (Other runs on
    /// the machine, e.g. benchmarks, may have instances of their own.)
    /// A slot counts while it is in use by one of them: once released it
    /// records nothing (tracing off, no pid) and waits for the next
    /// container.
    pub fn has_instance(&self, id: &str) -> bool {
        recording_instance(id, &self.state_dir()).is_some()
    }

    pub fn instances(&self) -> Vec<String> {
        self.ids().iter().filter_map(|id| recording_instance(id, &self.state_dir())).collect()
    }

    /// Fails the test if any instance of this env's containers is left.
    /// Each recorder's child removes its instance right after the summary
    /// is written, and poststop does not wait for that: the in-kernel
    /// quench's triggers go one at a time, each after an RCU grace period
    /// (about 1 s in all here, more on a loaded machine), so
    /// [`INSTANCE_REMOVAL`] is allowed before anything counts as left
    /// behind.
    pub fn assert_no_instances(&self, context: &str) {
        wait_until(INSTANCE_REMOVAL, || self.instances().is_empty());
        let left = self.instances();
        if !left.is_empty() {
            self.cleanup();
            panic!("{context}: trace instances left behind: {left:?}");
        }
    }

    /// Stops this env's recorders (politely, then not) and removes their
    /// instances: a failed assertion must not leave a machine-wide tax.
    fn cleanup(&self) {
        let Some(root) = tracefs_root() else { return };
        for id in self.ids() {
            let info = std::fs::read_to_string(self.container_dir(&id).join("recorder.json")).unwrap_or_default();
            let pid = serde_json::from_str::<serde_json::Value>(&info).ok().and_then(|v| v["pid"].as_i64());
            if let Some(pid) = pid {
                let pid = nix::unistd::Pid::from_raw(pid as i32);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
                std::thread::sleep(std::time::Duration::from_millis(300));
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
            let inst = root.join("instances").join(format!("{INSTANCE_PREFIX}{id}"));
            for _ in 0..20 {
                if !inst.exists() || std::fs::remove_dir(&inst).is_ok() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
        // Slots still in use by them go back to the pool.
        release_slots(&self.state_dir());
    }
}

/// Runs `collector gc` for `state_dir`: slots in use by its gone
/// containers are finished and released.
pub fn release_slots(state_dir: &std::path::Path) {
    let _ = Command::new(collector_bin()).arg("gc").arg("--state-dir").arg(state_dir).output();
}

impl Drop for Env {
    fn drop(&mut self) {
        if !self.instances().is_empty() {
            self.cleanup();
        }
    }
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

pub struct Run {
    pub id: String,
    pub output: Output,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
    pub fn ok(&self) -> bool {
        self.output.status.success()
    }
}

/// Removes a detached container when dropped, so a failed assertion
/// leaves no container (and no recorder, and no instance) running.
pub struct Container(pub String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman().args(["rm", "-f", "-t", "0", &self.0]).output();
    }
}

/// The OCI runtime podman runs the containers with: `E2E_RUNTIME`
/// (e.g. `crun`, as the VM matrix sets it), `runc` by default.
pub fn runtime() -> String {
    std::env::var("E2E_RUNTIME").ok().filter(|r| !r.is_empty()).unwrap_or_else(|| "runc".into())
}

pub fn podman() -> Command {
    let mut cmd = Command::new("podman");
    cmd.args(["--runtime", &runtime()]);
    cmd
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
}

/// /bin/busybox plus one symlink per applet, and the files podman expects.
pub fn make_rootfs(root: &Path) {
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir rootfs/bin");
    for d in ["etc", "tmp", "proc", "sys", "dev", "root", "run"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir rootfs");
    }
    std::fs::copy("/bin/busybox", bin.join("busybox")).expect("copy busybox");
    let list = Command::new("/bin/busybox").arg("--list").output().expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" && !applet.is_empty() {
            let _ = std::os::unix::fs::symlink("busybox", bin.join(applet));
        }
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    std::fs::write(root.join("etc/group"), "root:x:0:\n").expect("group");
}

/// Polls `f` every 50 ms until it holds or `limit` passes.
pub fn wait_until(limit: std::time::Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + limit;
    while std::time::Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    f()
}

/// Reads a JSON file the hook wrote.
pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// The allowed names of a profile.
pub fn allowed(profile: &serde_json::Value) -> std::collections::BTreeSet<String> {
    profile["syscalls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["action"] == "SCMP_ACT_ALLOW")
        .flat_map(|r| r["names"].as_array().cloned().unwrap_or_default())
        .filter_map(|n| n.as_str().map(String::from))
        .collect()
}

// ---------------------------------------------------------------------------
// CRI-O through crictl (tests/crio.rs).
//
// scripts/test.sh starts a private CRI-O with scripts/crio.sh before the
// tests and stops it after; crio.sh writes what the tests need into the
// environment (E2E_CRIO_*). Alone: `scripts/crio.sh run --hook-bin
// target/debug -- cargo test -p e2e --test crio`.

/// The CRI-O that scripts/crio.sh started: its socket, crictl, the state
/// dir its hooks write to and the image its store holds.
pub struct Crio {
    pub endpoint: String,
    pub crictl: PathBuf,
    pub state_dir: PathBuf,
    pub image: String,
    pub version: String,
    /// pod.json, container.json and the pods' logs.
    pub dir: tempfile::TempDir,
}

/// [`prerequisites`] plus a running CRI-O (and, with `criu`, CRIU 4.x):
/// `None` (after saying why) when missing locally; panics under `CI=true`.
pub fn crio_prerequisites(criu: bool) -> Option<Crio> {
    if !prerequisites(false) || (criu && !checkpoint_prerequisites()) {
        return None;
    }
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (Some(endpoint), Some(crictl), Some(state_dir), Some(image)) =
        (var("E2E_CRIO_ENDPOINT"), var("E2E_CRICTL"), var("E2E_CRIO_STATE_DIR"), var("E2E_CRIO_IMAGE"))
    else {
        let why = var("E2E_CRIO_MISSING").unwrap_or_else(|| {
            "no CRI-O started for the tests (E2E_CRIO_ENDPOINT is unset: run `make test`, or \
             `scripts/crio.sh run --hook-bin target/debug -- cargo test -p e2e --test crio`)"
                .into()
        });
        report_missing(vec![why]);
        return None;
    };
    let dir = tempfile::Builder::new().prefix("oci-ftrace-crio").tempdir().expect("tempdir");
    let crio = Crio {
        endpoint,
        crictl: PathBuf::from(crictl),
        state_dir: PathBuf::from(state_dir),
        image,
        version: var("E2E_CRIO_VERSION").unwrap_or_default(),
        dir,
    };
    let out = crio.crictl(&["version"]);
    if !out.status.success() {
        report_missing(vec![format!("CRI-O at {} does not answer: {}", crio.endpoint, String::from_utf8_lossy(&out.stderr))]);
        return None;
    }
    Some(crio)
}

/// A pod's or a container's CRI config, as crictl reads it from JSON.
/// Host network and a pid namespace per container: the pod then needs no
/// infra container (which these machines refuse: see shared/crio).
pub struct PodSpec<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub annotations: &'a [(&'a str, &'a str)],
}

impl Crio {
    pub fn crictl(&self, args: &[&str]) -> Output {
        Command::new(&self.crictl)
            .args(["--runtime-endpoint", &self.endpoint, "--timeout", "60s"])
            .args(args)
            .output()
            .expect("run crictl")
    }

    /// `crictl` that must succeed; its stdout, trimmed.
    pub fn crictl_ok(&self, args: &[&str]) -> String {
        let out = self.crictl(args);
        assert!(out.status.success(), "crictl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `crictl runp` of a pod; removed (`crictl rmp -f`) when dropped.
    pub fn run_pod(&self, spec: &PodSpec<'_>) -> Pod<'_> {
        let uid = unique();
        let logs = self.dir.path().join(format!("logs-{uid}"));
        std::fs::create_dir_all(&logs).expect("pod log dir");
        let annotations: serde_json::Map<String, serde_json::Value> =
            spec.annotations.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(*v))).collect();
        // The labels the kubelet puts on every pod and container; CRI-O
        // copies them into the OCI annotations.
        let labels = serde_json::json!({
            "io.kubernetes.pod.name": spec.name,
            "io.kubernetes.pod.namespace": spec.namespace,
            "io.kubernetes.pod.uid": format!("uid-{uid}"),
        });
        let config = serde_json::json!({
            "metadata": {"name": spec.name, "namespace": spec.namespace, "uid": format!("uid-{uid}"), "attempt": 0},
            "labels": labels,
            "annotations": annotations,
            "log_directory": logs,
            "linux": {"security_context": {"namespace_options": {"network": 2, "pid": 1}}},
        });
        let path = self.dir.path().join(format!("pod-{uid}.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(&config).expect("pod JSON")).expect("write pod.json");
        let id = self.crictl_ok(&["runp", path.to_str().expect("utf-8 path")]);
        Pod { crio: self, id, config: path, labels, containers: Mutex::new(Vec::new()) }
    }

    /// `crictl inspect`'s status of a container.
    pub fn status(&self, id: &str) -> serde_json::Value {
        let text = self.crictl_ok(&["inspect", "-o", "json", id]);
        let v: serde_json::Value = serde_json::from_str(&text).expect("crictl inspect JSON");
        v["status"].clone()
    }

    /// Waits until the container has exited; its exit code.
    pub fn wait_exited(&self, id: &str, limit: std::time::Duration) -> i64 {
        let exited = wait_until(limit, || self.status(id)["state"] == "CONTAINER_EXITED");
        let status = self.status(id);
        assert!(exited, "container {id} still {} after {limit:?}", status["state"]);
        status["exitCode"].as_i64().unwrap_or(-1)
    }

    /// What the container wrote (stdout and stderr).
    pub fn logs(&self, id: &str) -> String {
        let out = self.crictl(&["logs", id]);
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.state_dir.join(id)
    }

    /// Whether our instance of container `id` exists.
    pub fn has_instance(&self, id: &str) -> bool {
        recording_instance(id, &self.state_dir).is_some()
    }

    /// Fails the test if container `id`'s instance is still there a few
    /// seconds after its poststop (the recorder's remover waits out RCU
    /// grace periods); removes it first, so nothing is left behind.
    pub fn assert_no_instance(&self, id: &str, context: &str) {
        if !wait_until(std::time::Duration::from_secs(5), || !self.has_instance(id)) {
            self.remove_leftovers(id);
            panic!("{context}: the trace instance of {id} was left behind");
        }
    }

    /// Stops container `id`'s recorder (politely, then not) and removes
    /// its instance.
    fn remove_leftovers(&self, id: &str) {
        let info = std::fs::read_to_string(self.container_dir(id).join("recorder.json")).unwrap_or_default();
        if let Some(pid) = serde_json::from_str::<serde_json::Value>(&info).ok().and_then(|v| v["pid"].as_i64()) {
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            std::thread::sleep(std::time::Duration::from_millis(300));
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
        let Some(root) = tracefs_root() else { return };
        let inst = root.join("instances").join(format!("{INSTANCE_PREFIX}{id}"));
        for _ in 0..20 {
            if !inst.exists() || std::fs::remove_dir(&inst).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

/// A pod of the test CRI-O; `crictl rmp -f` when dropped, and any instance
/// of its containers removed, so a failed assertion leaves nothing running.
pub struct Pod<'a> {
    crio: &'a Crio,
    pub id: String,
    config: PathBuf,
    labels: serde_json::Value,
    containers: Mutex<Vec<String>>,
}

/// `linux.security_context.seccomp` of a container.
pub enum Seccomp<'a> {
    /// Not set: CRI-O's default (RuntimeDefault).
    Default,
    /// `Localhost` with this absolute path, as the kubelet passes it.
    Localhost(&'a Path),
}

impl Pod<'_> {
    /// `crictl create` of a container running `sh -c script`; its id.
    pub fn create(&self, name: &str, script: &str, seccomp: Seccomp<'_>) -> String {
        let mut security = serde_json::json!({"namespace_options": {"network": 2, "pid": 1}});
        if let Seccomp::Localhost(path) = seccomp {
            security["seccomp"] = serde_json::json!({"profile_type": 2, "localhost_ref": path});
        }
        let mut labels = self.labels.clone();
        labels["io.kubernetes.container.name"] = name.into();
        let config = serde_json::json!({
            "metadata": {"name": name},
            "labels": labels,
            "image": {"image": self.crio.image},
            "command": ["sh", "-c", script],
            "log_path": format!("{name}.log"),
            "linux": {"security_context": security},
        });
        let path = self.crio.dir.path().join(format!("ctr-{}.json", unique()));
        std::fs::write(&path, serde_json::to_vec_pretty(&config).expect("container JSON")).expect("write container.json");
        let id = self.crio.crictl_ok(&[
            "create",
            &self.id,
            path.to_str().expect("utf-8 path"),
            self.config.to_str().expect("utf-8 path"),
        ]);
        self.containers.lock().unwrap_or_else(|e| e.into_inner()).push(id.clone());
        id
    }

    /// [`Pod::create`] and `crictl start`.
    pub fn run(&self, name: &str, script: &str, seccomp: Seccomp<'_>) -> String {
        let id = self.create(name, script, seccomp);
        self.crio.crictl_ok(&["start", &id]);
        id
    }
}

impl Drop for Pod<'_> {
    fn drop(&mut self) {
        let _ = self.crio.crictl(&["rmp", "--force", &self.id]);
        let ids = self.containers.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for id in ids {
            if !wait_until(std::time::Duration::from_secs(5), || !self.crio.has_instance(&id)) {
                self.crio.remove_leftovers(&id);
            }
        }
    }
}

/// Whether a dead recorder's last save would hold every record it read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveCovers {
    /// The kernel counts no record read after the save.
    Everything,
    /// The recorder has read records no save holds.
    NotAll,
}

/// Kills recorder `rpid` of container `id` (recorded under `state_dir`)
/// at an instant where its last save covers what it read, or does not:
/// stopped, checked against the kernel's `read events`, and let go on if
/// it is not such an instant yet. Panics after `limit`.
pub fn kill_recorder_when(rpid: i32, id: &str, state_dir: &Path, want: SaveCovers, limit: std::time::Duration) {
    use nix::sys::signal::{kill, Signal};
    let instance = recording_instance(id, state_dir).expect("the container's instance");
    let pid = nix::unistd::Pid::from_raw(rpid);
    let stats = tracefs_root().expect("tracefs").join("instances").join(instance).join("per_cpu");
    let end = std::time::Instant::now() + limit;
    loop {
        assert!(std::time::Instant::now() < end, "no instant where the save covers {want:?} within {limit:?}");
        kill(pid, Signal::SIGSTOP).expect("stop recorder");
        // Stopped for sure before looking.
        let stopped = wait_until(std::time::Duration::from_secs(5), || {
            std::fs::read_to_string(format!("/proc/{rpid}/stat"))
                .is_ok_and(|s| s.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('T')))
        });
        assert!(stopped, "recorder {rpid} did not stop");
        let saved: serde_json::Value = std::fs::read(state_dir.join(id).join("aggregate.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let mut unsaved = 0u64;
        let mut known = saved["read_through"].is_object();
        for entry in std::fs::read_dir(&stats).expect("per_cpu").flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let Some(cpu) = name.strip_prefix("cpu").and_then(|c| c.parse::<u32>().ok()) else { continue };
            let Ok(text) = std::fs::read_to_string(entry.path().join("stats")) else {
                known = false;
                continue;
            };
            let read = collector::tracefs::CpuStats::parse(cpu, &text).read_events;
            match saved["read_through"][cpu.to_string()].as_u64() {
                Some(t) => unsaved += read.saturating_sub(t),
                None if read == 0 => {}
                None => known = false,
            }
        }
        let now = if unsaved == 0 { SaveCovers::Everything } else { SaveCovers::NotAll };
        if known && now == want {
            kill(pid, Signal::SIGKILL).expect("kill recorder");
            return;
        }
        kill(pid, Signal::SIGCONT).expect("let recorder go on");
        std::thread::sleep(std::time::Duration::from_millis(3));
    }
}
