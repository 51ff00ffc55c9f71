//! The one place where outcomes and errors become process exit codes.
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | success (detect: a framework or language was detected) |
//! | 1 | negative result (detect: unknown; doctor: something required is missing) |
//! | 2 | error: bad input, usage, an operation that failed |
//! | 3 | the Docker engine is unreachable (not running, no socket, DOCKER_HOST down; also doctor) |
//! | 4 | permission denied on the Docker socket (also doctor) |
//! | 5 | no such container |
//! | 6 | inject rolled back: the instrumented container did not become healthy |
use std::process::ExitCode;

use crate::docker::DockerError;

pub const OK: u8 = 0;
pub const NEGATIVE: u8 = 1;
pub const ERROR: u8 = 2;
pub const DOCKER_UNREACHABLE: u8 = 3;
pub const DOCKER_PERMISSION: u8 = 4;
pub const NO_SUCH_CONTAINER: u8 = 5;
pub const ROLLED_BACK: u8 = 6;

/// What a command reports when it finished without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Negative,
    RolledBack,
    /// doctor: the report is printed and the engine is unreachable (3).
    DockerUnreachable,
    /// doctor: the report is printed and the socket refused us (4).
    DockerPermission,
}

impl Outcome {
    pub fn code(self) -> u8 {
        match self {
            Outcome::Success => OK,
            Outcome::Negative => NEGATIVE,
            Outcome::RolledBack => ROLLED_BACK,
            Outcome::DockerUnreachable => DOCKER_UNREACHABLE,
            Outcome::DockerPermission => DOCKER_PERMISSION,
        }
    }
}

/// Maps an error to its exit code by looking for a known cause anywhere in its chain.
pub fn code_for(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(d) = cause.downcast_ref::<DockerError>() {
            return match d {
                DockerError::Unreachable { .. } => DOCKER_UNREACHABLE,
                DockerError::PermissionDenied { .. } => DOCKER_PERMISSION,
                DockerError::NoSuchContainer(_) => NO_SUCH_CONTAINER,
                DockerError::Api { .. } => ERROR,
            };
        }
    }
    ERROR
}

/// The kind of failure an exit code stands for, as `--json` error objects name it.
pub fn kind(code: u8) -> &'static str {
    match code {
        DOCKER_UNREACHABLE => "docker_unreachable",
        DOCKER_PERMISSION => "docker_permission",
        NO_SUCH_CONTAINER => "no_such_container",
        ROLLED_BACK => "rolled_back",
        _ => "error",
    }
}

/// What to do about an error: a `hint:` line the message carries, else one per exit code.
pub fn hint_for(message: &str, code: u8) -> Option<String> {
    if let Some((_, h)) = message.split_once("hint: ") {
        return Some(h.trim().to_string());
    }
    match code {
        DOCKER_UNREACHABLE => Some("start the Docker engine; `obs-stack doctor` says what is wrong".into()),
        DOCKER_PERMISSION => {
            Some("run as root or add your user to the docker group; `obs-stack doctor` checks it".into())
        }
        NO_SUCH_CONTAINER => Some("`docker ps -a` lists the containers".into()),
        _ => None,
    }
}

/// `--json`: an error is a JSON object on stdout too (the human text stays on stderr), so a
/// script never reads an empty stdout: `{"error": {"code", "kind", "message", "hint"}}`.
pub fn print_json_error(code: u8, kind: &str, message: &str, hint: Option<&str>) {
    let v = serde_json::json!({
        "error": {"code": code, "kind": kind, "message": message, "hint": hint}
    });
    println!("{v}");
}

pub fn report_json(err: &anyhow::Error, code: u8) {
    let message = format!("{err:#}");
    let hint = hint_for(&message, code);
    let message = message
        .split("\n  hint: ")
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    print_json_error(code, kind(code), &message, hint.as_deref());
}

pub fn exit(code: u8) -> ExitCode {
    ExitCode::from(code)
}
