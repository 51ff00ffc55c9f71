//! The Docker edge against a real engine: the failures users hit most often become distinct,
//! explained errors (and so distinct exit codes).
mod common;

use obs_stack::docker::{DockerError, Engine};
use obs_stack::exit;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn missing_socket_is_unreachable_with_a_hint() {
    let err = rt()
        .block_on(Engine::connect_to("unix:///nonexistent/obs-stack-test.sock"))
        .expect_err("connecting to a missing socket must fail");
    assert!(matches!(err, DockerError::Unreachable { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("hint"), "{text}");
    assert_eq!(exit::code_for(&anyhow::Error::new(err)), exit::DOCKER_UNREACHABLE);
}

#[test]
fn refused_tcp_port_is_unreachable() {
    // Bind then drop a listener so the port is (almost certainly) closed on 127.0.0.1.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = rt()
        .block_on(Engine::connect_to(&format!("tcp://127.0.0.1:{port}")))
        .expect_err("connecting to a closed port must fail");
    assert!(matches!(err, DockerError::Unreachable { .. }), "{err:?}");
}

#[test]
fn unknown_container_is_no_such_container() {
    if !common::docker_tests_enabled("unknown_container_is_no_such_container") {
        return;
    }
    let name = common::unique_name("absent");
    let err = rt()
        .block_on(async {
            let engine = Engine::connect().await?;
            engine.inspect(&name).await
        })
        .expect_err("inspecting an absent container must fail");
    assert!(
        matches!(&err, DockerError::NoSuchContainer(n) if *n == name),
        "{err:?}"
    );
    assert_eq!(exit::code_for(&anyhow::Error::new(err)), exit::NO_SUCH_CONTAINER);
}

#[test]
fn a_real_container_is_inspected_and_its_processes_listed() {
    if !common::docker_tests_enabled("a_real_container_is_inspected_and_its_processes_listed") {
        return;
    }
    let c = common::TestContainer::run("edge", "obs-lab/base:bookworm", &[], &["sleep", "300"]);
    let (inspect, procs) = rt().block_on(async {
        let engine = Engine::connect().await.unwrap();
        (
            engine.inspect(&c.name).await.unwrap(),
            engine.top(&c.name).await.unwrap(),
        )
    });
    assert_eq!(inspect.name.as_deref(), Some(format!("/{}", c.name).as_str()));
    assert!(procs.iter().any(|p| p.command.contains("sleep 300")), "{procs:?}");
}

#[test]
fn removing_a_container_converges_whoever_else_is_removing_it() {
    // A loaded engine answers 409 "removal already in progress" to a second removal (an
    // inject's rollback once stopped there with neither container left); `remove` returns
    // only once the container is gone, whatever else is removing it.
    if !common::docker_tests_enabled("removing_a_container_converges_whoever_else_is_removing_it") {
        return;
    }
    for round in 0..5 {
        let c = common::TestContainer::run("rm", "obs-lab/base:bookworm", &[], &["sleep", "300"]);
        let name = c.name.clone();
        rt().block_on(async {
            let engine = Engine::connect().await.unwrap();
            let (a, b, cli) = tokio::join!(
                engine.remove(&name, false),
                engine.remove(&name, false),
                tokio::task::spawn_blocking({
                    let name = name.clone();
                    move || common::docker(&["rm", "-f", &name])
                }),
            );
            assert!(a.is_ok() && b.is_ok(), "round {round}: {a:?} {b:?}");
            let _ = cli;
            assert!(
                engine.try_inspect(&name).await.unwrap().is_none(),
                "round {round}: {name} still exists after remove returned"
            );
            // and an absent one is no error
            engine.remove(&name, false).await.unwrap();
        });
    }
}
