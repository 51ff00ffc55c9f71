//! `inject`: recreate containers with OpenTelemetry auto-instrumentation, keep the original
//! until the new one is proven, roll back otherwise, and revert on request. The agent catalog
//! (`templates/agents.yaml`) and env computation are shared with `init`: [`crate::agents`].
//!
//! - `plan`: the pure planning core (inspect + runtime + options → create spec, env diff).
//! - `state`: the saved original spec and the crash-safety journal.
//! - `apply`: the recreate engine (Docker I/O through `crate::docker`).
pub mod apply;
pub mod plan;
pub mod state;

/// obs-stack's guarded `sitecustomize.py` for Python, written into the agent volume.
pub const PYTHON_GUARD: &str = include_str!("../../compose/agents/python-guard/sitecustomize.py");
