//! No Docker engine runs on the build machines, so the deployment file is
//! checked structurally: every service crate has a compose service that runs
//! its binary, every image and build context exists, every variable set is
//! one the services read, and every dependency names a defined service.

use std::collections::BTreeSet;
use std::path::Path;

use serde_yaml::Value;
use sumud_shared::config::ENV_VARS;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn compose() -> Value {
    let text = std::fs::read_to_string(root().join("docker-compose.yml"))
        .expect("docker-compose.yml exists");
    let mut doc: Value = serde_yaml::from_str(&text).expect("docker-compose.yml is valid YAML");
    doc.apply_merge().expect("merge keys resolve");
    doc
}

fn service_crates() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join("services"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn every_service_crate_runs_in_compose_with_known_settings() {
    let doc = compose();
    let services = doc["services"].as_mapping().expect("services mapping");
    let defined: BTreeSet<String> = services
        .keys()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    for name in service_crates() {
        assert!(
            defined.contains(&name),
            "services/{name} has no compose service"
        );
        let svc = &services[name.as_str()];
        let command: Vec<&str> = svc["command"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(
            command[0],
            format!("sumud-{name}"),
            "compose service {name} runs its own binary"
        );
        let manifest =
            std::fs::read_to_string(root().join("services").join(&name).join("Cargo.toml"))
                .unwrap();
        assert!(
            manifest.contains(&format!("name = \"sumud-{name}\"")),
            "crate of {name} is sumud-{name}"
        );
        let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
        assert!(
            dockerfile.contains(&format!("release/sumud-{name}")),
            "the image ships sumud-{name}"
        );
    }
    for (name, svc) in services {
        let name = name.as_str().unwrap();
        assert!(
            svc.get("image").is_some() || svc.get("build").is_some(),
            "{name} has an image or a build"
        );
        if let Some(Value::String(ctx)) = svc.get("build") {
            assert!(
                root().join(ctx).join("Dockerfile").exists(),
                "{name}'s build context has a Dockerfile"
            );
        }
        if let Some(deps) = svc.get("depends_on").and_then(Value::as_mapping) {
            for d in deps.keys() {
                assert!(
                    defined.contains(d.as_str().unwrap()),
                    "{name} depends on an undefined service {d:?}"
                );
            }
        }
        let is_ours = svc.get("build").is_some();
        if let (true, Some(env)) = (is_ours, svc.get("environment").and_then(Value::as_mapping)) {
            for k in env.keys() {
                let k = k.as_str().unwrap();
                assert!(
                    ENV_VARS.contains(&k) || k.starts_with("SUMUD_RDKAFKA_"),
                    "{name} sets {k}, which no service reads"
                );
            }
        }
        if let Some(ports) = svc.get("ports").and_then(Value::as_sequence) {
            for p in ports {
                let p = p.as_str().unwrap();
                let (host, container) = p.split_once(':').expect("ports are host:container");
                host.parse::<u16>().expect("host port is a number");
                container
                    .parse::<u16>()
                    .expect("container port is a number");
            }
        }
    }
}

#[test]
fn compose_points_services_at_the_compose_kafka_and_postgres() {
    let doc = compose();
    let env = &doc["services"]["registry"]["environment"];
    assert_eq!(env["KAFKA_BOOTSTRAP_SERVERS"].as_str(), Some("kafka:9092"));
    assert!(env["DATABASE_URL"]
        .as_str()
        .unwrap()
        .contains("@postgres:5432/"));
    let kafka = &doc["services"]["kafka"]["environment"];
    assert_eq!(
        kafka["KAFKA_PROCESS_ROLES"].as_str(),
        Some("broker,controller"),
        "Kafka runs in KRaft mode"
    );
}
