//! tracefs I/O, and nothing else.
//!
//! This is the only module that touches the tracing file system. It finds
//! (or mounts) tracefs, creates and removes our instances, and writes event,
//! option and pid settings. Every error names the file and the value.
//! Pseudo-files are opened for writing without create or truncate, and each
//! value goes in with a single `write_all`, as the kernel expects.

mod mountinfo;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

pub use mountinfo::find_tracefs;

/// Every instance we create starts with this, so nothing else's is touched.
pub const INSTANCE_PREFIX: &str = "oci_ftrace_";

/// The event systems whose triggers [`Instance::remove`] takes off one at a
/// time before the rmdir (the in-kernel quench, `record::quench`, sets them
/// on `syscalls`).
pub const TRIGGER_SYSTEMS: &[&str] = &["syscalls"];

/// The pause between two trigger removals, so that other writers waiting
/// for the kernel's `event_mutex` get it in between.
pub const TRIGGER_REMOVAL_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);

/// The lock file of [`WriterLock`].
pub const WRITER_LOCK: &str = "/run/oci-ftrace-syscall-analyzer/tracefs.lock";

/// Held shared by every [`WriterLock::acquire`] from before it waits
/// until it lets go: a trigger remover ([`WriterLock::acquire_yielding`])
/// that sees it held lets the lock go again.
pub const WRITER_INTENT: &str = "/run/oci-ftrace-syscall-analyzer/tracefs.intent";

/// A machine-wide lock between the two kinds of tracefs writers that meet
/// on the kernel's `event_mutex`: a trigger removal, which holds it for a
/// grace period (60-150 ms, seconds under an emulator), and an arming or
/// claim, a burst of short writes on a container's start path. Without it
/// each write of the burst could wait out a removal of its own. Removals
/// take it per trigger, and yield it to a start that waits
/// ([`WriterLock::acquire_yielding`]): flock is not fair, and a few
/// removers taking turns could otherwise keep a start waiting for
/// seconds. So a start waits for at most the one removal under way. Best
/// effort: if the lock file cannot be had, nothing is locked. Re-entrant
/// within a thread.
pub struct WriterLock {
    _file: Option<nix::fcntl::Flock<fs::File>>,
    _intent: Option<nix::fcntl::Flock<fs::File>>,
    outer: bool,
}

thread_local! {
    static WRITER_LOCK_HELD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Pids as `set_event_pid` takes them: one write, space separated.
fn pid_list(pids: &[i32]) -> String {
    pids.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(" ")
}

/// Opens (creating it) and flocks `path`; `None` if either fails.
pub fn lock_file(path: &str, how: nix::fcntl::FlockArg) -> Option<nix::fcntl::Flock<fs::File>> {
    let path = Path::new(path);
    if let Some(dir) = path.parent() {
        let _ = fs::create_dir_all(dir);
    }
    let file = OpenOptions::new().create(true).truncate(false).write(true).open(path).ok()?;
    nix::fcntl::Flock::lock(file, how).ok()
}

impl WriterLock {
    /// For a container's start path (and anything short): waits for the
    /// lock, announcing itself so removers yield.
    pub fn acquire() -> Self {
        if WRITER_LOCK_HELD.with(|h| h.get()) {
            return WriterLock { _file: None, _intent: None, outer: false };
        }
        let intent = lock_file(WRITER_INTENT, nix::fcntl::FlockArg::LockShared);
        let file = lock_file(WRITER_LOCK, nix::fcntl::FlockArg::LockExclusive);
        WRITER_LOCK_HELD.with(|h| h.set(true));
        WriterLock { _file: file, _intent: intent, outer: true }
    }

    /// For a trigger removal: takes the lock only when no start is
    /// waiting for it, pausing `pause` between tries.
    pub fn acquire_yielding(pause: std::time::Duration) -> Self {
        if WRITER_LOCK_HELD.with(|h| h.get()) {
            return WriterLock { _file: None, _intent: None, outer: false };
        }
        loop {
            let file = lock_file(WRITER_LOCK, nix::fcntl::FlockArg::LockExclusive);
            // Nobody holds the intent shared: no start waits (one that
            // comes now waits for this removal only).
            let waiting = file.is_some() && lock_file(WRITER_INTENT, nix::fcntl::FlockArg::LockExclusiveNonblock).is_none();
            if !waiting {
                WRITER_LOCK_HELD.with(|h| h.set(true));
                return WriterLock { _file: file, _intent: None, outer: true };
            }
            drop(file);
            std::thread::sleep(pause);
        }
    }
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        if self.outer {
            WRITER_LOCK_HELD.with(|h| h.set(false));
        }
    }
}

