//! `obs-stack init`: being built (see the issue tracker); refuses clearly until then.
use clap::Args;

use crate::cli::GlobalArgs;
use crate::exit::Outcome;

#[derive(Debug, Clone, Args)]
pub struct InitArgs {}

pub async fn run(_global: &GlobalArgs, _args: InitArgs) -> anyhow::Result<Outcome> {
    anyhow::bail!("`obs-stack init` is not available in this build yet")
}
