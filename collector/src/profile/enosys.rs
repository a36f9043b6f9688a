//! Calls that answer ENOSYS, not EPERM, when a profile did not see them.
//!
//! A C library or runtime tries some newer calls first and falls back to an
//! older one only when the kernel says the call does not exist (ENOSYS).
//! Such a newer call is often missing from a recording for a reason that
//! does not hold where the profile is used: the recording-time filter
//! answered it with ENOSYS (seccomp runs before the syscall tracepoint, so
//! the trace never saw it), or the profile now runs on a newer libc or
//! kernel. If the generated profile answered it with the default EPERM,
//! the program would fail instead of falling back (glibc's
//! `pthread_create` gives "can't start new thread" on `clone3` = EPERM).
//!
//! So each call in [`FALLBACKS`] that the profile does not allow gets
//! `SCMP_ACT_ERRNO` with `errnoRet` 38 (ENOSYS): the program takes the
//! older path, which the profile allows if the recording saw it. Every
//! other unseen call keeps the default EPERM. The list is data: one entry
//! per call, with the older call it supersedes and who is known to fall
//! back. Calls with no number on the native architecture are skipped (the
//! profiles cover the native ABI only, so the 32-bit `*_time64` calls
//! glibc and musl fall back from are not listed).

use std::collections::BTreeSet;

/// ENOSYS on Linux (all architectures this project builds for).
pub const ENOSYS: u32 = 38;

/// A newer call whose users fall back to an older one on ENOSYS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fallback {
    /// The seccomp name of the newer call.
    pub name: &'static str,
    /// What its users do instead.
    pub instead: &'static str,
    /// Who is known to fall back (library and version, or program).
    pub who: &'static str,
}

