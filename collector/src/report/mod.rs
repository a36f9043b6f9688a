//! Report model rendering (the only module that writes to stdout).
