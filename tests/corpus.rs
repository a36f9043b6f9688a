//! The standing bad-input corpus (`tests/corpus/`, written by its
//! `generate.py`; `MANIFEST` lists each case and what it must give). Needs
//! no root: every case fails before anything touches tracefs.
//!
//! For each case: no panic, no backtrace; a rejected input gives one line
//! on stderr that says what was wrong (the manifest's text) and a failing
//! status (the hook: with `--fail-closed`; without it the same input exits
//! 0, fail-open); an accepted one ("ok") exits 0. Nothing is written
//! outside the state dir (the scratch dir around it is compared before and
//! after) and nothing already in the state dir is lost (an earlier
//! recording and the hook log's earlier lines are checked byte for byte).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use collector::trace::{Decoder, EventFormat, HeaderPage};
use e2e::{collector_bin, hook_bin};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../collector/tests/data")
}

struct Case {
    kind: String,
    file: String,
    expect: String,
}

fn manifest() -> Vec<Case> {
    std::fs::read_to_string(corpus().join("MANIFEST"))
        .expect("tests/corpus/MANIFEST")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 3, "bad MANIFEST line {l:?}");
            Case { kind: f[0].into(), file: f[1].into(), expect: f[2].into() }
        })
        .collect()
}

/// Every file under `dir` with its bytes (symlinks as their target).
fn snapshot(dir: &Path, skip: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if d == skip {
            continue;
        }
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                out.insert(p.clone(), b"<dir>".to_vec());
                stack.push(p);
            } else if t.is_symlink() {
                out.insert(p.clone(), std::fs::read_link(&p).unwrap().into_os_string().into_encoded_bytes());
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    out
}

/// A scratch dir with a state dir that already holds a recording and a
/// hook log, so that losing either shows.
struct Scratch {
    dir: tempfile::TempDir,
    id: String,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("ofsa-corpus").tempdir().unwrap();
        let src = std::fs::read_dir(fixtures().join("correlation/state")).unwrap().next().unwrap().unwrap().path();
        let id = src.file_name().unwrap().to_string_lossy().into_owned();
        let dst = dir.path().join("state").join(&id);
        std::fs::create_dir_all(&dst).unwrap();
        for f in ["state.json", "summary.json", "seccomp.json"] {
            std::fs::copy(src.join(f), dst.join(f)).unwrap();
        }
        std::fs::write(dir.path().join("state/hook.log"), "earlier line\n").unwrap();
        std::fs::create_dir(dir.path().join("cwd")).unwrap();
        Scratch { dir, id }
    }
    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    fn outside(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        snapshot(self.dir.path(), &self.state())
    }
    fn state_files(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        snapshot(&self.state(), Path::new("/nonexistent"))
    }
}

