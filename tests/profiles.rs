//! End to end: profiles as users manage them (issue 16). Real podman +
//! runc with the project's hooks and a busybox rootfs: record, list,
//! merge, diff (also against the installed default), export for the
//! kubelet, SPO and OCI; and the ENOSYS rule that lets glibc fall back
//! from clone3 to clone.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use e2e::*;

const DEFAULT_PROFILE: &str = "/usr/share/containers/seccomp.json";
const NAME_ANNOTATION: &str = "oci-ftrace-syscall-analyzer/name";

fn collector(args: &[&str], state_dir: &Path) -> Output {
    Command::new(collector_bin()).args(args).arg("--state-dir").arg(state_dir).output().expect("run collector")
}

fn ok_stdout(out: &Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json_of(out: &Output, what: &str) -> serde_json::Value {
    let text = ok_stdout(out, what);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"))
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The rule of `profile` that answers with `errno`, if any: its names.
fn errno_rule(profile: &serde_json::Value, errno: u64) -> Vec<String> {
    profile["syscalls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["action"] == "SCMP_ACT_ERRNO" && r["errnoRet"] == errno)
        .flat_map(|r| r["names"].as_array().cloned().unwrap_or_default())
        .filter_map(|n| n.as_str().map(String::from))
        .collect()
}

/// Must show: recorded under a runtime profile that answers clone3 with
/// ENOSYS (the installed default with clone3 taken out, so its default
/// errno 38 answers it, as Docker's default does without CAP_SYS_ADMIN),
/// glibc fell back to clone and the trace never saw clone3; under the
/// generated profile the threads start, because unseen clone3 gets
/// ENOSYS, not EPERM. The same profile without that rule fails.
#[test]
fn clone3_unseen_gets_enosys_and_threads_start() {
    if !prerequisites(true) || !have_static_gcc() {
        return;
    }
    let _g = serial();
    let env = Env::new();
    build_fixture("threads", &env.rootfs().join("bin/threads"), &["-pthread"]);

    // The runtime profile: the installed default without clone3.
    let mut runtime_profile = read_json(Path::new(DEFAULT_PROFILE));
    assert_eq!(runtime_profile["defaultErrnoRet"], 38, "the installed default answers with ENOSYS");
    for rule in runtime_profile["syscalls"].as_array_mut().expect("syscalls").iter_mut() {
        if let Some(names) = rule["names"].as_array_mut() {
            names.retain(|n| n != "clone3");
        }
    }
    let no_clone3 = env.dir.path().join("no-clone3.json");
    std::fs::write(&no_clone3, runtime_profile.to_string()).expect("write runtime profile");

    let run = env.run(true, Some(path_str(&no_clone3)), "/bin/threads 4");
    assert!(run.ok(), "recording run: {}", run.stderr());
    assert_eq!(run.stdout(), "threads ok 4\n");
    env.assert_no_instances("after the recording");
    let generated = env.container_dir(&run.id).join("seccomp.json");
    let profile = read_json(&generated);
    let names = allowed(&profile);
    assert!(names.contains("clone"), "glibc fell back to clone: {names:?}");
    assert!(!names.contains("clone3"), "clone3 was answered by the runtime's filter, never traced");
    let enosys = errno_rule(&profile, 38);
    assert!(enosys.iter().any(|n| n == "clone3"), "clone3 gets ENOSYS: {profile:#}");
    assert_eq!(profile["defaultErrnoRet"], 1, "everything else unseen keeps EPERM");

    let rerun = env.run(false, Some(path_str(&generated)), "/bin/threads 4");
    assert!(rerun.ok(), "under the generated profile: {}", rerun.stderr());
    assert_eq!(rerun.stdout(), "threads ok 4\n");

    // Without the ENOSYS rule (what the profile was before): EPERM, no threads.
    let mut eperm = profile.clone();
    eperm["syscalls"].as_array_mut().expect("syscalls").retain(|r| r["errnoRet"] != 38);
    let eperm_path = env.dir.path().join("eperm.json");
    std::fs::write(&eperm_path, eperm.to_string()).expect("write");
    let failed = env.run(false, Some(path_str(&eperm_path)), "/bin/threads 4");
    assert!(!failed.ok(), "clone3 = EPERM should stop pthread_create");
    assert!(failed.stderr().contains("pthread_create: Operation not permitted"), "{}", failed.stderr());
    env.assert_no_instances("after the re-runs");
}

const PATH_A: &str = "echo start; mkdir /tmp/d && rmdir /tmp/d && echo done";
const PATH_B: &str = "echo start; ln -s x /tmp/l && rm /tmp/l && echo done";

/// Must show: two runs of a workload that take different paths, merged
/// (selected by name): the merged profile runs both paths and each single
/// one fails the other's; list, diff, diff --against the installed default
/// with counts, and the three exports, each accepted by what takes it.
#[test]
fn record_list_merge_diff_export() {
    if !prerequisites(true) {
        return;
    }
    let _g = serial();
    let env = Env::new();
    let state = env.state_dir();
    let name = format!("{NAME_ANNOTATION}=paths");
    let a = env.run_traced(&[&name], PATH_A);
    assert!(a.ok() && a.stdout().ends_with("done\n"), "path A: {}", a.stderr());
    let b = env.run_traced(&[&name], PATH_B);
    assert!(b.ok() && b.stdout().ends_with("done\n"), "path B: {}", b.stderr());
    env.assert_no_instances("after the recordings");
    let profile_a = env.container_dir(&a.id).join("seccomp.json");
    let profile_b = env.container_dir(&b.id).join("seccomp.json");

    // list: both runs, named, complete.
    let list = json_of(&collector(&["list", "--json"], &state), "list --json");
    let rows = list.as_array().expect("list is an array");
    assert_eq!(rows.len(), 2, "{list:#}");
    for row in rows {
        assert_eq!(row["name"], "paths", "{row:#}");
        assert_eq!(row["complete"], true, "{row:#}");
        assert_eq!(row["traced"], true);
        assert!(row["allowed"].as_u64().unwrap_or(0) > 10, "{row:#}");
    }
    let table = ok_stdout(&collector(&["list"], &state), "list");
    assert!(table.contains(&a.id[..12]) && table.contains(&b.id[..12]) && table.contains("paths"), "{table}");

    // Each single profile fails the other path.
    let a_under_b = env.run(false, Some(path_str(&profile_b)), PATH_A);
    assert!(!a_under_b.ok() && a_under_b.stderr().contains("Operation not permitted"), "A under B: {}", a_under_b.stderr());
    let b_under_a = env.run(false, Some(path_str(&profile_a)), PATH_B);
    assert!(!b_under_a.ok() && b_under_a.stderr().contains("Operation not permitted"), "B under A: {}", b_under_a.stderr());

    // merge --name: the union runs both.
    let merged = env.dir.path().join("out/paths.json");
    let report = json_of(&collector(&["merge", "--name", "paths", "-o", path_str(&merged), "--json"], &state), "merge");
    assert_eq!(report["inputs"].as_array().map(Vec::len), Some(2), "{report:#}");
    assert_eq!(report["seen_by"]["execve"], 2, "{report:#}");
    let counts = read_json(&env.dir.path().join("out/paths.merge.json"));
    assert_eq!(counts["seen_by"], report["seen_by"]);
    let merged_profile = read_json(&merged);
    assert!(merged_profile.get("seen_by").is_none(), "counts stay beside the profile, not in it");
    let union: std::collections::BTreeSet<String> =
        allowed(&read_json(&profile_a)).union(&allowed(&read_json(&profile_b))).cloned().collect();
    assert_eq!(allowed(&merged_profile), union);
    for (path, script) in [("A", PATH_A), ("B", PATH_B)] {
        let r = env.run(false, Some(path_str(&merged)), script);
        assert!(r.ok() && r.stdout().ends_with("done\n"), "path {path} under the merged profile: {}", r.stderr());
    }

    // diff A B: what B adds and removes.
    let d = json_of(&collector(&["diff", &a.id[..12], &b.id[..12], "--json"], &state), "diff");
    let has = |v: &serde_json::Value, any: &[&str]| v.as_array().is_some_and(|a| a.iter().any(|n| any.iter().any(|x| n == x)));
    assert!(has(&d["added"], &["symlink", "symlinkat"]), "{d:#}");
    assert!(has(&d["removed"], &["mkdir", "mkdirat"]), "{d:#}");
    let text = ok_stdout(&collector(&["diff", &a.id, &b.id], &state), "diff");
    assert!(text.lines().any(|l| l.starts_with("+ symlink")), "{text}");

    // diff --against the installed default, with counts.
    let against = json_of(&collector(&["diff", &a.id, "--against", DEFAULT_PROFILE, "--json"], &state), "diff --against");
    let removed = against["removed"].as_array().map(Vec::len).unwrap_or(0) as u64;
    let default_allowed = against["default_allowed"].as_u64().unwrap_or(0);
    assert!(default_allowed > 300, "{against:#}");
    assert_eq!(removed + against["kept"].as_u64().unwrap_or(0), default_allowed, "{against:#}");
    assert!(removed > 250, "a busybox script needs few calls: {against:#}");
    assert!(has(&against["removed"], &["ptrace"]), "{against:#}");
    assert_eq!(against["denied_by_default"], serde_json::json!([]), "recorded under the default: {against:#}");
    let text = ok_stdout(&collector(&["diff", &a.id, "--against", DEFAULT_PROFILE], &state), "diff --against");
    assert!(text.contains(&format!("removes {removed} of the {default_allowed} calls the default allows")), "{text}");

    // export kubelet: the file podman takes with --security-opt seccomp=.
    let root = env.dir.path().join("kubelet-seccomp");
    let k = json_of(
        &collector(&["export", path_str(&merged), "--format", "kubelet", "--name", "profiles/paths", "--root", path_str(&root), "--json"], &state),
        "export kubelet",
    );
    assert_eq!(k["securityContext"]["seccompProfile"]["type"], "Localhost");
    assert_eq!(k["securityContext"]["seccompProfile"]["localhostProfile"], "profiles/paths.json");
    let kfile = root.join("profiles/paths.json");
    assert_eq!(read_json(&kfile), merged_profile);
    let r = env.run(false, Some(path_str(&kfile)), PATH_B);
    assert!(r.ok() && r.stdout().ends_with("done\n"), "podman with the kubelet file: {}", r.stderr());
    let snippet = ok_stdout(
        &collector(&["export", &a.id, "--format", "kubelet", "--name", "a", "--root", path_str(&root)], &state),
        "export kubelet",
    );
    assert!(snippet.contains("localhostProfile: a.json"), "{snippet}");

    // export oci: runc takes it in a bundle's config.json.
    let oci = json_of(&collector(&["export", path_str(&merged), "--format", "oci"], &state), "export oci");
    run_in_bundle(&env, oci);

    // export spo: YAML with the CRD's required fields.
    let yaml = ok_stdout(
        &collector(&["export", path_str(&merged), "--format", "spo", "--name", "Paths Merged", "--namespace", "demo"], &state),
        "export spo",
    );
    let cr: serde_json::Value = yaml_serde::from_str(&yaml).unwrap_or_else(|e| panic!("SPO YAML does not parse ({e}): {yaml}"));
    assert_eq!(cr["apiVersion"], "security-profiles-operator.x-k8s.io/v1beta1");
    assert_eq!(cr["kind"], "SeccompProfile");
    assert_eq!(cr["metadata"]["name"], "paths-merged");
    assert_eq!(cr["metadata"]["namespace"], "demo");
    assert_eq!(cr["spec"]["defaultAction"], "SCMP_ACT_ERRNO");
    let rules = cr["spec"]["syscalls"].as_array().expect("spec.syscalls");
    assert!(rules.iter().all(|r| r["action"].is_string() && r["names"].is_array()), "{cr:#}");
    assert_eq!(allowed(&cr["spec"]), allowed(&merged_profile));
    env.assert_no_instances("at the end");
}

/// `runc run` of a bundle whose config.json has `seccomp` as
/// `linux.seccomp`: the filter is installed (Seccomp: 2) and the workload
/// runs.
fn run_in_bundle(env: &Env, seccomp: serde_json::Value) {
    let bundle: PathBuf = env.dir.path().join("bundle");
    std::fs::create_dir_all(&bundle).expect("bundle dir");
    let spec = Command::new(runtime()).args(["spec", "--bundle"]).arg(&bundle).output().expect("runc spec");
    assert!(spec.status.success(), "runc spec: {}", String::from_utf8_lossy(&spec.stderr));
    let config_path = bundle.join("config.json");
    let mut config = read_json(&config_path);
    config["root"]["path"] = serde_json::Value::String(path_str(&env.rootfs()).to_string());
    config["process"]["terminal"] = serde_json::Value::Bool(false);
    config["process"]["args"] = serde_json::json!(["sh", "-c", format!("{PATH_A}; grep Seccomp: /proc/self/status")]);
    config["root"]["readonly"] = serde_json::Value::Bool(false);
    config["linux"]["seccomp"] = seccomp;
    std::fs::write(&config_path, config.to_string()).expect("write config.json");
    let id = format!("oci-ftrace-e2e-{}", std::process::id());
    let out = Command::new(runtime())
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&id)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("runc run");
    let _ = Command::new(runtime()).args(["delete", "-f", &id]).output();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "runc run: {} {stdout}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("done\n"), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("Seccomp:") && l.trim_end().ends_with('2')), "filter not installed: {stdout}");
}

/// Every command has --json, and clear one-line errors for unknown ids,
/// ambiguous prefixes, unreadable files, incomplete inputs and mixed
/// architectures. No podman needed: a state dir made by hand.
#[test]
fn cli_errors_and_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let write_run = |id: &str, arch: &str, complete: bool| {
        let folder = state.join(id);
        std::fs::create_dir_all(&folder).expect("mkdir");
        let profile = serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1, "architectures": [arch],
            "syscalls": [{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"}]
        });
        std::fs::write(folder.join("seccomp.json"), profile.to_string()).expect("write");
        let summary = serde_json::json!({
            "id": id, "host_pid": 1, "rule": {"kind": "first-event"}, "rule_text": "from the first event",
            "complete": complete, "incomplete_reasons": if complete { vec![] } else { vec!["lost 7 events"] },
            "lost_events": 7, "per_cpu": [], "malformed_records": 0,
            "analysis": {"syscalls": {}, "unnamed": {}, "errors": {}, "processes": {}, "events": {"total": 0, "in_window": 0, "syscalls_in_window": 0}},
            "profile": "/p", "arch": "x86_64", "kernel_release": "6.18", "started_unix": 1, "finished_unix": 2
        });
        std::fs::write(folder.join("summary.json"), summary.to_string()).expect("write");
    };
    write_run("aaaa1111", "SCMP_ARCH_X86_64", true);
    write_run("aaaa2222", "SCMP_ARCH_X86_64", false);
    write_run("bbbb3333", "SCMP_ARCH_AARCH64", true);

    let fails = |args: &[&str], needle: &str| {
        let out = collector(args, &state);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    };
    fails(&["diff", "zzzz", "aaaa1111"], "no recorded container matches \"zzzz\"");
    fails(&["export", "aaaa", "--format", "oci"], "\"aaaa\" matches 2 containers");
    fails(&["merge", "/nonexistent/p.json"], "reading /nonexistent/p.json");
    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, "{ nope").expect("write");
    fails(&["diff", "aaaa1111", "--against", path_str(&garbage)], "is not a seccomp profile");
    fails(&["merge", "aaaa1111", "aaaa2222"], "aaaa2222 is incomplete (lost 7 events); pass --allow-incomplete");
    fails(&["merge", "aaaa1111", "bbbb3333"], "different architectures");
    fails(&["export", "aaaa1111", "--format", "kubelet", "--name", "../escape", "--root", "/tmp"], "relative path");

    // --json everywhere.
    let list = json_of(&collector(&["list", "--json"], &state), "list");
    assert_eq!(list.as_array().map(Vec::len), Some(3));
    let m = json_of(&collector(&["merge", "aaaa1111", "aaaa2222", "--allow-incomplete", "--json"], &state), "merge");
    assert_eq!(m["merge"]["incomplete_inputs"], serde_json::json!(["aaaa2222"]));
    assert!(m["profile"]["syscalls"].is_array());
    let mixed = json_of(&collector(&["merge", "aaaa1111", "bbbb3333", "--allow-mixed-arch", "--json"], &state), "merge");
    assert_eq!(mixed["profile"]["architectures"], serde_json::json!(["SCMP_ARCH_AARCH64", "SCMP_ARCH_X86_64"]));
    let d = json_of(&collector(&["diff", "aaaa1111", "bbbb", "--json"], &state), "diff");
    assert_eq!(d["common"], 3);
    let k = json_of(
        &collector(&["export", "aaaa1111", "--format", "kubelet", "--root", path_str(&dir.path().join("k")), "--json"], &state),
        "export kubelet",
    );
    assert_eq!(k["securityContext"]["seccompProfile"]["localhostProfile"], "aaaa1111.json");
    let s = json_of(&collector(&["export", "aaaa1111", "--format", "spo", "--json"], &state), "export spo");
    assert_eq!(s["kind"], "SeccompProfile");
    let o = json_of(&collector(&["export", "aaaa1111", "--format", "oci", "--json"], &state), "export oci");
    assert_eq!(o["defaultAction"], "SCMP_ACT_ERRNO");
}