/// Where tracefs is mounted when we have to mount it ourselves.
pub const DEFAULT_MOUNT: &str = "/sys/kernel/tracing";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}: {cause}")]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("writing {value:?} to {path}: {cause}")]
    Write { path: PathBuf, value: String, cause: std::io::Error },
    #[error("mounting tracefs on {path}: {cause}")]
    Mount { path: PathBuf, cause: nix::Error },
    #[error("creating trace instance {path}: {cause}")]
    Create { path: PathBuf, cause: std::io::Error },
    #[error("trace instance {path} already exists")]
    Exists { path: PathBuf },
    #[error("removing trace instance {path}: {cause}")]
    Remove { path: PathBuf, cause: std::io::Error },
    #[error("instance name {name:?} is not ours (must start with {INSTANCE_PREFIX:?}, no '/')")]
    BadName { name: String },
    #[error("no such event {system}:{event} under {path}")]
    NoEvent { system: String, event: String, path: PathBuf },
}

pub type Result<T> = std::result::Result<T, Error>;

/// A tracefs mount point.
#[derive(Debug, Clone)]
pub struct TraceFs {
    root: PathBuf,
}

impl TraceFs {
    /// Uses a tracefs tree at `root` as is (tests point this at a fake tree).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        TraceFs { root: root.into() }
    }

    /// Finds tracefs through `/proc/self/mountinfo`; mounts it on
    /// [`DEFAULT_MOUNT`] if it is nowhere to be found.
    pub fn locate_or_mount() -> Result<Self> {
        let info_path = Path::new("/proc/self/mountinfo");
        let info = fs::read_to_string(info_path)
            .map_err(|cause| Error::Read { path: info_path.into(), cause })?;
        if let Some(root) = find_tracefs(&info) {
            return Ok(TraceFs { root });
        }
        let path = PathBuf::from(DEFAULT_MOUNT);
        tracing::info!(path = %path.display(), "tracefs not mounted; mounting it");
        nix::mount::mount(
            Some("nodev"),
            &path,
            Some("tracefs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|cause| Error::Mount { path: path.clone(), cause })?;
        Ok(TraceFs { root: path })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn instances_dir(&self) -> PathBuf {
        self.root.join("instances")
    }

    /// Creates `instances/<name>`. Fails if it already exists, so two
    /// owners never share an instance.
    pub fn create_instance(&self, name: &str) -> Result<Instance> {
        check_name(name)?;
        let path = self.instances_dir().join(name);
        match fs::create_dir(&path) {
            Ok(()) => Ok(Instance { name: name.to_string(), path }),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(Error::Exists { path }),
            Err(cause) => Err(Error::Create { path, cause }),
        }
    }

    /// An existing instance of ours, if it is there.
    pub fn open_instance(&self, name: &str) -> Result<Option<Instance>> {
        check_name(name)?;
        let path = self.instances_dir().join(name);
        Ok(path.is_dir().then(|| Instance { name: name.to_string(), path }))
    }

    /// Names of the events of one system, at the top level (the same for
    /// every instance).
    pub fn event_names(&self, system: &str) -> Result<Vec<String>> {
        event_names(&self.root, system)
    }

    /// Names of all instances carrying our prefix.
    pub fn our_instances(&self) -> Result<Vec<String>> {
        let dir = self.instances_dir();
        let entries = fs::read_dir(&dir).map_err(|cause| Error::Read { path: dir.clone(), cause })?;
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with(INSTANCE_PREFIX))
            .collect();
        names.sort();
        Ok(names)
    }
}

/// Events of `system` under `base/events`, those with a format file.
fn event_names(base: &Path, system: &str) -> Result<Vec<String>> {
    let dir = base.join("events").join(system);
    let entries = fs::read_dir(&dir).map_err(|cause| Error::Read { path: dir.clone(), cause })?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("format").exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

fn check_name(name: &str) -> Result<()> {
    if !name.starts_with(INSTANCE_PREFIX) || name.contains('/') || name.len() > 200 {
        return Err(Error::BadName { name: name.to_string() });
    }
    Ok(())
}

/// Per-CPU ring-buffer accounting from `per_cpu/cpuN/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CpuStats {
    pub cpu: u32,
    pub entries: u64,
    pub overrun: u64,
    pub commit_overrun: u64,
    pub dropped_events: u64,
    /// Events readers have taken out of the buffer since its last reset
    /// (absent from summaries written before it was kept).
    #[serde(default)]
    pub read_events: u64,
}

impl CpuStats {
    /// Events the buffer lost on this CPU, for whatever reason.
    pub fn lost(&self) -> u64 {
        self.overrun + self.commit_overrun + self.dropped_events
    }

    /// Parses the `stats` file text; unknown lines are ignored.
    pub fn parse(cpu: u32, text: &str) -> Self {
        let mut s = CpuStats { cpu, ..Default::default() };
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else { continue };
            let Ok(v) = value.trim().parse::<u64>() else { continue };
            match key.trim() {
                "entries" => s.entries = v,
                "overrun" => s.overrun = v,
                "commit overrun" => s.commit_overrun = v,
                "dropped events" => s.dropped_events = v,
                "read events" => s.read_events = v,
                _ => {}
            }
        }
        s
    }
}

