//! `obs-stack detect`: being built (see the issue tracker); refuses clearly until then.
use clap::Args;

use crate::cli::GlobalArgs;
use crate::exit::Outcome;

#[derive(Debug, Clone, Args)]
pub struct DetectArgs {}

pub async fn run(_global: &GlobalArgs, _args: DetectArgs) -> anyhow::Result<Outcome> {
    anyhow::bail!("`obs-stack detect` is not available in this build yet")
}
