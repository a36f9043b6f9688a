//! The hook binary driven directly, the way a runtime calls it: state JSON on
//! stdin, for a real process on this kernel. No podman needed.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::*;

fn hook(env: &Env, stage: &str, stdin: &str, extra: &[&str]) -> (std::process::Output, Duration) {
    hook_in(&env.state_dir(), stage, stdin, extra)
}

/// [`hook`] with a state dir of its own.
fn hook_in(state_dir: &Path, stage: &str, stdin: &str, extra: &[&str]) -> (std::process::Output, Duration) {
    let start = Instant::now();
    let mut child = Command::new(hook_bin())
        .arg(stage)
        .arg("--state-dir")
        .arg(state_dir)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hook");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write state");
    let out = child.wait_with_output().expect("hook output");
    (out, start.elapsed())
}

fn state(id: &str, status: &str, pid: Option<u32>, annotate: bool) -> String {
    let mut v = serde_json::json!({"ociVersion": "1.0.2", "id": id, "status": status, "bundle": "/tmp"});
    if let Some(pid) = pid {
        v["pid"] = pid.into();
    }
    if annotate {
        v["annotations"] = serde_json::json!({"oci-ftrace-syscall-analyzer/trace": "true"});
    }
    v.to_string()
}

/// `program` under the comm `crun`, as a container's init has while its
/// runtime sets it up: prestart reads it, and the slot's quench leaves it
/// out (a symlink named `crun`; the comm is the name exec'd).
fn as_runtime(program: &str) -> Command {
    let dir = std::env::temp_dir().join(format!("oci-e2e-runtime-{program}"));
    let link = dir.join("crun");
    if !link.exists() {
        std::fs::create_dir_all(&dir).expect("runtime dir");
        let target = which(program).expect("program on PATH");
        let _ = std::os::unix::fs::symlink(target, &link);
    }
    Command::new(link)
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(program)).find(|p| p.is_file())
}