/// Open `per_cpu/cpuN/stats` files, read again with each call (one
/// `pread` per CPU, no path lookups).
#[derive(Debug)]
pub struct CpuStatsFiles {
    files: Vec<(u32, fs::File)>,
}

impl CpuStatsFiles {
    /// The `entries` count of `cpu`'s buffer now (`None`: no such CPU or
    /// unreadable).
    pub fn entries(&self, cpu: u32) -> Option<u64> {
        use std::os::unix::fs::FileExt;
        let (_, file) = self.files.iter().find(|(c, _)| *c == cpu)?;
        let mut buf = [0u8; 512];
        let n = file.read_at(&mut buf, 0).ok()?;
        let text = std::str::from_utf8(&buf[..n]).ok()?;
        Some(CpuStats::parse(cpu, text).entries)
    }

    pub fn cpus(&self) -> impl Iterator<Item = u32> + '_ {
        self.files.iter().map(|(c, _)| *c)
    }
}

/// A write of [`Instance::add_event_pids_detached`], done by a child.
#[derive(Debug)]
pub struct DetachedWrite {
    child: nix::unistd::Pid,
    done: Option<bool>,
}

impl DetachedWrite {
    /// `Some(ok)` once the child has finished (and is reaped), `None`
    /// while its write is still blocked.
    pub fn finished(&mut self) -> Option<bool> {
        use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
        if self.done.is_none() {
            self.done = match waitpid(self.child, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => None,
                Ok(WaitStatus::Exited(_, code)) => Some(code == 0),
                Ok(_) => Some(false),
                // Reaped by someone else (a SIGCHLD-ignoring parent):
                // finished, outcome unknown; the caller checks the list.
                Err(_) => Some(false),
            };
        }
        self.done
    }

    pub fn pid(&self) -> i32 {
        self.child.as_raw()
    }
}

/// One of our trace instances. Plain handle: see [`InstanceGuard`] for
/// removal on every path.
#[derive(Debug, Clone)]
pub struct Instance {
    name: String,
    path: PathBuf,
}

impl Instance {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one value to a file of this instance.
    pub fn write(&self, rel: &str, value: &str) -> Result<()> {
        write_value(&self.path.join(rel), value)
    }

    /// Reads a whole (small) file of this instance.
    pub fn read_to_string(&self, rel: &str) -> Result<String> {
        let path = self.path.join(rel);
        fs::read_to_string(&path).map_err(|cause| Error::Read { path, cause })
    }

