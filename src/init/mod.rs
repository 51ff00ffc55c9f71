//! `obs-stack init`'s pure core: read the user's compose file ([`compose`]), combine it with
//! detections and the data files ([`data`]) into a [`plan::Plan`], render the minijinja
//! templates ([`render`]) and decide which files to write without clobbering user edits
//! ([`manifest`]). No Docker and no writes here; `cmd::init` does the I/O.
pub mod compose;
pub mod data;
pub mod manifest;
pub mod plan;
pub mod render;

pub use plan::{InitOptions, Plan, ServiceInfo};