/// Runs `cmd` in the scratch dir's `cwd`, stdin from `input`, bounded in
/// time, without CAP_SYS_ADMIN: should a case ever pass validation with the
/// trace annotation, the hook stops at its capability check instead of
/// arming a tracefs instance on this machine.
fn run(mut cmd: Command, scratch: &Scratch, input: Option<&Path>) -> Output {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe. Dropped from the bounding set, the
    // capability is not regained by root at exec.
    unsafe {
        cmd.pre_exec(|| {
            if nix::libc::prctl(nix::libc::PR_CAPBSET_DROP, 21 /* CAP_SYS_ADMIN */, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.current_dir(scratch.dir.path().join("cwd"))
        .env_remove("RUST_BACKTRACE")
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match input {
        Some(p) => cmd.stdin(std::fs::File::open(p).unwrap()),
        None => cmd.stdin(Stdio::null()),
    };
    let mut child = cmd.spawn().expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{cmd:?} did not finish in 30 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// The checks shared by every run; returns the problem, if any.
fn judge(what: &str, out: &Output, expect: &str, must_fail: bool) -> Result<(), String> {
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("panicked") || err.contains("stack backtrace") || out.status.code().is_none() {
        return Err(format!("{what}: crashed ({:?}): {err}", out.status));
    }
    if expect == "ok" {
        return match out.status.success() {
            true => Ok(()),
            false => Err(format!("{what}: expected success, got {:?}: {err}", out.status)),
        };
    }
    if must_fail && out.status.success() {
        return Err(format!("{what}: expected a failure, got success: {err}"));
    }
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.len() != 1 {
        return Err(format!("{what}: expected one line on stderr, got {}: {err}", lines.len()));
    }
    if !lines[0].contains(expect) {
        return Err(format!("{what}: expected {expect:?} in {:?}", lines[0]));
    }
    if lines[0].bytes().any(|b| b < 0x20 && b != b'\t') {
        return Err(format!("{what}: raw control character in {:?}", lines[0]));
    }
    Ok(())
}

fn hook_case(case: &Case, path: &Path, problems: &mut Vec<String>) {
    for stage in ["prestart", "poststop"] {
        for fail_closed in [true, false] {
            let scratch = Scratch::new();
            let (outside, before) = (scratch.outside(), scratch.state_files());
            let mut cmd = Command::new(hook_bin());
            cmd.args([stage, "--state-dir"]).arg(scratch.state()).arg("--collector=none");
            if fail_closed {
                cmd.arg("--fail-closed");
            }
            let out = run(cmd, &scratch, Some(path));
            let what = format!("hook {stage}{} < {}", if fail_closed { " --fail-closed" } else { "" }, case.file);
            let result = if fail_closed {
                judge(&what, &out, &case.expect, true)
            } else if out.status.success() {
                judge(&what, &out, &case.expect, false)
            } else {
                Err(format!("{what}: fail-open hook exited {:?}", out.status))
            };
            problems.extend(result.err());
            check_nothing_lost(&what, &scratch, &outside, &before, problems);
        }
    }
}

fn check_nothing_lost(
    what: &str,
    scratch: &Scratch,
    outside: &BTreeMap<PathBuf, Vec<u8>>,
    before: &BTreeMap<PathBuf, Vec<u8>>,
    problems: &mut Vec<String>,
) {
    if &scratch.outside() != outside {
        problems.push(format!("{what}: wrote outside the state dir"));
    }
    let after = scratch.state_files();
    for (p, bytes) in before {
        let kept = match after.get(p) {
            // The hook log may grow, never lose its earlier lines.
            Some(now) if p.ends_with("hook.log") => now.starts_with(bytes),
            Some(now) => now == bytes,
            None => false,
        };
        if !kept {
            problems.push(format!("{what}: {} was changed or lost", p.display()));
        }
    }
}

fn state_dir_case(case: &Case, path: &Path, problems: &mut Vec<String>) {
    let (target, _) = case.file.split_once("--").expect("state-dir case names are FILE--what");
    let scratch = Scratch::new();
    let folder = scratch.state().join(&scratch.id);
    if target == "state.json" {
        // "without summary": what report falls back to.
        std::fs::remove_file(folder.join("summary.json")).unwrap();
    }
    std::fs::copy(path, folder.join(target)).unwrap();
    let (outside, before) = (scratch.outside(), scratch.state_files());
    let mut report = Command::new(collector_bin());
    report.args(["report", &scratch.id[..12], "--state-dir"]).arg(scratch.state());
    let what = format!("collector report with {}", case.file);
    let out = run(report, &scratch, None);
    let result = if case.expect == "ok" && out.status.success() && !out.stderr.is_empty() {
        // Accepted with a warning: the warning names the file.
        let err = String::from_utf8_lossy(&out.stderr);
        match err.contains(target) && err.lines().count() == 1 {
            true => Ok(()),
            false => Err(format!("{what}: warning does not name {target} on one line: {err}")),
        }
    } else {
        judge(&what, &out, &case.expect, true)
    };
    problems.extend(result.err());
    let mut list = Command::new(collector_bin());
    list.args(["list", "--state-dir"]).arg(scratch.state());
    let out = run(list, &scratch, None);
    problems.extend(judge(&format!("collector list with {}", case.file), &out, "ok", false).err());
    check_nothing_lost(&what, &scratch, &outside, &before, problems);
}

fn collector_case(case: &Case, path: &Path, commands: &[&[&str]], problems: &mut Vec<String>) {
    for args in commands {
        let scratch = Scratch::new();
        let (outside, before) = (scratch.outside(), scratch.state_files());
        let mut cmd = Command::new(collector_bin());
        for a in *args {
            if *a == "FILE" {
                cmd.arg(path);
            } else {
                cmd.arg(a);
            }
        }
        let what = format!("collector {} ({})", args.join(" "), case.file);
        let out = run(cmd, &scratch, None);
        problems.extend(judge(&what, &out, &case.expect, true).err());
        check_nothing_lost(&what, &scratch, &outside, &before, problems);
    }
}

fn decoder() -> Decoder {
    let dir = fixtures().join("raw-6.18/formats");
    let header = HeaderPage::parse(&std::fs::read_to_string(dir.join("header_page")).unwrap()).unwrap();
    let mut formats = Vec::new();
    for system in std::fs::read_dir(&dir).unwrap().flatten().filter(|e| e.path().is_dir()) {
        let sys = system.file_name().into_string().unwrap();
        for f in std::fs::read_dir(system.path()).unwrap().flatten() {
            formats.push(EventFormat::parse(&sys, &std::fs::read_to_string(f.path()).unwrap()).unwrap());
        }
    }
    Decoder::new(header, &formats)
}

fn page_case(case: &Case, path: &Path, problems: &mut Vec<String>) {
    let bytes = std::fs::read(path).unwrap();
    let decoder = decoder();
    let result = std::panic::catch_unwind(|| {
        let mut parsed = Default::default();
        decoder.decode_pages(0, &bytes, &mut parsed)
    });
    let what = format!("trace page {}", case.file);
    match result {
        Err(_) => problems.push(format!("{what}: panicked")),
        Ok(read) => {
            if read.problems.iter().any(|p| p.lines().count() != 1) {
                problems.push(format!("{what}: a problem is not one line: {:?}", read.problems));
            }
            let malformed = !read.problems.is_empty();
            match case.expect.as_str() {
                "ok" if malformed => problems.push(format!("{what}: unexpected problems {:?}", read.problems)),
                "malformed" if !malformed => problems.push(format!("{what}: not reported as malformed")),
                _ => {}
            }
        }
    }
}

#[test]
fn every_corpus_case_fails_clearly_and_harmlessly() {
    let cases = manifest();
    assert!(cases.len() >= 50, "the corpus holds {} cases, fewer than 50", cases.len());
    let mut problems = Vec::new();
    for case in &cases {
        let path = corpus().join(&case.kind).join(&case.file);
        assert!(path.is_file(), "{} is in MANIFEST but missing", path.display());
        match case.kind.as_str() {
            "hook-stdin" => hook_case(case, &path, &mut problems),
            "state-dir" => state_dir_case(case, &path, &mut problems),
            "seccomp-json" => collector_case(
                case,
                &path,
                &[&["export", "FILE", "--format", "oci"], &["diff", "FILE", "FILE"], &["merge", "FILE", "--allow-incomplete"]],
                &mut problems,
            ),
            "checkpoint" => collector_case(
                case,
                &path,
                &[&["checkpoint", "show", "FILE"], &["checkpoint", "inspect", "--all", "FILE"]],
                &mut problems,
            ),
            "trace-pages" => page_case(case, &path, &mut problems),
            other => panic!("unknown corpus kind {other}"),
        }
    }
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
}

/// Too large to commit: a state document over the hook's 1 MiB limit.
#[test]
fn an_oversized_state_on_stdin_is_refused() {
    let scratch = Scratch::new();
    let input = scratch.dir.path().join("big.json");
    let big = format!("{{\"ociVersion\":\"1.0.2\",\"id\":\"x\",\"pad\":\"{}\"}}", "a".repeat(2 << 20));
    std::fs::write(&input, big).unwrap();
    let (outside, before) = (scratch.outside(), scratch.state_files());
    let mut cmd = Command::new(hook_bin());
    cmd.args(["prestart", "--fail-closed", "--state-dir"]).arg(scratch.state());
    let out = run(cmd, &scratch, Some(&input));
    let mut problems: Vec<String> = judge("hook < 2 MiB", &out, "larger than 1048576 bytes", true).err().into_iter().collect();
    // The input file itself is in the scratch dir: compare without it.
    let mut now = scratch.outside();
    now.retain(|p, _| p != &input);
    let mut was = outside;
    was.retain(|p, _| p != &input);
    if now != was {
        problems.push("wrote outside the state dir".into());
    }
    let after = scratch.state_files();
    problems.extend(before.iter().filter(|(p, b)| after.get(*p).is_none_or(|a| !a.starts_with(b))).map(|(p, _)| format!("{} lost", p.display())));
    assert!(problems.is_empty(), "{problems:?}");
}
