//! No Docker engine runs on the build machines, so the deployment file is
//! checked structurally: every service crate has a compose service that runs
//! its binary, every image and build context exists, every variable set is
//! one the services read, and every dependency names a defined service;
//! the image's toolchain is checked against what the lockfile needs.

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

/// The compose services that run a Sumud binary (`sumud-<name>`), with the
/// port of their `SUMUD_HTTP_ADDR`.
fn sumud_services(doc: &Value) -> Vec<(String, u16)> {
    let mut out = Vec::new();
    for (name, svc) in doc["services"].as_mapping().unwrap() {
        let runs_ours = svc["command"]
            .as_sequence()
            .and_then(|c| c.first())
            .and_then(Value::as_str)
            .is_some_and(|c| c.starts_with("sumud-"));
        if !runs_ours {
            continue;
        }
        let addr = svc["environment"]["SUMUD_HTTP_ADDR"]
            .as_str()
            .unwrap_or_else(|| panic!("{name:?} serves no /metrics (SUMUD_HTTP_ADDR unset)"));
        let port = addr.rsplit_once(':').unwrap().1.parse().unwrap();
        out.push((name.as_str().unwrap().to_owned(), port));
    }
    out
}

fn yaml_file(path: &str) -> Value {
    let text = std::fs::read_to_string(root().join(path))
        .unwrap_or_else(|e| panic!("{path} is missing: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path} is not valid YAML: {e}"))
}

#[test]
fn every_sumud_service_exports_traces_to_the_collector_and_is_scraped() {
    let doc = compose();
    let defined: BTreeSet<&str> = doc["services"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    for s in ["otel-collector", "jaeger", "prometheus", "grafana"] {
        assert!(defined.contains(s), "compose has no {s} service");
    }
    let prometheus = yaml_file("deploy/prometheus.yml");
    let targets: BTreeSet<String> = prometheus["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|job| {
            job["static_configs"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
        })
        .flat_map(|c| c["targets"].as_sequence().cloned().unwrap_or_default())
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    let services = sumud_services(&doc);
    assert!(services.len() >= 6, "{services:?}");
    for (name, port) in &services {
        assert!(
            targets.contains(&format!("{name}:{port}")),
            "Prometheus does not scrape {name}:{port}"
        );
        let endpoint = doc["services"][name.as_str()]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} exports no traces"));
        assert_eq!(endpoint, "http://otel-collector:4318", "{name}");
    }
    let crates = service_crates();
    for t in &targets {
        let host = t.split(':').next().unwrap();
        assert!(
            defined.contains(host) || crates.iter().any(|c| c == host),
            "Prometheus scrapes {t}, which is neither a compose service nor a service crate"
        );
    }
    // The collector receives OTLP/HTTP on the port the services use and
    // sends the traces to the trace viewer.
    let collector = yaml_file("deploy/otel-collector.yaml");
    let http = collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
        .as_str()
        .unwrap();
    assert!(http.ends_with(":4318"), "{http}");
    let pipeline = &collector["service"]["pipelines"]["traces"];
    for exporter in pipeline["exporters"].as_sequence().unwrap() {
        let e = &collector["exporters"][exporter.as_str().unwrap()];
        let host = e["endpoint"].as_str().unwrap().split(':').next().unwrap();
        assert!(defined.contains(host), "the collector exports to {host}");
    }
    for p in pipeline["processors"].as_sequence().unwrap() {
        assert!(
            collector["processors"].get(p.as_str().unwrap()).is_some(),
            "processor {p:?} is used but not configured"
        );
    }
}

#[test]
fn every_file_compose_mounts_exists() {
    let doc = compose();
    for (name, svc) in doc["services"].as_mapping().unwrap() {
        for v in svc["volumes"].as_sequence().cloned().unwrap_or_default() {
            let v = v.as_str().unwrap();
            let source = v.split(':').next().unwrap();
            if source.starts_with("./") {
                assert!(
                    root().join(source).exists(),
                    "{name:?} mounts {source}, which does not exist"
                );
            }
        }
    }
}

/// The sample names every registered family can produce.
fn registered_metric_names() -> BTreeSet<String> {
    sumud_shared::metrics::sample_names().into_iter().collect()
}

/// `sumud_…` identifiers in a PromQL expression.
fn metric_names_in(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("sumud_") {
        let start = i + at;
        let before_ok =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if before_ok {
            out.push(expr[start..end].to_owned());
        }
        i = end;
    }
    out
}

