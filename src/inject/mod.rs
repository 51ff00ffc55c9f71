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
/// obs-stack's `register.js` for Node.js (runs the image's entry point, leaner in prod).
pub const NODE_HOOK: &str = include_str!("../../compose/agents/node-hook/register.js");

/// The file obs-stack adds to a runtime's agent volume (under the runtime's `guard_dir`):
/// (file name, contents).
pub fn agent_hook(runtime: &str) -> Option<(&'static str, &'static str)> {
    match runtime {
        "python" => Some(("sitecustomize.py", PYTHON_GUARD)),
        "node" => Some(("register.js", NODE_HOOK)),
        _ => None,
    }
}
