//! Policy: from typed trace records to a seccomp profile.
//!
//! [`window`] decides which records count, [`episode`] keeps CRIU's
//! checkpoint calls out of them, [`analysis`] aggregates them, [`names`]
//! maps numbers to seccomp names, and [`seccomp`] writes the JSON, with
//! [`enosys`] deciding which unseen calls answer ENOSYS. [`file`] reads
//! profiles back, [`merge`] unites them, [`diff`] compares them and
//! [`export`] writes the forms Kubernetes and runtimes take.

pub mod analysis;
pub mod diff;
pub mod enosys;
pub mod episode;
pub mod export;
pub mod file;
pub mod merge;
pub mod names;
pub mod seccomp;
pub mod window;

pub use analysis::{analyze, analyze_runtime, Analysis, Process};
pub use analysis::Aggregator;
pub use episode::Episode;
pub use window::{Rule, Window, RUNTIME_MARKERS};
