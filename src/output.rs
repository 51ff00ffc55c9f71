//! Output for people and for programs: colour decisions (honouring NO_COLOR), JSON printing,
//! logging setup, and progress bars that only appear on a terminal and never under --json.
use std::io::IsTerminal;

use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ColorChoice {
    #[default]
    Auto,
    Always,
    Never,
}

/// Global presentation settings shared by every command.
#[derive(Debug, Clone)]
pub struct Style {
    pub json: bool,
    pub color: bool,
    pub verbose: u8,
    pub quiet: bool,
}

impl Style {
    pub fn new(json: bool, color: ColorChoice, verbose: u8, quiet: bool) -> Self {
        let no_color_env = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let color = match color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => !no_color_env && !json && std::io::stdout().is_terminal(),
        };
        Style {
            json,
            color,
            verbose,
            quiet,
        }
    }

    /// Wraps `text` in an ANSI colour when colour is on.
    pub fn paint(&self, code: Paint, text: &str) -> String {
        if !self.color {
            return text.to_string();
        }
        let c = match code {
            Paint::Green => "32",
            Paint::Yellow => "33",
            Paint::Red => "31",
            Paint::Bold => "1",
            Paint::Dim => "2",
        };
        format!("\x1b[{c}m{text}\x1b[0m")
    }

    /// A progress bar on stderr, hidden unless stderr is a terminal and output is not JSON.
    pub fn progress(&self, len: u64, what: &str) -> ProgressBar {
        let pb = ProgressBar::new(len);
        if self.json || self.quiet || !std::io::stderr().is_terminal() {
            pb.set_draw_target(ProgressDrawTarget::hidden());
        } else if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len}") {
            pb.set_style(style.progress_chars("=> "));
        }
        pb.set_message(what.to_string());
        pb
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Paint {
    Green,
    Yellow,
    Red,
    Bold,
    Dim,
}

/// Logging to stderr: -q errors only, default warnings, -v info, -vv debug, -vvv trace;
/// `OBS_STACK_LOG` (an env-filter directive) overrides.
pub fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("OBS_STACK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("obs_stack={level}")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .try_init();
}

/// Prints a value as pretty JSON on stdout. A closed pipe (`--json | head`) is not an error.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    print_stdout(&format!("{text}\n"))
}

/// Writes to stdout without panicking when the reader has gone away.
pub fn print_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