    pub fn set_option(&self, option: &str, on: bool) -> Result<()> {
        self.write(&format!("options/{option}"), if on { "1" } else { "0" })
    }

    pub fn set_buffer_size_kb(&self, kb: u64) -> Result<()> {
        self.write("buffer_size_kb", &kb.to_string())
    }

    /// False once recording stopped (an instance being removed, or one
    /// still being armed).
    pub fn is_recording(&self) -> bool {
        self.read_to_string("tracing_on").is_ok_and(|v| v.trim() == "1")
    }

    pub fn set_tracing_on(&self, on: bool) -> Result<()> {
        self.write("tracing_on", if on { "1" } else { "0" })
    }

    /// Adds these pids to `set_event_pid` (one write, space separated; a
    /// write without truncation keeps the pids already there).
    pub fn set_event_pids(&self, pids: &[i32]) -> Result<()> {
        let value = pid_list(pids);
        self.write("set_event_pid", &value)
    }

    /// Makes these pids the whole of `set_event_pid`: truncated at the open,
    /// then written through the same file. (Between the two no list is set,
    /// for microseconds; a caller that cares switches events on after.)
    pub fn replace_event_pids(&self, pids: &[i32]) -> Result<()> {
        let path = self.path.join("set_event_pid");
        let value = pid_list(pids);
        let err = |cause| Error::Write { path: path.clone(), value: value.clone(), cause };
        let mut f = OpenOptions::new().write(true).truncate(true).open(&path).map_err(err)?;
        f.write_all(value.as_bytes()).map_err(err)
    }