/// The calls answered with ENOSYS when unseen, sorted by name.
pub const FALLBACKS: &[Fallback] = &[
    // Linux 5.3. pthread_create and posix_spawn try clone3 first and fall
    // back to clone only on ENOSYS; this is the case that motivated the list.
    Fallback { name: "clone3", instead: "clone", who: "glibc >= 2.34 pthread_create(), posix_spawn(); systemd" },
    // Linux 5.9. The close_range() wrapper has no fallback, but closefrom()
    // and posix_spawn's close-all do; so do Python's os.closerange and systemd.
    Fallback { name: "close_range", instead: "close each fd (from /proc/self/fd)", who: "glibc >= 2.34 closefrom(); Python; systemd" },
    // Linux 5.5 (copy_file_range between files): Go's io.Copy and
    // coreutils cp treat ENOSYS as "not supported here" and copy by hand.
    Fallback { name: "copy_file_range", instead: "read + write", who: "Go os.File.ReadFrom; coreutils >= 9 cp" },
    // Linux 5.11. sd-event (systemd and everything linking libsystemd)
    // uses it for precise timeouts and falls back on ENOSYS.
    Fallback { name: "epoll_pwait2", instead: "epoll_wait / epoll_pwait", who: "systemd sd-event" },
    // Linux 5.8. faccessat() with flags tries faccessat2 and emulates with
    // faccessat + fstatat on ENOSYS; Go's syscall.Faccessat does the same.
    Fallback { name: "faccessat2", instead: "faccessat", who: "glibc >= 2.33 faccessat(); Go >= 1.20 syscall.Faccessat" },
    // Linux 6.6. fchmodat(AT_SYMLINK_NOFOLLOW) tries fchmodat2 and
    // emulates through an O_PATH descriptor on ENOSYS.
    Fallback { name: "fchmodat2", instead: "fchmodat (via O_PATH)", who: "glibc >= 2.39 fchmodat()" },
    // Linux 5.16. Wine/Proton's fsync wait path; falls back to futex.
    Fallback { name: "futex_waitv", instead: "futex", who: "Wine / Proton" },
    // Linux 3.17. arc4random and getentropy callers fall back to
    // /dev/urandom on ENOSYS; so do Go's crypto/rand and Python's os.urandom.
    Fallback { name: "getrandom", instead: "read /dev/urandom", who: "glibc >= 2.36 arc4random(); Go crypto/rand; Python" },
    // Linux 4.4. mlock2(addr, len, 0) falls back to mlock on ENOSYS.
    Fallback { name: "mlock2", instead: "mlock", who: "glibc >= 2.27 mlock2()" },
    // Linux 5.6. Path resolution that must stay inside a root tries
    // openat2(RESOLVE_*) and walks the path itself on ENOSYS.
    Fallback { name: "openat2", instead: "openat (component by component)", who: "runc / filepath-securejoin; systemd chase()" },
    // Linux 5.3. Go's os package uses pidfds when pidfd_open works and
    // otherwise keeps using pids; systemd likewise.
    Fallback { name: "pidfd_open", instead: "kill / wait4 on the pid", who: "Go >= 1.23 os.StartProcess/os.FindProcess; systemd" },
    // Linux 5.1. Used only once pidfd_open worked; listed so a newer Go on
    // an older profile does not get EPERM from Process.Signal.
    Fallback { name: "pidfd_send_signal", instead: "kill", who: "Go >= 1.23 os.Process.Signal; systemd" },
    // Linux 4.6. preadv2(..., flags=0) falls back to preadv on ENOSYS.
    Fallback { name: "preadv2", instead: "preadv", who: "glibc preadv2()" },
    // Linux 4.6. pwritev2(..., flags=0) falls back to pwritev on ENOSYS.
    Fallback { name: "pwritev2", instead: "pwritev", who: "glibc pwritev2()" },
    // Linux 3.15. mv's RENAME_NOREPLACE path falls back to renameat.
    Fallback { name: "renameat2", instead: "renameat", who: "gnulib renameatu() (coreutils mv)" },
    // Linux 4.18. glibc registers rseq at every thread start and goes on
    // without it when the call fails; ENOSYS is what an older kernel says.
    Fallback { name: "rseq", instead: "(nothing: sched_getcpu uses getcpu)", who: "glibc >= 2.35 thread start" },
    // Linux 4.11. The statx() wrapper emulates with fstatat on ENOSYS.
    Fallback { name: "statx", instead: "newfstatat", who: "glibc >= 2.28 statx(); coreutils ls/stat" },
];

/// The calls of [`FALLBACKS`] that `allowed` lacks and that exist on the
/// native architecture: these get ENOSYS.
pub fn unseen(allowed: &BTreeSet<String>) -> BTreeSet<String> {
    FALLBACKS
        .iter()
        .map(|f| f.name)
        .filter(|name| !allowed.contains(*name) && super::names::number_of(name).is_some())
        .map(String::from)
        .collect()
}

/// The entry for `name`, if it is one.
pub fn lookup(name: &str) -> Option<&'static Fallback> {
    FALLBACKS.iter().find(|f| f.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_is_sorted_unique_and_documented() {
        for pair in FALLBACKS.windows(2) {
            assert!(pair[0].name < pair[1].name, "{} before {}", pair[0].name, pair[1].name);
        }
        for f in FALLBACKS {
            assert!(!f.who.is_empty() && !f.instead.is_empty(), "{}", f.name);
        }
        assert!(lookup("clone3").is_some());
        assert!(lookup("clone").is_none());
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn every_entry_is_a_native_call() {
        for f in FALLBACKS {
            assert!(super::super::names::number_of(f.name).is_some(), "{}", f.name);
        }
    }

    #[test]
    fn seen_calls_stay_allowed_and_older_calls_are_not_listed() {
        let allowed: BTreeSet<String> = ["clone", "statx", "read"].into_iter().map(String::from).collect();
        let enosys = unseen(&allowed);
        assert!(enosys.contains("clone3"));
        assert!(!enosys.contains("statx"), "seen, so allowed");
        assert!(!enosys.contains("clone") && !enosys.contains("read") && !enosys.contains("mkdir"));
    }
}
