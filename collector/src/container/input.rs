//! The OCI state a runtime hands a hook on stdin, validated.

use oci_spec::runtime::State;

/// Longest id we accept (bytes); runtimes use 64 hex digits.
pub const MAX_ID_LEN: usize = 128;
/// Largest state document we read from stdin.
pub const MAX_STATE_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("container state on stdin is not valid JSON: {0}")]
    Json(serde_json::Error),
    #[error("container state on stdin is not a JSON object")]
    NotObject,
    #[error("container state on stdin is larger than {MAX_STATE_BYTES} bytes")]
    TooLarge,
    #[error("container id is empty")]
    EmptyId,
    #[error("container id is {len} bytes, more than {MAX_ID_LEN}")]
    LongId { len: usize },
    #[error("container id {id:?} has a character outside [A-Za-z0-9_.-]")]
    BadIdChar { id: String },
    #[error("container id {id:?} is not allowed")]
    DotId { id: String },
    #[error("container state has no pid (prestart needs the host pid of the init task)")]
    NoPid,
    #[error("container pid {pid} is not a positive number")]
    BadPid { pid: i32 },
    #[error("container pid {pid} is not alive")]
    DeadPid { pid: i32 },
}

/// Parses the state JSON. It only checks what every stage needs: a sane id.
pub fn parse_state(bytes: &[u8]) -> Result<State, Error> {
    if bytes.len() > MAX_STATE_BYTES {
        return Err(Error::TooLarge);
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(Error::Json)?;
    if !value.is_object() {
        return Err(Error::NotObject);
    }
    let state: State = serde_json::from_value(value).map_err(Error::Json)?;
    validate_id(state.id())?;
    Ok(state)
}

/// An id becomes a directory and an instance name, so it must be a plain,
/// short, single path component.
pub fn validate_id(id: &str) -> Result<(), Error> {
    if id.is_empty() {
        return Err(Error::EmptyId);
    }
    if id.len() > MAX_ID_LEN {
        return Err(Error::LongId { len: id.len() });
    }
    if !id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) {
        return Err(Error::BadIdChar { id: id.chars().take(MAX_ID_LEN).collect() });
    }
    if id == "." || id == ".." {
        return Err(Error::DotId { id: id.to_string() });
    }
    Ok(())
}

/// The host pid of the init task, which prestart requires to be alive.
pub fn live_pid(state: &State) -> Result<i32, Error> {
    let pid = state.pid().ok_or(Error::NoPid)?;
    if pid <= 0 {
        return Err(Error::BadPid { pid });
    }
    // Signal 0 checks existence; EPERM would still mean it exists.
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) | Err(nix::errno::Errno::EPERM) => Ok(pid),
        Err(_) => Err(Error::DeadPid { pid }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(json: &str) -> Result<State, Error> {
        parse_state(json.as_bytes())
    }

    #[test]
    fn accepts_a_podman_state() {
        let s = state(r#"{"ociVersion":"1.0.2-dev","id":"657369b5a49c","status":"creating","pid":1,
                          "bundle":"/b","annotations":{"oci-ftrace-syscall-analyzer/trace":"true"}}"#)
            .unwrap();
        assert_eq!(s.id(), "657369b5a49c");
        assert_eq!(live_pid(&s).unwrap(), 1);
    }

    #[test]
    fn rejects_bad_ids() {
        let long = "a".repeat(129);
        for (id, want) in [
            ("", "empty"),
            (long.as_str(), "more than 128"),
            ("../etc", "outside"),
            ("a/b", "outside"),
            ("a b", "outside"),
            ("..", "not allowed"),
            ("é", "outside"),
        ] {
            let json = serde_json::json!({"ociVersion": "1.0", "id": id, "status": "creating", "pid": 1, "bundle": "/"});
            let err = parse_state(json.to_string().as_bytes()).unwrap_err().to_string();
            assert!(err.contains(want), "{id:?}: {err}");
        }
        assert!(validate_id(&"a".repeat(128)).is_ok());
        assert!(validate_id("ctr_1.2-3").is_ok());
    }

    #[test]
    fn rejects_bad_json_and_pids() {
        for bad in ["", "{", "[]", "null", "{\"id\": 5}", "\u{0}", "{\"id\":\"x\",\"pid\":\"one\"}"] {
            let err = state(bad).unwrap_err();
            assert!(matches!(err, Error::Json(_) | Error::NotObject), "{bad:?}: {err}");
            assert!(!err.to_string().contains('\n'));
        }
        let no_pid = state(r#"{"ociVersion":"1","id":"x","status":"stopped","bundle":"/"}"#).unwrap();
        assert!(matches!(live_pid(&no_pid), Err(Error::NoPid)));
        let neg = state(r#"{"ociVersion":"1","id":"x","status":"creating","pid":-4,"bundle":"/"}"#).unwrap();
        assert!(matches!(live_pid(&neg), Err(Error::BadPid { pid: -4 })));
        // pid_max is at most 2^22, so this one cannot exist.
        let dead = state(r#"{"ociVersion":"1","id":"x","status":"creating","pid":2147483647,"bundle":"/"}"#).unwrap();
        assert!(matches!(live_pid(&dead), Err(Error::DeadPid { .. })));
    }
}