    /// Adds these pids to a `set_event_pid` that already holds a list,
    /// from a forked child, and returns while the child's write may still
    /// be blocked. The kernel makes the new list live at once, then waits
    /// out grace periods (30-40 ms) before the write returns, to free the
    /// old list; a caller on a container's start path must not wait for
    /// that, but must know when the list is live: see `record::pool`'s
    /// canary. The child keeps no other file of ours open and writes
    /// nothing to our stdio.
    pub fn add_event_pids_detached(&self, pids: &[i32]) -> Result<DetachedWrite> {
        use std::os::fd::AsRawFd;
        let path = self.path.join("set_event_pid");
        let value = pid_list(pids);
        let err = |cause| Error::Write { path: path.clone(), value: value.clone(), cause };
        let file = OpenOptions::new().write(true).open(&path).map_err(err)?;
        let null = OpenOptions::new().read(true).write(true).open("/dev/null").map_err(err)?;
        let (fd, null_fd) = (file.as_raw_fd(), null.as_raw_fd());
        // SAFETY: the child calls only async-signal-safe functions (setsid,
        // dup2, close_range, write, _exit) on memory prepared before the
        // fork, so other threads' locks do not matter to it.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => unsafe {
                use nix::libc;
                libc::setsid();
                for target in 0..3 {
                    libc::dup2(null_fd, target);
                }
                let (low, high) = if fd < null_fd { (fd, null_fd) } else { (null_fd, fd) };
                libc::syscall(libc::SYS_close_range, 3u32, (low - 1) as u32, 0u32);
                libc::syscall(libc::SYS_close_range, (low + 1) as u32, (high - 1) as u32, 0u32);
                libc::syscall(libc::SYS_close_range, (high + 1) as u32, u32::MAX, 0u32);
                let bytes = value.as_bytes();
                let n = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
                libc::_exit(if n == bytes.len() as isize { 0 } else { 1 })
            },
            Ok(nix::unistd::ForkResult::Parent { child }) => Ok(DetachedWrite { child, done: None }),
            Err(e) => Err(err(std::io::Error::from(e))),
        }
    }

    pub fn event_pids(&self) -> Result<Vec<i32>> {
        let text = self.read_to_string("set_event_pid")?;
        Ok(text.split_whitespace().filter_map(|p| p.parse().ok()).collect())
    }

    /// Enables or disables `events/<system>/<event>`.
    pub fn set_event(&self, system: &str, event: &str, on: bool) -> Result<()> {
        let rel = format!("events/{system}/{event}/enable");
        if !self.path.join(&rel).exists() {
            return Err(Error::NoEvent {
                system: system.to_string(),
                event: event.to_string(),
                path: self.path.join("events"),
            });
        }
        self.write(&rel, if on { "1" } else { "0" })
    }

    /// Turns every event of this instance off (truncating `set_event`).
    pub fn disable_all_events(&self) -> Result<()> {
        let path = self.path.join("set_event");
        OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .map(drop)
            .map_err(|cause| Error::Write { path, value: String::new(), cause })
    }

    /// Opens every CPU's `trace_pipe_raw` (consuming, binary pages),
    /// non-blocking so a read round never waits.
    pub fn open_raw_pipes(&self) -> Result<Vec<(u32, fs::File)>> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut out = Vec::new();
        for (cpu, dir) in self.cpu_dirs()? {
            let path = dir.join("trace_pipe_raw");
            let file = OpenOptions::new()
                .read(true)
                .custom_flags(nix::libc::O_NONBLOCK)
                .open(&path)
                .map_err(|cause| Error::Read { path, cause })?;
            out.push((cpu, file));
        }
        Ok(out)
    }

    /// `per_cpu/cpuN` directories, by CPU number.
    fn cpu_dirs(&self) -> Result<Vec<(u32, PathBuf)>> {
        let dir = self.path.join("per_cpu");
        let entries = fs::read_dir(&dir).map_err(|cause| Error::Read { path: dir.clone(), cause })?;
        let mut out: Vec<(u32, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let cpu = e.file_name().to_str()?.strip_prefix("cpu")?.parse().ok()?;
                Some((cpu, e.path()))
            })
            .collect();
        out.sort_by_key(|(cpu, _)| *cpu);
        Ok(out)
    }

    /// Names of the events of one system (`events/<system>/*/`).
    pub fn event_names(&self, system: &str) -> Result<Vec<String>> {
        event_names(&self.path, system)
    }

    /// The `format` text of one event, and `events/header_page`.
    pub fn event_format(&self, system: &str, event: &str) -> Result<String> {
        self.read_to_string(&format!("events/{system}/{event}/format"))
    }

    pub fn header_page(&self) -> Result<String> {
        self.read_to_string("events/header_page")
    }

    /// Switches every event of a system on or off with one write.
    pub fn set_system(&self, system: &str, on: bool) -> Result<()> {
        self.write(&format!("events/{system}/enable"), if on { "1" } else { "0" })
    }

    /// Adds one trigger to `events/<system>/<event>/trigger`.
    pub fn add_trigger(&self, system: &str, event: &str, trigger: &str) -> Result<()> {
        self.write(&format!("events/{system}/{event}/trigger"), trigger)
    }

    /// The triggers set on one event, as the kernel lists them.
    pub fn triggers(&self, system: &str, event: &str) -> Result<Vec<String>> {
        let text = self.read_to_string(&format!("events/{system}/{event}/trigger"))?;
        Ok(text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).map(str::to_string).collect())
    }

    /// Removes every trigger on the events of `system`, one at a time with
    /// `pause` between them, and returns how many went.
    ///
    /// Why one at a time: the kernel (before 7.0) frees each trigger after
    /// an RCU grace period while it holds `event_mutex`, 60-150 ms each
    /// here. An rmdir frees them all in one go and would hold the mutex,
    /// which every other instance's writes need (a starting container's
    /// arming among them), for all of them at once.
    pub fn clear_triggers(&self, system: &str, pause: std::time::Duration) -> usize {
        let Ok(events) = self.event_names(system) else { return 0 };
        let mut removed = 0;
        for event in events {
            removed += self.remove_triggers(system, &event, pause);
        }
        removed
    }

    /// Removes the triggers of one event, each under the [`WriterLock`]
    /// and followed by `pause` without it, so that an arming waiting for
    /// the lock gets it (a lock released and taken again at once would
    /// starve it). Returns how many went (see [`Instance::clear_triggers`]).
    ///
    /// The trigger file is read under the lock too: on 6.1 a read of a
    /// trigger file racing another process's trigger removal or rmdir of
    /// the same instance oopsed in `trigger_start` with `event_mutex`
    /// held, which hangs every tracefs user until a reboot (seen with two
    /// gcs removing one instance).
    pub fn remove_triggers(&self, system: &str, event: &str, pause: std::time::Duration) -> usize {
        let mut removed = 0;
        // Bounded by the first count: a removal the kernel takes without
        // removing anything must not loop.
        let mut tries: Option<usize> = None;
        loop {
            let lock = WriterLock::acquire_yielding(pause);
            if !self.path.exists() {
                return removed;
            }
            let Ok(triggers) = self.triggers(system, event) else { return removed };
            let left = tries.get_or_insert(triggers.len());
            if *left == 0 {
                return removed;
            }
            *left -= 1;
            let Some(command) = triggers.iter().find_map(|t| removal_command(t)) else { return removed };
            match self.add_trigger(system, event, &command) {
                Ok(()) => removed += 1,
                Err(e) => {
                    tracing::debug!(error = %e, "could not remove a trigger");
                    return removed;
                }
            }
            drop(lock);
            std::thread::sleep(pause);
        }
    }

    /// Each CPU's `stats` file, open, for [`CpuStatsFiles::entries`].
    pub fn open_cpu_stats(&self) -> Result<CpuStatsFiles> {
        let mut files = Vec::new();
        for (cpu, dir) in self.cpu_dirs()? {
            let path = dir.join("stats");
            let file = fs::File::open(&path).map_err(|cause| Error::Read { path, cause })?;
            files.push((cpu, file));
        }
        Ok(CpuStatsFiles { files })
    }

    /// Ring-buffer accounting for every CPU of this instance.
    pub fn cpu_stats(&self) -> Result<Vec<CpuStats>> {
        let mut out = Vec::new();
        for (cpu, dir) in self.cpu_dirs()? {
            let path = dir.join("stats");
            let text = fs::read_to_string(&path).map_err(|cause| Error::Read { path, cause })?;
            out.push(CpuStats::parse(cpu, &text));
        }
        Ok(out)
    }

    /// Removes the directory, its triggers first, one at a time (see
    /// [`Instance::clear_triggers`]). The kernel's rmdir itself stops recording,
    /// clears the pid filter and turns every event off; doing those first
    /// from here would only add RCU grace periods (each clear of
    /// `set_event_pid` waits out one more, 40-90 ms). Only if the rmdir
    /// fails (EBUSY: someone holds a file of it open) are the steps done
    /// one by one, so what is left behind at least costs nothing, and the
    /// rmdir tried again.
    pub fn remove(self) -> Result<()> {
        // Off first: one cheap write, and it tells others this instance is
        // on its way out ([`Instance::is_recording`]).
        let _ = self.set_tracing_on(false);
        for system in TRIGGER_SYSTEMS {
            self.clear_triggers(system, TRIGGER_REMOVAL_PAUSE);
        }
        // Under the lock, as every trigger read and write of ours is (see
        // `remove_triggers`).
        let _lock = WriterLock::acquire_yielding(TRIGGER_REMOVAL_PAUSE);
        match fs::remove_dir(&self.path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => tracing::debug!(path = %self.path.display(), error = %e, "rmdir failed; switching the instance off first"),
        }
        for step in [self.set_tracing_on(false), self.disable_all_events(), self.write("set_event_pid", "")] {
            if let Err(e) = step {
                tracing::debug!(error = %e, "instance teardown step failed");
            }
        }
        match fs::remove_dir(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(cause) => Err(Error::Remove { path: self.path.clone(), cause }),
        }
    }
}

