//! `collector checkpoint …` (owned by the checkpoint work; placeholder).

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("checkpoint: not implemented yet")
}
