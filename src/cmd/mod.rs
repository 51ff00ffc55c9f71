//! One module per subcommand: each owns its clap `Args` and a `run(global, args)`.
pub mod detect;
pub mod doctor;
pub mod init;
pub mod inject;
pub mod serve;
pub mod up;
pub mod views;
