//! `obs-stack doctor`: being built (see the issue tracker); refuses clearly until then.
use clap::Args;

use crate::cli::GlobalArgs;
use crate::exit::Outcome;

#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {}

pub async fn run(_global: &GlobalArgs, _args: DoctorArgs) -> anyhow::Result<Outcome> {
    anyhow::bail!("`obs-stack doctor` is not available in this build yet")
}
