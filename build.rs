//! Rebuilds when an embedded data file changes: `include_dir!` alone does not tell Cargo to
//! watch `signatures/` and `templates/`, so an edited signature could ship stale.
fn main() {
    println!("cargo:rerun-if-changed=signatures");
    println!("cargo:rerun-if-changed=templates");
}