fn sleeper() -> Child {
    as_runtime("sleep").arg("30").spawn().expect("spawn sleep")
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn prestart_arms_within_its_limit_and_poststop_cleans_up() {
    if !prerequisites(false) {
        return;
    }
    let _g = serial();
    let env = Env::new();
    let task = sleeper();
    let pid = task.id();
    let id = "hooktest-arm";
    let (out, took) = hook(&env, "prestart", &state(id, "creating", Some(pid), true), &["--buffer-size-kb", "1024"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Armed before the hook's own 3 s limit (it did not give up). How
    // fast is bench/start-overhead's to say: here a slot torn down by an
    // earlier test may hold the kernel's event lock for one trigger's
    // grace periods, ~1 s under TCG on 6.1.
    assert!(took < Duration::from_millis(3000), "prestart took {took:?}");
    eprintln!("prestart took {took:?}");

    // Profile mode records in a slot of the pool.
    let name = env.instances().pop().expect("an instance records the container");
    assert!(name.starts_with(&format!("{INSTANCE_PREFIX}@slot")), "{name}");
    let root = tracefs_root().expect("tracefs");
    let inst = root.join("instances").join(&name);
    let read = |rel: &str| std::fs::read_to_string(inst.join(rel)).unwrap_or_default();
    // The container's init alone (pid 0, the idle task, may be left from a
    // release: it makes no syscalls).
    // A claim's canary thread (`record::canary`) may still be listed for a
    // moment after its exit.
    let st = read_json(&env.container_dir(id).join("state.json"));
    assert!(st["not_traced"].is_null(), "{st}");
    let canaries: Vec<String> =
        st["canaries"].as_array().map(|c| c.iter().map(|t| t.to_string()).collect()).unwrap_or_default();
    let pids: Vec<String> = read("set_event_pid")
        .split_whitespace()
        .filter(|p| *p != "0" && !canaries.iter().any(|c| c == p))
        .map(str::to_string)
        .collect();
    assert_eq!(pids, vec![pid.to_string()]);
    assert_eq!(read("tracing_on").trim(), "1");
    assert_eq!(read("options/event-fork").trim(), "1");
    // On, or soft-off ("0*") once the quench has seen the call: its probe
    // stays registered either way.
    let read_on = read("events/syscalls/sys_enter_read/enable");
    assert!(read_on.starts_with('1') || read_on.trim() == "0*", "{read_on}");
    // The in-kernel quench, on every syscall: the exit event switches its
    // call's enter event off, for any task but the runtimes' (the sleeper
    // runs as `crun`) and a claim's canary.
    for call in ["read", "mkdir", "openat", "getpid"] {
        // Trigger files are read under the writer lock, as the collector
        // reads them (a read racing a removal oopsed kernel 6.1).
        let trigger = {
            let _lock = collector::tracefs::WriterLock::acquire();
            read(&format!("events/syscalls/sys_exit_{call}/trigger"))
        };
        assert!(
            trigger.contains(&format!("disable_event:syscalls:sys_enter_{call}"))
                && trigger.contains("comm != \"crun\"")
                && trigger.contains("comm != \"ftrace-canary\""),
            "{call}: {trigger}"
        );
    }
    assert_eq!(read("events/task/task_newtask/enable").trim(), "1");
    assert_eq!(read("events/sched/sched_process_exec/enable").trim(), "1");
    // The buffer has its configured size (rounded up to whole pages).
    let kb: u64 = read("buffer_size_kb").trim().parse().unwrap_or(0);
    assert!((1024..1100).contains(&kb), "buffer {kb}");
    assert_eq!(read("options/overwrite").trim(), "0", "a full buffer must keep its oldest records");
    assert_eq!(st["host_pid"], pid);
    assert_eq!(st["instance"], name);
    assert!(st["slot"]["generation"].as_u64().is_some(), "{st}");
    assert!(st["kernel_release"].as_str().is_some_and(|k| !k.is_empty()));

    stop(task);
    let (out, _) = hook(&env, "poststop", &state(id, "stopped", None, true), &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The slot goes back to the pool, recording nothing: tracing off, no
    // pid, every syscall event on again for the next container.
    let released = wait_until(INSTANCE_REMOVAL, || {
        !inst.exists() || matches!(slot_phase(&name).as_deref(), Some("free" | "reaping") | None)
    });
    assert!(!env.has_instance(id));
    // Nobody in the pid filter (pid 0 is the idle task, which makes no
    // syscalls: what a release leaves when tasks were still there).
    let pids = read("set_event_pid");
    assert!(!inst.exists() || (read("tracing_on").trim() == "0" && matches!(pids.trim(), "" | "0")), "{pids:?}");
    assert!(released, "slot not released: tracing_on {} pids {:?}", read("tracing_on"), read("set_event_pid"));
    if inst.exists() {
        assert!(read("events/syscalls/sys_enter_read/enable").starts_with('1'), "{}", read("events/syscalls/sys_enter_read/enable"));
    }
    let summary = read_json(&env.container_dir(id).join("summary.json"));
    // A plain process has no runtime: the window opens at the first event,
    // and the summary says so.
    assert_eq!(summary["rule"]["kind"], "first-event");
    assert_eq!(summary["complete"], false);
    assert!(env.container_dir(id).join("seccomp.json").exists());
    env.assert_no_instances("after poststop");
}

/// A slot claimed again still has its last container's pid list, emptied
/// as those tasks exited; the kernel frees a replaced list only after
/// grace periods. The claim waits instead for its canary thread to be
/// recorded (`record::canary`): the new list is live then. The canary's
/// calls are not the container's and must stay out of the profile; the
/// container's own calls must be in it.
#[test]
fn a_reused_slot_is_claimed_through_a_canary_that_stays_out_of_the_profile() {
    if !prerequisites(false) {
        return;
    }
    let _g = serial();
    let env = Env::new();
    for round in 0..3 {
        // Once traced: opens and reads a file (`read` is a call of the
        // canary's too), then waits on stdin; no exec, no threads, no
        // pread64.
        let mut task = as_runtime("sh")
            .args(["-c", "read go; read x < /etc/hostname; read y"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn sh");
        let pid = task.id();
        let id = format!("hooktest-reuse-{round}");
        let (out, _) = hook(&env, "prestart", &state(&id, "creating", Some(pid), true), &[]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let st = read_json(&env.container_dir(&id).join("state.json"));
        let name = st["instance"].as_str().expect("instance").to_string();
        let canaries = st["canaries"].as_array().cloned().unwrap_or_default();
        // From the second round on, the last round's slot is free: reused.
        if round > 0 {
            assert_eq!(canaries.len(), 1, "a reused slot is claimed through a canary: {st}");
        }
        let _ = task.stdin.take().expect("stdin").write_all(b"go\n");
        std::thread::sleep(Duration::from_millis(300));
        stop(task);
        let (out, _) = hook(&env, "poststop", &state(&id, "stopped", None, true), &[]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let summary = read_json(&env.container_dir(&id).join("summary.json"));
        let calls = summary["analysis"]["syscalls"].as_object().cloned().unwrap_or_default();
        // The container's: dd's openat of /etc/hostname and its read.
        assert!(calls.contains_key("openat") && calls.contains_key("read"), "round {round}: {calls:?}");
        // The canary's: its stats reads, its wait for the writer, its
        // thread's end.
        for canary_call in ["pread64", "wait4", "madvise", "exit"] {
            assert!(!calls.contains_key(canary_call), "round {round}: the canary's {canary_call} is in the profile: {calls:?}");
        }
        // The next round reuses this slot once it is back in the pool.
        assert!(
            wait_until(INSTANCE_REMOVAL, || matches!(slot_phase(&name).as_deref(), Some("free") | None)),
            "slot {name} not released"
        );
    }
}

#[test]
fn bad_input_gets_one_line_and_no_panic() {
    if !prerequisites(false) {
        return;
    }
    let _g = serial();
    let env = Env::new();
    for (input, want) in [
        ("not json", "not valid JSON"),
        ("[1,2]", "not a JSON object"),
        (r#"{"id":"../../etc","pid":1,"annotations":{"oci-ftrace-syscall-analyzer/trace":"true"}}"#, "outside [A-Za-z0-9_.-]"),
        (r#"{"id":"x","pid":2147483647,"annotations":{"oci-ftrace-syscall-analyzer/trace":"true"}}"#, "not alive"),
    ] {
        // Fails open by default: exit 0, the error logged.
        let (out, _) = hook(&env, "prestart", input, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{input}: {err}");
        assert!(err.contains(want), "{input}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{input}: one line expected: {err}");
        assert!(!err.contains("panicked"));
        // --fail-closed makes it fatal.
        let (out, _) = hook(&env, "prestart", input, &["--fail-closed"]);
        assert_eq!(out.status.code(), Some(1), "{input}");
    }
    assert!(!env.state_dir().join("..").join("etc").join("state.json").exists());
    env.assert_no_instances("after bad input");
}

#[test]
fn unannotated_state_is_ignored() {
    if !prerequisites(false) {
        return;
    }
    let _g = serial();
    let env = Env::new();
    let task = sleeper();
    let (out, _) = hook(&env, "prestart", &state("hooktest-plain", "creating", Some(task.id()), false), &[]);
    stop(task);
    assert!(out.status.success());
    assert!(!env.container_dir("hooktest-plain").exists());
    env.assert_no_instances("after an unannotated prestart");
}

/// The recorder's pid, from `recorder.json`.
fn recorder_pid(env: &Env, id: &str) -> i32 {
    let info = read_json(&env.container_dir(id).join("recorder.json"));
    info["pid"].as_i64().expect("recorder pid") as i32
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

#[test]
fn recorder_leaves_the_cgroups_and_finishes_by_itself() {
    if !prerequisites(false) {
        return;
    }
    let _g = serial();
    let env = Env::new();
    let task = sleeper();
    let id = "hooktest-self";
    let (out, _) = hook(&env, "prestart", &state(id, "creating", Some(task.id()), true), &["--buffer-size-kb", "256"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rpid = recorder_pid(&env, id);
    assert!(alive(rpid), "recorder not running");
    // The "container" (the sleeper) shares the hook's cgroups, so they go
    // away with it: the recorder leaves every hierarchy right after it
    // said ready, and each line ends in ":/".
    let cgroups = || std::fs::read_to_string(format!("/proc/{rpid}/cgroup")).unwrap_or_default();
    let moved = wait_until(Duration::from_secs(2), || {
        let c = cgroups();
        !c.is_empty() && c.lines().all(|l| l.ends_with(":/"))
    });
    assert!(moved, "{}", cgroups());
    // Its own session, no terminal, no stdio.
    let fd0 = std::fs::read_link(format!("/proc/{rpid}/fd/0")).expect("fd 0");
    assert_eq!(fd0, std::path::Path::new("/dev/null"));
    // Not in the bundle, which the runtime removes while it runs.
    let cwd = std::fs::read_link(format!("/proc/{rpid}/cwd")).expect("cwd");
    assert_eq!(cwd, std::path::Path::new("/"));

    // The container's init dies; nobody calls poststop.
    stop(task);
    // The recorder's child lets the slot go beside the summary's writing.
    let summary_file = env.container_dir(id).join("summary.json");
    assert!(wait_until(INSTANCE_REMOVAL, || !env.has_instance(id) && summary_file.exists()), "instance not let go, or no summary");
    assert!(wait_until(Duration::from_secs(5), || !alive(rpid)), "recorder still running");
    let summary = read_json(&env.container_dir(id).join("summary.json"));
    assert_eq!(summary["finished_by"], "recorder");
    assert_eq!(summary["recorder"]["ended"], "init-exited");
    assert_eq!(summary["lost_events"], 0);

    // A late poststop finds the result and leaves nothing behind.
    let (out, _) = hook(&env, "poststop", &state(id, "stopped", None, true), &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(read_json(&env.container_dir(id).join("summary.json"))["finished_by"], "recorder");
    env.assert_no_instances("after the recorder finished");
}

/// A cgroup beside each non-root cgroup of this process, one per hierarchy
/// it is in: a "container" cgroup that is neither the hook's nor holds it,
/// like podman's `libpod-<id>` beside the shared `conmon` on cgroupfs.
struct SiblingCgroups(Vec<std::path::PathBuf>);

impl SiblingCgroups {
    fn new(name: &str) -> Self {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let roots: Vec<std::path::PathBuf> = mountinfo
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                let dash = f.iter().position(|x| *x == "-")?;
                let fstype = *f.get(dash + 1)?;
                ((fstype == "cgroup" || fstype == "cgroup2") && f.get(3) == Some(&"/")).then(|| f[4].into())
            })
            .collect();
        let me = std::process::id().to_string();
        let mut dirs = Vec::new();
        for line in std::fs::read_to_string("/proc/self/cgroup").expect("cgroup").lines() {
            let Some((_, path)) = line.rsplit_once(':') else { continue };
            if path == "/" {
                continue;
            }
            for root in &roots {
                let own = root.join(path.trim_start_matches('/'));
                let procs = std::fs::read_to_string(own.join("cgroup.procs")).unwrap_or_default();
                if !procs.lines().any(|p| p == me) {
                    continue;
                }
                let sibling = own.parent().expect("non-root cgroup has a parent").join(name);
                std::fs::create_dir_all(&sibling).expect("create sibling cgroup");
                // A v1 cpuset takes no task before it has cpus and mems.
                for f in ["cpuset.cpus", "cpuset.mems"] {
                    if let Ok(v) = std::fs::read_to_string(own.join(f)) {
                        let _ = std::fs::write(sibling.join(f), v.trim());
                    }
                }
                dirs.push(sibling);
            }
        }
        SiblingCgroups(dirs)
    }

    fn enter(&self, pid: u32) {
        for d in &self.0 {
            std::fs::write(d.join("cgroup.procs"), pid.to_string()).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        }
    }
}

impl Drop for SiblingCgroups {
    fn drop(&mut self) {
        for d in &self.0 {
            wait_until(Duration::from_secs(2), || std::fs::remove_dir(d).is_ok() || !d.exists());
        }
    }
}

#[test]
fn recorder_stays_in_a_cgroup_the_container_does_not_own() {
    if !prerequisites(false) {
        return;
    }
    let _g = serial();
    let env = Env::new();
    let cgroups = SiblingCgroups::new(&format!("oftest-stay-{}", std::process::id()));
    let task = sleeper();
    cgroups.enter(task.id());
    let id = "hooktest-stay";
    let (out, _) = hook(&env, "prestart", &state(id, "creating", Some(task.id()), true), &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rpid = recorder_pid(&env, id);
    // Moving would cost the start an RCU grace period (bench/RESULTS.md);
    // the hook's cgroups here outlive the "container", so it stays. The
    // move would come right after ready; give it time to show.
    std::thread::sleep(Duration::from_millis(300));
    let own = std::fs::read_to_string("/proc/self/cgroup").expect("own cgroups");
    let recorder = std::fs::read_to_string(format!("/proc/{rpid}/cgroup")).expect("recorder cgroups");
    assert_eq!(recorder, own, "the recorder left cgroups that outlive the container");

    stop(task);
    // The recorder's child lets the slot go beside the summary's writing.
    let summary_file = env.container_dir(id).join("summary.json");
    assert!(wait_until(INSTANCE_REMOVAL, || !env.has_instance(id) && summary_file.exists()), "instance not let go, or no summary");
    assert_eq!(read_json(&env.container_dir(id).join("summary.json"))["finished_by"], "recorder");
    drop(cgroups);
    env.assert_no_instances("after the recorder finished");
}

#[test]
fn killed_recorder_falls_back_to_the_ring_buffer() {
    if !prerequisites(false) {
        return;
    }
    let _g = serial();
    let env = Env::new();
    // A task that makes a call (mkdir) only after the recorder is gone.
    let dir = env.dir.path().join("late");
    let mut task = as_runtime("sh")
        .arg("-c")
        .arg(format!("read x; mkdir {}; sleep 30", dir.display()))
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    let id = "hooktest-kill";
    let (out, _) = hook(&env, "prestart", &state(id, "creating", Some(task.id()), true), &["--buffer-size-kb", "512"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rpid = recorder_pid(&env, id);
    // Killed where its last save holds all it read (the other case:
    // tests/recorder.rs).
    kill_recorder_when(rpid, id, &env.state_dir(), SaveCovers::Everything, Duration::from_secs(30));
    assert!(wait_until(Duration::from_secs(5), || !alive(rpid)));
    task.stdin.take().expect("stdin").write_all(b"go\n").expect("wake task");
    assert!(wait_until(Duration::from_secs(5), || dir.exists()));
    stop(task);

    let (out, _) = hook(&env, "poststop", &state(id, "stopped", None, true), &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    env.assert_no_instances("after poststop with a dead recorder");
    let summary = read_json(&env.container_dir(id).join("summary.json"));
    assert_eq!(summary["finished_by"], "poststop");
    // Nothing it read is missing from its save: its death is no reason
    // for doubt. (This task is no runtime: no window marker is, though.)
    let reasons = summary["incomplete_reasons"].to_string();
    assert!(!reasons.contains("recorder"), "{reasons}");
    // The call made after the recorder died was still in the ring buffer.
    let profile = read_json(&env.container_dir(id).join("seccomp.json"));
    assert!(allowed(&profile).contains("mkdir"), "{profile}");
}

#[test]
fn gc_finishes_recordings_whose_container_and_recorder_are_gone() {
    if !prerequisites(false) {
        return;
    }
    let _g = serial();
    let env = Env::new();
    let task = sleeper();
    let id = "hooktest-gc";
    let (out, _) = hook(&env, "prestart", &state(id, "creating", Some(task.id()), true), &["--buffer-size-kb", "256"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(env.has_instance(id));

    // Alive: gc keeps it.
    let gc = || Command::new(collector_bin()).arg("gc").arg("--state-dir").arg(env.state_dir()).output().expect("gc");
    let gc_out = gc();
    assert!(gc_out.status.success());
    assert!(
        env.has_instance(id),
        "gc let a live container's instance go: prestart said {}; gc said {}; state {}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&gc_out.stderr),
        std::fs::read_to_string(env.container_dir(id).join("state.json")).unwrap_or_default()
    );

    // Recorder and container both dead, no poststop (as when CRI-O has not
    // removed the container yet): gc keeps the recording as a profile and
    // removes the instance.
    let rpid = recorder_pid(&env, id);
    // Killed where its last save holds all it read (the other case:
    // tests/recorder.rs).
    kill_recorder_when(rpid, id, &env.state_dir(), SaveCovers::Everything, Duration::from_secs(30));
    assert!(wait_until(Duration::from_secs(5), || !alive(rpid)));
    stop(task);
    let out = gc();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    env.assert_no_instances("after gc");
    let summary = read_json(&env.container_dir(id).join("summary.json"));
    assert_eq!(summary["finished_by"], "gc");
}

#[test]
fn containers_beyond_the_cap_run_untraced() {
    if !prerequisites(false) {
        return;
    }
    let _g = serial();
    let env = Env::new();
    let (a, b) = (sleeper(), sleeper());
    let cap = ["--max-instances", "1", "--buffer-size-kb", "256"];
    let (out, _) = hook(&env, "prestart", &state("hooktest-cap-a", "creating", Some(a.id()), true), &cap);
    assert!(out.status.success());
    let (out, _) = hook(&env, "prestart", &state("hooktest-cap-b", "creating", Some(b.id()), true), &cap);
    assert!(out.status.success(), "over the cap is never a start failure");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not traced: 1 containers are traced already (cap 1)"), "{err}");
    assert!(env.has_instance("hooktest-cap-a") && !env.has_instance("hooktest-cap-b"), "{:?}", env.instances());
    let st = read_json(&env.container_dir("hooktest-cap-b").join("state.json"));
    assert!(st["not_traced"].as_str().is_some_and(|w| w.contains("cap 1")), "{st}");
    let log = std::fs::read_to_string(env.state_dir().join("hook.log")).unwrap_or_default();
    assert!(log.contains("not traced"), "{log}");
    // The report says why there is no profile.
    let out = Command::new(collector_bin())
        .args(["report", "hooktest-cap-b", "--state-dir"])
        .arg(env.state_dir())
        .output()
        .expect("collector report");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("was not traced") && err.contains("cap 1"), "{err}");
    stop(a);
    stop(b);
    for id in ["hooktest-cap-a", "hooktest-cap-b"] {
        let (out, _) = hook(&env, "poststop", &state(id, "stopped", None, true), &[]);
        assert!(out.status.success());
    }
    assert!(!env.container_dir("hooktest-cap-b").join("seccomp.json").exists());
    env.assert_no_instances("after the cap test");
}

#[test]
fn prestart_mounts_tracefs_when_it_is_absent() {
    if !prerequisites(false) {
        return;
    }
    let _g = serial();
    let env = Env::new();
    let task = sleeper();
    let id = "hooktest-mount";
    let state_file = env.dir.path().join("state-in.json");
    std::fs::write(&state_file, state(id, "creating", Some(task.id()), true)).expect("write state");
    let root = tracefs_root().expect("tracefs");
    // A private mount namespace without tracefs: the host keeps its mount,
    // and the instance (a kernel object) is visible from both. debugfs goes
    // too where systemd mounted it: its tracing/ would give tracefs back.
    let script = format!(
        "umount {root} && {{ ! grep -q ' - debugfs ' /proc/self/mountinfo || umount -l /sys/kernel/debug; }} && \
         ! grep -q ' - tracefs ' /proc/self/mountinfo && \
         {hook} prestart --state-dir {state} < {input} && grep -q ' - tracefs ' /proc/self/mountinfo",
        root = root.display(),
        hook = hook_bin().display(),
        state = env.state_dir().display(),
        input = state_file.display(),
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .expect("unshare");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    assert!(err.contains("tracefs not mounted; mounting it"), "{err}");
    assert!(env.has_instance(id));
    stop(task);
    let (out, _) = hook(&env, "poststop", &state(id, "stopped", None, true), &[]);
    assert!(out.status.success());
    env.assert_no_instances("after poststop");
}

/// A slot nobody claims within its linger time is torn down, one trigger at
/// a time, and leaves nothing behind: no instance, no state file.
#[test]
fn an_unclaimed_slot_is_torn_down_after_its_linger_time() {
    if !prerequisites(false) {
        return;
    }
    let _g = serial();
    let env = Env::new();
    let task = sleeper();
    let id = "hooktest-linger";
    let linger = ["--slot-linger-secs", "1"];
    let (out, _) = hook(&env, "prestart", &state(id, "creating", Some(task.id()), true), &linger);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let name = env.instances().pop().expect("a slot records the container");
    stop(task);
    let (out, _) = hook(&env, "poststop", &state(id, "stopped", None, true), &linger);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let inst = tracefs_root().expect("tracefs").join("instances").join(&name);
    // 360 triggers, each ~0.1 s of grace periods here (far more on a
    // loaded machine).
    let t0 = Instant::now();
    let gone = wait_until(Duration::from_secs(240), || !inst.exists() && slot_phase(&name).is_none());
    assert!(gone, "{name} still there after {:?}: phase {:?}", t0.elapsed(), slot_phase(&name));
    eprintln!("{name} torn down in {:?}", t0.elapsed());
}

/// Concurrent prestarts against a cap: counting and arming happen under
/// one lock, so no more than the cap are ever traced (issue 14, defect 2).
#[test]
fn concurrent_prestarts_never_exceed_the_cap() {
    if !prerequisites(false) {
        return;
    }
    let _g = serial();
    let env = std::sync::Arc::new(Env::new());
    let tasks: Vec<Child> = (0..12).map(|_| sleeper()).collect();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(tasks.len()));
    let threads: Vec<_> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let (env, barrier, pid) = (env.clone(), barrier.clone(), t.id());
            std::thread::spawn(move || {
                barrier.wait();
                let id = format!("hooktest-race-{i}");
                // Full mode for half: an instance of its own (and a
                // companion slot), the path where the count came first.
                let mut st: serde_json::Value = serde_json::from_str(&state(&id, "creating", Some(pid), true)).expect("state");
                if i % 2 == 1 {
                    st["annotations"]["oci-ftrace-syscall-analyzer/mode"] = "full".into();
                }
                hook(&env, "prestart", &st.to_string(), &["--max-instances", "4"]).0
            })
        })
        .collect();
    let outputs: Vec<String> = threads
        .into_iter()
        .map(|t| {
            let out = t.join().expect("prestart thread");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stderr).into_owned()
        })
        .collect();
    let traced: Vec<String> = (0..12).map(|i| format!("hooktest-race-{i}")).filter(|id| env.has_instance(id)).collect();
    // Each untraced one says why in one line: over the cap, or (on a slow
    // machine, twelve queued for one lock) its prestart ran out of time.
    let untraced = (0..12)
        .filter(|i| !traced.contains(&format!("hooktest-race-{i}")))
        .filter(|i| ["not traced", "timed out"].iter().any(|w| outputs[*i].contains(w)))
        .count();
    for t in tasks {
        stop(t);
    }
    for i in 0..12 {
        let _ = hook(&env, "poststop", &state(&format!("hooktest-race-{i}"), "stopped", None, true), &[]);
    }
    assert!(traced.len() <= 4, "{} traced against a cap of 4: {traced:?}", traced.len());
    assert_eq!(traced.len() + untraced, 12, "each is traced or says why not");
    env.assert_no_instances("after the race");
}

/// SIGTERM while prestart waits for its recorder: handled (the hook cleans
/// up and exits), never the default action that kills it half-way
/// (issue 14, defect 3).
#[test]
fn sigterm_during_prestart_is_handled_and_leaves_nothing_recording() {
    if !prerequisites(false) {
        return;
    }
    let _g = serial();
    let env = Env::new();
    // A recorder that never says ready: prestart waits for it. (Anything
    // else, gc among it, goes to the real collector.)
    let slow = env.dir.path().join("collector-never-ready");
    let script = format!("#!/bin/sh\n[ \"$1\" = record ] && exec sleep 30\nexec {} \"$@\"\n", collector_bin().display());
    std::fs::write(&slow, script).expect("write stand-in");
    std::fs::set_permissions(&slow, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    for (n, after) in [50u64, 300, 800].into_iter().enumerate() {
        let task = sleeper();
        let id = format!("hooktest-term-{n}");
        let mut child = Command::new(hook_bin())
            .args(["prestart", "--state-dir"])
            .arg(env.state_dir())
            .arg(format!("--collector={}", slow.display()))
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hook");
        child.stdin.take().expect("stdin").write_all(state(&id, "creating", Some(task.id()), true).as_bytes()).expect("write");
        // From main's first instruction on (an emulator takes longer than
        // 50 ms to get there): the blocked mask shows SIGTERM (bit 15).
        let blocked = || {
            let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
            let mask = status.lines().find_map(|l| l.strip_prefix("SigBlk:")).map(str::trim).unwrap_or("0");
            u64::from_str_radix(mask, 16).is_ok_and(|m| m & (1 << 14) != 0)
        };
        assert!(wait_until(Duration::from_secs(10), blocked), "the hook never blocked SIGTERM");
        std::thread::sleep(Duration::from_millis(after));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).expect("kill");
        let out = child.wait_with_output().expect("hook");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            std::os::unix::process::ExitStatusExt::signal(&out.status).is_none(),
            "killed by a signal {after} ms in: {:?} {err}",
            out.status
        );
        assert!(wait_until(INSTANCE_REMOVAL, || !env.has_instance(&id)), "still recording {id} after SIGTERM");
        // Cut short before it wrote anything, or marked as not traced.
        let state_file = env.container_dir(&id).join("state.json");
        if state_file.exists() {
            let st = read_json(&state_file);
            assert!(st["not_traced"].as_str().is_some_and(|w| w.contains("SIGTERM")), "{after} ms: {st}");
        }
        stop(task);
        let _ = hook(&env, "poststop", &state(&id, "stopped", None, true), &[]);
    }
    env.assert_no_instances("after SIGTERM");
}

/// A tmpfs of `kb` KiB mounted for the test's life.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn new(kb: u32) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kb}k,mode=0700"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount");
        assert!(st.success(), "could not mount a tmpfs");
        SmallDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills what is left, so the next write fails with ENOSPC.
    fn fill(&self) {
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=4k"])
            .arg(format!("of={}", self.path().join("fill").display()))
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// The state dir fills up while a container is traced: its profile cannot
/// be written. The runtime's poststop still succeeds (fail-open), the
/// hook says why in one line naming ENOSPC, no profile is left without its
/// summary (or the other way round), and the slot goes back to the pool.
/// The profile is held in /run meanwhile (the kernel's buffer was read
/// once): once there is room, gc moves it into place, whole.
#[test]
fn a_full_state_disk_loses_no_instance_and_says_so() {
    if !prerequisites(false) {
        return;
    }
    let _g = serial();
    let disk = SmallDisk::new(512);
    let state_dir = disk.path().join("state");
    let run = |stage: &str, stdin: &str| hook_in(&state_dir, stage, stdin, &[]).0;
    let task = sleeper();
    let id = "hooktest-full-disk";
    let out = run("prestart", &state(id, "creating", Some(task.id()), true));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let st = read_json(&state_dir.join(id).join("state.json"));
    let name = st["instance"].as_str().expect("traced").to_string();
    disk.fill();
    stop(task);
    let out = run("poststop", &state(id, "stopped", None, true));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "poststop must not fail the runtime: {said}");
    assert!(said.contains("No space left on device"), "the hook must name ENOSPC: {said}");
    assert_eq!(said.trim().lines().count(), 1, "one line: {said}");
    assert!(said.contains("held in"), "the profile is kept until there is room: {said}");
    let dir = state_dir.join(id);
    let has = |f: &str| dir.join(f).exists();
    assert_eq!(has("seccomp.json"), has("summary.json"), "a profile without its summary or the other way round");
    let temps: Vec<_> = std::fs::read_dir(&dir).expect("container dir").filter_map(|e| e.ok()).map(|e| e.file_name()).filter(|n| n.to_string_lossy().contains(".tmp.")).collect();
    assert!(temps.is_empty(), "temp files left: {temps:?}");
    // The slot goes back to the pool.
    let released = wait_until(INSTANCE_REMOVAL, || matches!(slot_phase(&name).as_deref(), Some("free" | "reaping") | None));
    assert!(released, "slot {name} still {:?}", slot_phase(&name));
    // Room again: gc writes what the recorder could not.
    let _ = std::fs::remove_file(disk.path().join("fill"));
    let mut gc_said = String::new();
    if !has("summary.json") {
        let out = Command::new(collector_bin()).arg("gc").arg("--state-dir").arg(&state_dir).output().expect("gc");
        gc_said = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{gc_said}");
    }
    assert!(has("summary.json"), "poststop said {said}; gc said {gc_said}; files {:?}", std::fs::read_dir(&dir).map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect::<Vec<_>>()));
    let summary = read_json(&dir.join("summary.json"));
    assert!(summary["complete"].is_boolean(), "{summary}");
    assert!(has("seccomp.json"));
    // The sleeper's runtime comm and first event make the usual honest
    // caveat, nothing about the disk: the held profile is the recorder's.
    assert_eq!(summary["finished_by"], "recorder", "{summary}");
}
