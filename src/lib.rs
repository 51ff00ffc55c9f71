//! obs-stack: make any app running in Docker observable with zero code changes.
//!
//! Layout: a pure core (signature scoring, injection planning, stack rendering) over plain
//! data, one narrow Docker edge (`docker`), and the command layer (`cli`, `cmd_*`) that ties
//! them together and maps errors to exit codes in one place (`exit`).
pub mod agents;
pub mod analysis;
pub mod assets;
pub mod cli;
pub mod client;
pub mod cmd;
pub mod detect;
pub mod docker;
pub mod doctor;
pub mod exit;
pub mod init;
pub mod inject;
pub mod output;
pub mod serve;
pub mod tarball;
pub mod up;
pub mod views;
