//! Finding tracefs in `/proc/self/mountinfo` by file-system type.

use std::path::PathBuf;

/// The tracefs root named by mountinfo text: a `tracefs` mount, or else a
/// `debugfs` mount's `tracing/` directory.
pub fn find_tracefs(mountinfo: &str) -> Option<PathBuf> {
    let mut debugfs = None;
    for line in mountinfo.lines() {
        // Fields: id parent major:minor root mountpoint opts [optional...] - fstype source superopts
        let mut fields = line.split(' ');
        let Some(mount_point) = fields.nth(4) else { continue };
        let Some(fstype) = fields.skip_while(|f| *f != "-").nth(1) else { continue };
        let mount_point = unescape(mount_point);
        match fstype {
            "tracefs" => return Some(PathBuf::from(mount_point)),
            "debugfs" if debugfs.is_none() => debugfs = Some(PathBuf::from(mount_point).join("tracing")),
            _ => {}
        }
    }
    debugfs
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let v = (bytes[i + 1] - b'0') as u32 * 64 + (bytes[i + 2] - b'0') as u32 * 8 + (bytes[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefers_tracefs_over_debugfs() {
        let info = "22 1 0:20 / /sys/kernel/debug rw,relatime shared:7 - debugfs debugfs rw\n\
                    40 22 0:12 / /sys/kernel/tracing rw,relatime shared:9 - tracefs nodev rw\n";
        assert_eq!(find_tracefs(info), Some(PathBuf::from("/sys/kernel/tracing")));
    }

    #[test]
    fn falls_back_to_debugfs_and_handles_absence() {
        let info = "22 1 0:20 / /sys/kernel/debug rw,relatime - debugfs debugfs rw\n";
        assert_eq!(find_tracefs(info), Some(PathBuf::from("/sys/kernel/debug/tracing")));
        assert_eq!(find_tracefs("21 1 0:19 / /proc rw - proc proc rw\ngarbage\n"), None);
    }

    #[test]
    fn unescapes_mount_points() {
        let info = "40 22 0:12 / /mnt/my\\040trace rw - tracefs nodev rw\n";
        assert_eq!(find_tracefs(info), Some(PathBuf::from("/mnt/my trace")));
    }
}