#[test]
fn the_grafana_dashboard_parses_and_queries_only_metrics_the_code_registers() {
    let registered = registered_metric_names();
    assert!(
        registered.contains("sumud_messages_consumed_total"),
        "{registered:?}"
    );
    let datasources = yaml_file("deploy/grafana/provisioning/datasources/sumud.yml");
    let uids: BTreeSet<&str> = datasources["datasources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|d| d["uid"].as_str().unwrap())
        .collect();
    let providers = yaml_file("deploy/grafana/provisioning/dashboards/sumud.yml");
    let path = providers["providers"][0]["options"]["path"]
        .as_str()
        .unwrap();
    let grafana = &compose()["services"]["grafana"];
    assert!(
        grafana["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|v| v.as_str().unwrap().ends_with(&format!(":{path}:ro"))),
        "the dashboards folder is mounted where the provider looks"
    );
    let text =
        std::fs::read_to_string(root().join("deploy/grafana/dashboards/sumud.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().unwrap();
    let mut used = BTreeSet::new();
    for p in panels {
        for t in p["targets"].as_array().unwrap() {
            let uid = t["datasource"]["uid"].as_str().unwrap();
            assert!(
                uids.contains(uid),
                "panel {} uses data source {uid}",
                p["title"]
            );
            let expr = t["expr"].as_str().unwrap();
            let names = metric_names_in(expr);
            assert!(!names.is_empty(), "{expr}");
            for n in names {
                assert!(
                    registered.contains(&n),
                    "{expr} uses {n}, which no code registers"
                );
                used.insert(n);
            }
        }
    }
    // The figures the dashboard service shows are all there.
    for wanted in [
        "sumud_crises",
        "sumud_entitlements",
        "sumud_instructions",
        "sumud_payment_amount_minor_units",
        "sumud_messages_dead_lettered_total",
        "sumud_consumer_lag_messages",
        "sumud_outbox_backlog_rows",
    ] {
        assert!(used.contains(wanted), "the dashboard shows no {wanted}");
    }
}

/// The service itself, started as a deployment starts it, refuses a
/// pseudonym secret a provider could know or guess: none, the development
/// value published in this repository, or one shorter than 32 bytes. It
/// says which variable to set, and never reaches the broker.
#[test]
fn disbursement_refuses_to_start_with_a_missing_published_or_short_pseudonym_secret() {
    use sumud_disbursement::config::DEVELOPMENT_SECRET;
    for secret in [
        None,
        Some(DEVELOPMENT_SECRET),
        Some("thirty-one-bytes-of-secret-text"),
    ] {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sumud-node"));
        cmd.arg("disbursement")
            .env_remove("SUMUD_PSEUDONYM_SECRET")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        if let Some(s) = secret {
            cmd.env("SUMUD_PSEUDONYM_SECRET", s);
        }
        let mut child = cmd.spawn().expect("sumud-node starts");
        // Bounded: a process that did not refuse would go on to connect.
        let end = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > end {
                let _ = child.kill();
                panic!("with secret {secret:?} the service did not refuse to start");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        assert!(!status.success(), "{secret:?}: {stderr}");
        assert!(
            stderr.contains("SUMUD_PSEUDONYM_SECRET") && stderr.contains("32 bytes"),
            "{secret:?}: {stderr}"
        );
    }
}

/// (major, minor) of a Rust version such as `1.90` or `1.89.0`.
fn major_minor(v: &str) -> (u32, u32) {
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap());
    (parts.next().unwrap(), parts.next().unwrap_or(0))
}

/// The image builds from the lockfile: its toolchain and the workspace's
/// `rust-version` are the same and no older than the newest `rust-version`
/// any locked crate built for Linux declares (cargo refuses to build a
/// crate that needs a newer compiler); the build is `--locked` and the
/// build context leaves out what must not go into an image.
#[test]
fn the_image_toolchain_and_rust_version_cover_what_the_locked_tree_needs() {
    let cargo_toml = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let declared = cargo_toml
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("the workspace declares a rust-version");
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let toolchain = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("FROM rust:"))
        .and_then(|l| l.split(['-', ' ']).next())
        .expect("the Dockerfile builds FROM rust:<version>");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .current_dir(root())
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--filter-platform",
            "x86_64-unknown-linux-gnu",
        ])
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ours: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    let built: BTreeSet<&str> = meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    let (needed, by) = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            let id = p["id"].as_str().unwrap();
            built.contains(id) && !ours.contains(id)
        })
        .filter_map(|p| {
            let v = p["rust_version"].as_str()?;
            let name = format!(
                "{} {}",
                p["name"].as_str().unwrap_or_default(),
                p["version"].as_str().unwrap_or_default()
            );
            Some((major_minor(v), name))
        })
        .max()
        .expect("locked crates declare rust-versions");
    assert!(
        major_minor(declared) >= needed,
        "rust-version {declared} is older than {}.{}, which {by} needs",
        needed.0,
        needed.1
    );
    assert_eq!(
        major_minor(toolchain),
        major_minor(declared),
        "the Dockerfile builds with rust:{toolchain} but the workspace declares rust-version {declared}"
    );
    assert!(dockerfile.contains("cargo build --release --locked"));
    let ignored = std::fs::read_to_string(root().join(".dockerignore")).expect(".dockerignore");
    for dir in ["target/", ".local/", ".sumud/", "secrets/"] {
        assert!(
            ignored.lines().any(|l| l == dir),
            ".dockerignore leaves out {dir}"
        );
    }
}
