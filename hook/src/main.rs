//! `oci-ftrace-hook`: the OCI runtime hook.
//!
//! `prestart` arms a per-container ftrace instance; `poststop` turns what it
//! recorded into a seccomp profile and removes it. The hook reads and
//! validates the state on stdin, then calls the library under a time limit.
//! It fails open by default: its own errors are logged and the container
//! starts anyway (`--fail-closed` makes them fatal).

use std::fs::OpenOptions;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use collector::container::{input::MAX_STATE_BYTES, parse_state, DEFAULT_STATE_DIR};
use collector::lifecycle::{self, Settings, DEFAULT_MAX_INSTANCES};
use collector::container::StateDir;
use collector::record::instance_name;
use collector::tracefs::TraceFs;
use tracing_subscriber::prelude::*;

#[derive(Parser, Debug)]
#[command(name = "oci-ftrace-hook", version, about = "OCI hook: per-container ftrace → seccomp profile")]
struct Cli {
    /// Which OCI hook stage this is.
    stage: Stage,
    /// Where state.json, seccomp.json, summary.json and hook.log go.
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Per-CPU ring buffer size of the instance, in KiB (default: the
    /// kernel's default in profile mode, 4096 in full mode).
    #[arg(long, value_parser = clap::value_parser!(u64).range(64..=1_048_576))]
    buffer_size_kb: Option<u64>,
    /// At most this many containers are traced at once; more run untraced
    /// (each armed instance slows every syscall on the machine).
    #[arg(long, default_value_t = DEFAULT_MAX_INSTANCES)]
    max_instances: usize,
    /// How long (seconds) a trace slot waits for the next traced container
    /// before it is torn down. A free slot still costs every syscall on the
    /// machine a tracepoint probe; its teardown takes seconds of the
    /// kernel's event lock (one grace period per syscall).
    #[arg(long, default_value_t = collector::record::pool::DEFAULT_LINGER.as_secs())]
    slot_linger_secs: u64,
    /// The `collector` binary that runs the live recorder (default: the one
    /// next to this hook, else /usr/local/bin/collector). `none` disables
    /// the recorder: poststop then reads the ring buffer once.
    #[arg(long)]
    collector: Option<PathBuf>,
    /// Exit non-zero on the hook's own errors (default: log and exit 0).
    #[arg(long)]
    fail_closed: bool,
    /// Give up after this long (milliseconds); defaults: prestart 3000,
    /// poststop 60000.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// A directory poststop may look for the container's checkpoint in
    /// (repeatable); the checkpoint-dir annotation may name it or one below.
    #[arg(long = "checkpoint-root", value_name = "DIR", value_parser = absolute_dir)]
    checkpoint_roots: Vec<PathBuf>,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, default_value = "info")]
    log: String,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Stage {
    Prestart,
    Poststop,
}

/// The container whose instance this run may leave behind if it is cut
/// short.
static PENDING: OnceLock<Mutex<Option<String>>> = OnceLock::new();
/// RUNNING, then FINISHED (the work is done) or ABANDONED (a guardian is
/// cleaning up and will exit the process): whichever comes first wins.
static PHASE: AtomicU8 = AtomicU8::new(RUNNING);
const RUNNING: u8 = 0;
const FINISHED: u8 = 1;
const ABANDONED: u8 = 2;

fn main() -> ExitCode {
    // First of all, before any thread exists to take one with the default
    // action (which ends the process without cleaning up): the guardian
    // thread takes them from here on (start_guardians).
    let signals = block_stop_signals();
    let fail_closed_requested = std::env::args().any(|a| a == "--fail-closed");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let first = e.to_string();
            eprintln!("oci-ftrace-hook: bad arguments: {}", first.lines().next().unwrap_or("").trim_start_matches("error: "));
            return exit_code(fail_closed_requested);
        }
    };
    init_logging(&cli);
    let fail_closed = cli.fail_closed;
    let limit = start_guardians(&cli, signals);
    let result = run(&cli, Instant::now() + ready_budget(limit));
    if PHASE.compare_exchange(RUNNING, FINISHED, Ordering::SeqCst, Ordering::SeqCst).is_err() {
        // A guardian is removing the instance; returning now would end the
        // process half-way through that. It exits the process when done.
        loop {
            std::thread::park();
        }
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(stage = ?cli.stage, "{e:#}");
            exit_code(fail_closed)
        }
    }
}

