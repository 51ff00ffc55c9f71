//! Command-line surface: clap derive for the `obs-stack` binary, argv[0] dispatch so the same
//! binary answers as `obs-detect` and `obs-inject`, global flags shared by every command, and
//! the single place where a command's result becomes an exit code.
use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::cmd;
use crate::exit;
use crate::output::{ColorChoice, Style, init_logging};

/// Make any app running in Docker observable with zero code changes.
#[derive(Debug, Parser)]
#[command(name = "obs-stack", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts, in the same spelling.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// More output (-v evidence and info logs, -vv debug logs)
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Machine-readable JSON on stdout
    #[arg(long, global = true)]
    pub json: bool,
    /// Colour: auto (a terminal and no NO_COLOR), always or never
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

impl GlobalArgs {
    pub fn style(&self) -> Style {
        Style::new(self.json, self.color, self.verbose, self.quiet)
    }
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process; boxing buys nothing
pub enum Command {
    /// Start the backend, instrument the project's containers and watch the rest: one command
    Up(cmd::up::UpArgs),
    /// Undo `up`: revert every container it instrumented, stop the backend (data kept)
    Down(cmd::up::DownArgs),
    /// Each service: requests/s, p50/p95/p99, errors, top and slowest routes, latest error
    Status(cmd::views::StatusArgs),
    /// `status`, refreshing in place (q quits)
    Top(cmd::views::TopArgs),
    /// Recent traces; `traces ID` shows one as a waterfall
    Traces(cmd::views::TracesArgs),
    /// Error groups, newest first; `errors ID` shows the latest stack trace
    Errors(cmd::views::ErrorsArgs),
    /// Replay real GET traffic to a service in a short burst and report what its traces show
    Analyze(cmd::views::AnalyzeArgs),
    /// Detect the language, framework and version of containers (also `obs-detect`)
    Detect(cmd::detect::DetectArgs),
    /// Recreate containers with OpenTelemetry auto-instrumentation (also `obs-inject`)
    Inject(cmd::inject::InjectArgs),
    /// Write obs-stack.yml: collector, metrics, traces, logs, dashboards and alerts
    Init(cmd::init::InitArgs),
    /// Check that this machine has what obs-stack needs, and explain how to fix what is missing
    Doctor(cmd::doctor::DoctorArgs),
    /// Run an embedded OpenTelemetry backend: OTLP in, RED/traces/errors out as a JSON API
    Serve(cmd::serve::ServeArgs),
    /// Observe containers without an agent (runs in the watcher container `up` starts)
    #[command(hide = true)]
    Watch(cmd::up::WatchArgs),
    /// Exit 0 when URL answers 2xx (the backend image's healthcheck)
    #[command(hide = true)]
    Healthcheck(cmd::up::HealthArgs),
}

/// The personality a binary name selects: `obs-detect` is `obs-stack detect`, and so on.
/// `OBS_STACK_ARGV0` overrides the name, for testing the dispatch without symlinks.
pub fn personality(argv0: Option<&OsString>) -> Option<&'static str> {
    let name = std::env::var_os("OBS_STACK_ARGV0").or_else(|| argv0.cloned())?;
    let stem = Path::new(&name).file_name()?.to_string_lossy().to_string();
    let stem = stem.strip_suffix(".exe").unwrap_or(&stem);
    match stem {
        "obs-detect" => Some("detect"),
        "obs-inject" => Some("inject"),
        _ => None,
    }
}

/// argv with the subcommand inserted for a personality binary (`obs-detect web` →
/// `obs-stack detect web`), and which personality it was.
pub fn effective_args(args: Vec<OsString>) -> (Vec<OsString>, Option<&'static str>) {
    let sub = personality(args.first());
    match sub {
        Some(sub) => {
            let mut out = Vec::with_capacity(args.len() + 1);
            out.push(OsString::from("obs-stack"));
            out.push(OsString::from(sub));
            out.extend(args.into_iter().skip(1));
            (out, Some(sub))
        }
        None => (args, None),
    }
}