/// Removes its instance when dropped, unless [`InstanceGuard::keep`] was
/// called. Used while arming, so a failure half-way leaks nothing.
pub struct InstanceGuard {
    instance: Option<Instance>,
}

impl InstanceGuard {
    pub fn new(instance: Instance) -> Self {
        InstanceGuard { instance: Some(instance) }
    }

    pub fn instance(&self) -> &Instance {
        // Only `keep` and `drop` take it out, and both consume the guard.
        self.instance.as_ref().expect("guard holds its instance until consumed")
    }

    /// Hands the instance over; it stays armed after the guard is gone.
    pub fn keep(mut self) -> Instance {
        self.instance.take().expect("guard holds its instance until consumed")
    }
}

impl Drop for InstanceGuard {
    fn drop(&mut self) {
        if let Some(instance) = self.instance.take() {
            let path = instance.path().to_path_buf();
            if let Err(e) = instance.remove() {
                tracing::error!(path = %path.display(), error = %e, "could not remove trace instance");
            }
        }
    }
}

/// Writes a value in place: no create, no truncate, one `write_all`.
/// The `!command` that removes a trigger as the kernel lists it, e.g.
/// `disable_event:syscalls:sys_enter_read:unlimited if comm != "x"` gives
/// `!disable_event:syscalls:sys_enter_read`: the kernel matches on the
/// command and its target, not on the count or the filter.
fn removal_command(listed: &str) -> Option<String> {
    let head = listed.split_whitespace().next()?;
    let mut parts = head.split(':');
    let command = parts.next()?;
    let keep = match command {
        "enable_event" | "disable_event" => {
            let system = parts.next()?;
            let event = parts.next()?;
            format!("{command}:{system}:{event}")
        }
        "traceon" | "traceoff" | "stacktrace" | "snapshot" => command.to_string(),
        _ => return None,
    };
    Some(format!("!{keep}"))
}