fn exit_code(fail_closed: bool) -> ExitCode {
    if fail_closed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// What the hook's fallback needs after the wait for the recorder (one
/// tracefs write: 9 ms measured under an emulator), with room to spare.
const AFTER_READY_WAIT: Duration = Duration::from_millis(250);

/// How long prestart may wait for the recorder: most of the time limit.
fn ready_budget(limit: Duration) -> Duration {
    limit.saturating_sub(AFTER_READY_WAIT).max(limit / 2)
}

fn run(cli: &Cli, ready_deadline: Instant) -> anyhow::Result<()> {
    let stdin = read_stdin()?;
    let state = parse_state(&stdin)?;
    if let Err(why) = lifecycle::wants_tracing(state.annotations().as_ref()) {
        tracing::debug!(id = %state.id(), "not traced: {why}");
        return Ok(());
    }
    if !caps::has_cap(None, caps::CapSet::Effective, caps::Capability::CAP_SYS_ADMIN).unwrap_or(false) {
        bail!("CAP_SYS_ADMIN is needed to use tracefs; run the hook as root");
    }
    if let Some(p) = PENDING.get() {
        if let Ok(mut slot) = p.lock() {
            *slot = Some(state.id().to_string());
        }
    }
    let mut settings = Settings::new(&cli.state_dir);
    settings.buffer_size_kb = cli.buffer_size_kb;
    settings.max_instances = cli.max_instances;
    settings.slot_linger = std::time::Duration::from_secs(cli.slot_linger_secs);
    settings.collector = collector_path(cli.collector.as_deref());
    settings.ready_deadline = Some(ready_deadline);
    settings.checkpoint_roots = cli.checkpoint_roots.clone();
    match cli.stage {
        Stage::Prestart => {
            lifecycle::prestart(&settings, &state).with_context(|| format!("prestart of container {}", state.id()))?;
        }
        Stage::Poststop => {
            let summary = lifecycle::poststop(&settings, &state)
                .with_context(|| format!("poststop of container {}", state.id()))?;
            let Some(summary) = summary else { return Ok(()) };
            tracing::info!(
                id = %summary.id,
                profile = %summary.profile.display(),
                syscalls = summary.analysis.syscalls.len(),
                complete = summary.complete,
                "done"
            );
        }
    }
    Ok(())
}

/// `--checkpoint-root` must be absolute: the runtime's cwd is no anchor.
fn absolute_dir(s: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(s);
    if p.is_absolute() {
        Ok(p)
    } else {
        Err(format!("{s:?} is not an absolute path"))
    }
}

/// The recorder binary: as configured, else `collector` beside the hook,
/// else the default install path.
fn collector_path(configured: Option<&std::path::Path>) -> Option<PathBuf> {
    if let Some(p) = configured {
        return (p != std::path::Path::new("none")).then(|| p.to_path_buf());
    }
    let beside = std::env::current_exe().ok().and_then(|e| e.parent().map(|d| d.join("collector")));
    beside.into_iter().chain([PathBuf::from("/usr/local/bin/collector")]).find(|p| p.is_file())
}

/// Reads at most MAX_STATE_BYTES + 1 so an endless stdin cannot grow us.
fn read_stdin() -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::io::stdin()
        .lock()
        .take(MAX_STATE_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .context("reading the container state from stdin")?;
    Ok(buf)
}

/// A watchdog for the time limit and a waiter for SIGTERM/SIGINT/SIGHUP.
/// Either removes the pending instance and exits, so the runtime is never
/// held up and nothing is left armed. Returns the time limit.
/// Blocks SIGTERM, SIGINT and SIGHUP in this (still the only) thread, so
/// every thread started later has them blocked too; `None` if that failed.
fn block_stop_signals() -> Option<nix::sys::signal::SigSet> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(s);
    }
    set.thread_block().ok().map(|()| set)
}

fn start_guardians(cli: &Cli, signals: Option<nix::sys::signal::SigSet>) -> Duration {
    let _ = PENDING.set(Mutex::new(None));
    let fail_closed = cli.fail_closed;
    let stage = cli.stage;
    let state_dir = cli.state_dir.clone();
    let limit = Duration::from_millis(cli.timeout_ms.unwrap_or(match cli.stage {
        // Within hooks.d's 5 s with a second to give up in: a cold burst
        // queues up to the cap's worth of new slots (50 at ~30-40 ms each
        // on a busy 2-core node took just over 2 s).
        Stage::Prestart => 3_000,
        Stage::Poststop => 60_000,
    }));
    let dir = state_dir.clone();
    let collector = collector_path(cli.collector.as_deref());
    let for_watchdog = collector.clone();
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        abandon(stage, &dir, &format!("timed out after {} ms", limit.as_millis()), fail_closed, for_watchdog.as_deref());
    });

    if let Some(set) = signals {
        std::thread::spawn(move || {
            if let Ok(sig) = set.wait() {
                abandon(stage, &state_dir, &format!("got {sig}"), true, collector.as_deref());
            }
        });
    }
    limit
}

fn abandon(stage: Stage, state_dir: &std::path::Path, why: &str, fail_closed: bool, collector: Option<&std::path::Path>) {
    if PHASE.compare_exchange(RUNNING, ABANDONED, Ordering::SeqCst, Ordering::SeqCst).is_err() {
        return;
    }
    tracing::error!("{why}; removing this container's trace instance and giving up");
    let pending = PENDING.get().and_then(|p| p.lock().ok().and_then(|s| s.clone()));
    if let Some(id) = pending {
        let name = instance_name(&id);
        let removed = match stage {
            // A recorder prestart started must go too, or the instance
            // stays busy: see lifecycle::abandon_prestart.
            Stage::Prestart => TraceFs::locate_or_mount().map_err(anyhow::Error::from).and_then(|tfs| {
                lifecycle::abandon_prestart(&tfs, &StateDir::new(state_dir), &id, &format!("prestart gave up: {why}"), collector)
                    .map_err(anyhow::Error::from)
            }),
            Stage::Poststop => TraceFs::locate_or_mount()
                .and_then(|tfs| tfs.open_instance(&name))
                .and_then(|inst| inst.map(|i| i.remove()).transpose())
                .map(|_| ())
                .map_err(anyhow::Error::from),
        };
        if let Err(e) = removed {
            tracing::error!(instance = %name, error = %e, "could not remove instance");
        }
    }
    std::process::exit(if fail_closed { 1 } else { 0 });
}

/// Logs go to stderr (the runtime keeps them) and to `<state-dir>/hook.log`.
fn init_logging(cli: &Cli) {
    let filter = || tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| "info".into());
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false).with_filter(filter());
    let file = std::fs::create_dir_all(&cli.state_dir)
        .and_then(|()| OpenOptions::new().create(true).append(true).open(cli.state_dir.join("hook.log")))
        .ok()
        .map(|f| {
            tracing_subscriber::fmt::layer()
                .with_writer(Mutex::new(f))
                .with_ansi(false)
                .with_target(false)
                .with_filter(filter())
        });
    let _ = tracing_subscriber::registry().with(stderr).with(file).try_init();
}
