//! The obs-injector image (compose/injector/Dockerfile) builds from the binary under test and
//! works from inside a container: with the Docker socket mounted read-only it detects a real
//! fixture app through the API alone (no host /proc), as it will in a generated stack.
mod common;

use common::{Guard, TestContainer, docker, docker_ok, unique_name};

#[test]
fn injector_image_detects_a_fixture_from_inside_a_container() {
    if !common::docker_tests_enabled("injector_image_detects_a_fixture_from_inside_a_container") {
        return;
    }
    let root = common::repo_root();
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_obs-stack"));
    let Ok(rel) = bin.strip_prefix(&root) else {
        eprintln!(
            "skipping: the test binary {} is outside the build context",
            bin.display()
        );
        return;
    };
    let image = format!("obs-lab/injector-test:{}", common::run_id());
    let mut guard = Guard::new(); // dropped last: after the app container
    let build = docker(&[
        "build",
        "-q",
        "-f",
        "compose/injector/Dockerfile",
        "--build-arg",
        "BASE=obs-lab/base:bookworm",
        "--build-arg",
        &format!("BIN={}", rel.display()),
        "-t",
        &image,
        root.to_str().unwrap(),
    ]);
    assert!(
        build.status.success(),
        "build failed: {}",
        String::from_utf8_lossy(&build.stderr)
    );
    let net = unique_name("injnet");
    docker_ok(&[
        "network",
        "create",
        "--label",
        &format!("{}={}", common::TEST_LABEL, common::run_id()),
        &net,
    ]);
    guard.network(&net);
    let app = TestContainer::run(
        "inj-flask",
        "obs-lab/fixture-py-flask:latest",
        &["--network", &net],
        &[],
    );
    std::thread::sleep(std::time::Duration::from_secs(3));
    let out = docker(&[
        "run",
        "--rm",
        "--label",
        &format!("{}={}", common::TEST_LABEL, common::run_id()),
        "--network",
        &net,
        "-v",
        "/var/run/docker.sock:/var/run/docker.sock:ro",
        &image,
        "detect",
        &app.name,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let _ = docker(&["rmi", "-f", &image]);
    assert!(
        out.status.success() && stdout.contains("Framework=Flask Language=Python"),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
