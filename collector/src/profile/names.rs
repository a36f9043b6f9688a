//! Syscall numbers to seccomp names, for the architecture this binary runs on.
//!
//! The table comes from the `syscalls` crate; its names are the kernel's
//! `__NR_*` names, which are what libseccomp and the containers/common
//! profile format use.

use syscalls::Sysno;

/// The seccomp name of native syscall `nr`, or `None` if the table has no
/// such number (e.g. `-1`, or a call newer than the table).
pub fn name_of(nr: i64) -> Option<&'static str> {
    let nr = usize::try_from(nr).ok()?;
    Sysno::new(nr).map(|s| s.name())
}

/// The native syscall number of `name`.
pub fn number_of(name: &str) -> Option<i64> {
    name.parse::<Sysno>().ok().map(|s| i64::from(s.id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn maps_x86_64_numbers() {
        for (nr, name) in [(0, "read"), (1, "write"), (59, "execve"), (157, "prctl"), (231, "exit_group"),
                           (262, "newfstatat"), (166, "umount2"), (317, "seccomp"), (435, "clone3")] {
            assert_eq!(name_of(nr), Some(name), "{nr}");
            assert_eq!(number_of(name), Some(nr));
        }
    }

    #[test]
    fn unknown_numbers_have_no_name() {
        assert_eq!(name_of(-1), None);
        assert_eq!(name_of(100_000), None);
        assert_eq!(number_of("no_such_call"), None);
    }
}
