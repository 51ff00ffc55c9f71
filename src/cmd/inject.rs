//! `obs-stack inject`: being built (see the issue tracker); refuses clearly until then.
use clap::Args;

use crate::cli::GlobalArgs;
use crate::exit::Outcome;

#[derive(Debug, Clone, Args)]
pub struct InjectArgs {}

pub async fn run(_global: &GlobalArgs, _args: InjectArgs) -> anyhow::Result<Outcome> {
    anyhow::bail!("`obs-stack inject` is not available in this build yet")
}
