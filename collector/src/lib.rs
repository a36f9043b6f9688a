//! oci-ftrace-syscall-analyzer: turn what a container really does into a
//! least-privilege seccomp profile.
//!
//! The pipeline reads top to bottom:
//! [`tracefs`] (kernel I/O) → [`record`] (arm, stop, drain) → [`trace`]
//! (pure parsing) → [`profile`] (seccomp JSON) and [`checkpoint`] (CRIU
//! archives) → [`report`] (the only stdout writer). [`container`] holds the
//! validated hook input and the state directory; [`lifecycle`] strings the
//! stages together for the hook's prestart and poststop. [`catalog`] is the
//! state directory as users manage it (list, load, merge inputs).

pub mod catalog;
pub mod checkpoint;
pub mod container;
pub mod lifecycle;
pub mod profile;
pub mod record;
pub mod report;
pub mod trace;
pub mod tracefs;