fn write_value(path: &Path, value: &str) -> Result<()> {
    let err = |cause| Error::Write { path: path.to_path_buf(), value: value.to_string(), cause };
    if value.is_empty() {
        // Files like set_event_pid are cleared by opening with O_TRUNC.
        return OpenOptions::new().write(true).truncate(true).open(path).map(drop).map_err(err);
    }
    let mut f = OpenOptions::new().write(true).open(path).map_err(err)?;
    f.write_all(value.as_bytes()).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removal_commands_keep_command_and_target_only() {
        assert_eq!(
            removal_command("disable_event:syscalls:sys_enter_read:unlimited if comm != \"runc:?2:INIT?\"").as_deref(),
            Some("!disable_event:syscalls:sys_enter_read")
        );
        assert_eq!(removal_command("traceoff:5 if common_pid > 0").as_deref(), Some("!traceoff"));
        assert_eq!(removal_command("hist:keys=pid").as_deref(), None);
        assert_eq!(removal_command("").as_deref(), None);
    }

    #[test]
    fn parses_stats() {
        let text = "entries: 335\noverrun: 7\ncommit overrun: 1\nbytes: 22628\n\
                    oldest event ts:   183.633634\nnow ts:   185.036124\ndropped events: 2\nread events: 41\n";
        let s = CpuStats::parse(1, text);
        assert_eq!(s, CpuStats { cpu: 1, entries: 335, overrun: 7, commit_overrun: 1, dropped_events: 2, read_events: 41 });
        assert_eq!(s.lost(), 10);
    }

    #[test]
    fn stats_saved_before_read_events_was_kept_still_load() {
        let old = r#"{"cpu":1,"entries":3,"overrun":0,"commit_overrun":0,"dropped_events":0}"#;
        let s: CpuStats = serde_json::from_str(old).unwrap();
        assert_eq!(s, CpuStats { cpu: 1, entries: 3, ..Default::default() });
    }

    #[test]
    fn refuses_foreign_instance_names() {
        let fs = TraceFs::at("/nonexistent");
        assert!(matches!(fs.create_instance("other"), Err(Error::BadName { .. })));
        assert!(matches!(fs.create_instance("oci_ftrace_../x"), Err(Error::BadName { .. })));
    }

    #[test]
    fn guard_removes_instance_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("instances")).unwrap();
        let tfs = TraceFs::at(dir.path());
        let inst = tfs.create_instance("oci_ftrace_t1").unwrap();
        let path = inst.path().to_path_buf();
        // A fake instance has none of the control files: teardown steps fail
        // but the directory still goes.
        drop(InstanceGuard::new(inst));
        assert!(!path.exists());
        assert!(tfs.create_instance("oci_ftrace_t1").is_ok());
        assert!(matches!(tfs.create_instance("oci_ftrace_t1"), Err(Error::Exists { .. })));
        assert_eq!(tfs.our_instances().unwrap(), vec!["oci_ftrace_t1".to_string()]);
    }
}