pub fn parse(args: Vec<OsString>) -> Result<Cli, clap::Error> {
    let (args, sub) = effective_args(args);
    let Some(sub) = sub else {
        return Cli::try_parse_from(args);
    };
    // A personality binary is its subcommand as a top-level command of its own name, so
    // help, usage and --version say `obs-detect`, not `obs-stack detect`.
    let name: &'static str = if sub == "detect" {
        "obs-detect"
    } else {
        "obs-inject"
    };
    let leaf = Cli::command()
        .find_subcommand(sub)
        .cloned()
        .ok_or_else(|| Cli::command().error(clap::error::ErrorKind::InvalidSubcommand, sub))?;
    let about = leaf.get_about().cloned();
    let leaf = GlobalArgs::augment_args(leaf.name(name).bin_name(name))
        .about(about.unwrap_or_default())
        .version(env!("CARGO_PKG_VERSION"));
    let matches = leaf.try_get_matches_from(args.into_iter().skip(1))?;
    let global = GlobalArgs::from_arg_matches(&matches)?;
    let command = match sub {
        "detect" => Command::Detect(cmd::detect::DetectArgs::from_arg_matches(&matches)?),
        _ => Command::Inject(cmd::inject::InjectArgs::from_arg_matches(&matches)?),
    };
    Ok(Cli { global, command })
}

pub fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let wants_json = args.iter().skip(1).any(|a| a == "--json");
    let cli = match parse(args) {
        Ok(cli) => cli,
        Err(e) => {
            // clap: help/version are successes, usage errors exit 2 (our generic error code).
            if e.use_stderr() && wants_json {
                let text = e.render().to_string();
                let message = text
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim_start_matches("error: ");
                exit::print_json_error(exit::ERROR, "usage", message, Some("see --help"));
                let _ = e.print();
                return exit::exit(exit::ERROR);
            }
            let _ = e.print();
            return exit::exit(if e.use_stderr() { exit::ERROR } else { exit::OK });
        }
    };
    init_logging(cli.global.verbose, cli.global.quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::exit(exit::ERROR);
        }
    };
    let g_json = cli.global.json;
    let result = runtime.block_on(run(cli));
    match result {
        Ok(outcome) => exit::exit(outcome.code()),
        Err(err) => {
            let code = exit::code_for(&err);
            eprintln!("error: {err:#}");
            if g_json {
                exit::report_json(&err, code);
            }
            exit::exit(code)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<exit::Outcome> {
    let g = cli.global;
    match cli.command {
        Command::Detect(a) => cmd::detect::run(&g, a).await,
        Command::Inject(a) => cmd::inject::run(&g, a).await,
        Command::Init(a) => cmd::init::run(&g, a).await,
        Command::Doctor(a) => cmd::doctor::run(&g, a).await,
        Command::Serve(a) => cmd::serve::run(&g, a).await,
        Command::Up(a) => cmd::up::up(&g, a).await,
        Command::Down(a) => cmd::up::down(&g, a).await,
        Command::Status(a) => cmd::views::status(&g, a).await,
        Command::Top(a) => cmd::views::top(&g, a).await,
        Command::Traces(a) => cmd::views::traces(&g, a).await,
        Command::Errors(a) => cmd::views::errors(&g, a).await,
        Command::Analyze(a) => cmd::views::analyze(&g, a).await,
        Command::Watch(a) => cmd::up::watch(a).await,
        Command::Healthcheck(a) => cmd::up::healthcheck(a).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn personality_binaries_map_to_subcommands() {
        let (args, sub) = effective_args(os(&["/usr/local/bin/obs-detect", "web"]));
        assert_eq!(sub, Some("detect"));
        assert_eq!(args, os(&["obs-stack", "detect", "web"]));
        let (_, sub) = effective_args(os(&["obs-inject"]));
        assert_eq!(sub, Some("inject"));
        let (args, sub) = effective_args(os(&["obs-stack", "init"]));
        assert_eq!(sub, None);
        assert_eq!(args, os(&["obs-stack", "init"]));
    }

    #[test]
    fn global_flags_parse_after_the_subcommand() {
        let cli = parse(os(&["obs-stack", "doctor", "--json", "-vv", "--color", "never"])).unwrap();
        assert!(cli.global.json);
        assert_eq!(cli.global.verbose, 2);
        assert_eq!(cli.global.color, ColorChoice::Never);
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
