//! One container as the hook sees it: the validated OCI state from stdin,
//! and its folder in the state directory (`state.json`, `seccomp.json`,
//! `summary.json`).

pub mod held;
pub mod input;
pub mod store;

pub use input::{live_pid, parse_state, validate_id};
pub use store::{Recording, StateDir, Summary, DEFAULT_STATE_DIR};
