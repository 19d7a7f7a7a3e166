//! No Docker engine runs on the build machines, so the compose files are
//! checked structurally: every service crate has a compose service that runs
//! its binary (the deployment stack plus the demo override), every build
//! context exists, every variable set is one the services read, and every
//! dependency names a defined service; the deployment stack is closed (no
//! simulator, no published broker or database port, nothing published
//! beyond loopback, no secret written in the file, SASL/SCRAM for every
//! service, the ACLs its init job applies the documented ones); the image's
//! toolchain is checked against what the lockfile needs.

use std::collections::BTreeSet;
use std::path::Path;

use serde_yaml::Value;
use sumud_shared::config::ENV_VARS;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// A compose file with its merge keys resolved.
fn compose_file(path: &str) -> Value {
    let text = std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut doc: Value =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path} is not valid YAML: {e}"));
    doc.apply_merge().expect("merge keys resolve");
    doc
}

/// The deployment stack, `docker-compose.yml`.
fn compose() -> Value {
    compose_file("docker-compose.yml")
}

/// The deployment stack with the demo override, merged as compose merges
/// files: mappings key by key, sequences appended, scalars replaced.
fn demo() -> Value {
    fn merge(base: &mut Value, over: &Value) {
        match (base, over) {
            (Value::Mapping(b), Value::Mapping(o)) => {
                for (k, v) in o {
                    match b.get_mut(k) {
                        Some(existing) => merge(existing, v),
                        None => {
                            b.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
            (Value::Sequence(b), Value::Sequence(o)) => b.extend(o.iter().cloned()),
            (b, o) => *b = o.clone(),
        }
    }
    let mut doc = compose();
    merge(&mut doc, &compose_file("docker-compose.demo.yml"));
    doc
}

/// Whether a compose service runs one of our service binaries.
fn runs_a_sumud_service(svc: &Value) -> bool {
    svc["command"]
        .as_sequence()
        .and_then(|c| c.first())
        .and_then(Value::as_str)
        .is_some_and(|c| c.starts_with("sumud-"))
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
    for doc in [compose(), demo()] {
        every_service_runs_with_known_settings(&doc);
    }
    let demo = demo();
    let services = demo["services"].as_mapping().expect("services mapping");
    for name in service_crates() {
        assert!(
            services.contains_key(name.as_str()),
            "services/{name} has no compose service in the deployment stack or the demo"
        );
    }
}

fn every_service_runs_with_known_settings(doc: &Value) {
    let services = doc["services"].as_mapping().expect("services mapping");
    let defined: BTreeSet<String> = services
        .keys()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    for name in service_crates() {
        if !defined.contains(&name) {
            continue;
        }
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
        let is_ours = runs_a_sumud_service(svc);
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
                let (host, container) = p.rsplit_once(':').expect("ports are host:container");
                let host = host.rsplit(':').next().unwrap();
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
    let broker = std::fs::read_to_string(root().join("deploy/kafka/start.sh")).unwrap();
    assert!(
        broker.contains("process.roles=broker,controller"),
        "Kafka runs in KRaft mode"
    );
}

/// The deployment stack as a platform team runs it: no simulator that would
/// report real payments as made, no broker, database, collector or metrics
/// port published, nothing published beyond the host's loopback, every
/// password and secret taken from the deployment's env file (never written
/// here), Kafka and PostgreSQL on volumes, one image for every Sumud
/// container (none builds its own), a health check on each, and every
/// service on SASL/SCRAM as its own principal.
#[test]
fn the_deployment_stack_is_closed_and_runs_no_simulator() {
    let doc = compose();
    let services = doc["services"].as_mapping().unwrap();
    assert!(
        !services.contains_key("provider-sim"),
        "the deployment runs no payment simulator (the demo override adds it)"
    );
    for (name, svc) in services {
        let name = name.as_str().unwrap();
        for p in svc["ports"].as_sequence().cloned().unwrap_or_default() {
            let p = p.as_str().unwrap();
            assert!(
                p.starts_with("127.0.0.1:"),
                "{name} publishes {p} beyond the host's loopback"
            );
        }
        for (k, v) in svc["environment"].as_mapping().cloned().unwrap_or_default() {
            let (k, v) = (k.as_str().unwrap(), v.as_str().unwrap_or_default());
            if k.contains("PASSWORD") || k.contains("SECRET") {
                assert!(
                    v.starts_with("${") && v.contains(":?"),
                    "{name} sets {k} in the file instead of requiring it from the env file"
                );
            }
            if k == "DATABASE_URL" {
                assert!(
                    v.contains("${SUMUD_PG_PASSWORD:?"),
                    "{name}'s database password is written in the file"
                );
            }
        }
    }
    for closed in ["kafka", "postgres", "otel-collector", "prometheus"] {
        assert!(services.contains_key(closed), "the stack has no {closed}");
        assert!(
            doc["services"][closed].get("ports").is_none(),
            "{closed} publishes a port"
        );
    }
    for (name, svc) in services {
        assert!(
            svc.get("network_mode").is_none(),
            "{name:?} leaves the stack's private network"
        );
        // Compose mounts a file secret with its owner and mode, and a key
        // file is 0600: whoever reads one must run as its owner.
        if svc.get("secrets").is_some() {
            assert!(
                svc["user"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("${SUMUD_KEYS_UID:?")),
                "{name:?} reads a key file as the image's user, who cannot"
            );
        }
    }
    for (svc, path) in [
        ("kafka", "/var/lib/kafka/data"),
        ("postgres", "/var/lib/postgresql/data"),
    ] {
        let volumes = doc["services"][svc]["volumes"].as_sequence().unwrap();
        let named = volumes.iter().filter_map(Value::as_str).find_map(|v| {
            let (source, target) = v.split_once(':')?;
            (target == path).then_some(source)
        });
        let named = named.unwrap_or_else(|| panic!("{svc} keeps {path} on no volume"));
        assert!(
            doc["volumes"].get(named).is_some(),
            "{svc}'s volume {named} is not declared"
        );
    }
    assert_eq!(
        doc["services"]["grafana"]["environment"]["GF_AUTH_ANONYMOUS_ENABLED"].as_str(),
        Some("false"),
        "Grafana shows nothing to anonymous viewers"
    );
    let kafka_init = &doc["services"]["kafka-init"]["environment"];
    let users = std::fs::read_to_string(root().join("deploy/kafka/init.sh")).unwrap();
    let mut sumud = 0;
    for (name, svc) in services {
        let name = name.as_str().unwrap();
        assert!(
            svc.get("build").is_none(),
            "{name} builds an image of its own"
        );
        if !runs_a_sumud_service(svc) {
            continue;
        }
        sumud += 1;
        assert_eq!(
            svc["image"].as_str(),
            Some("${SUMUD_IMAGE:-sumud:latest}"),
            "{name} runs the one Sumud image"
        );
        assert!(
            svc.get("healthcheck").is_some(),
            "{name} has no health check"
        );
        let env = &svc["environment"];
        assert_eq!(
            env["SUMUD_RDKAFKA_SECURITY_PROTOCOL"].as_str(),
            Some("SASL_PLAINTEXT"),
            "{name}"
        );
        assert_eq!(
            env["SUMUD_RDKAFKA_SASL_MECHANISM"].as_str(),
            Some("SCRAM-SHA-512")
        );
        assert_eq!(
            env["SUMUD_RDKAFKA_SASL_USERNAME"].as_str(),
            Some(format!("sumud-{name}").as_str()),
            "{name} connects as its own principal"
        );
        // Its password is the one the init job gives its SCRAM user.
        let var = format!(
            "SUMUD_KAFKA_PASSWORD_{}",
            name.to_uppercase().replace('-', "_")
        );
        assert!(
            env["SUMUD_RDKAFKA_SASL_PASSWORD"]
                .as_str()
                .is_some_and(|v| v.starts_with(&format!("${{{var}:?"))),
            "{name} connects with another password than {var}"
        );
        assert!(
            kafka_init[var.as_str()]
                .as_str()
                .is_some_and(|v| v.starts_with(&format!("${{{var}:?"))),
            "kafka-init is not given {var}"
        );
        assert!(
            users.contains(&format!("\nuser sumud-{name} \"${{{var}:-}}\"\n")),
            "deploy/kafka/init.sh does not make sumud-{name} with {var}"
        );
        let deps = svc["depends_on"].as_mapping().unwrap();
        assert!(
            deps.contains_key("init"),
            "{name} starts before the init job made its users, ACLs and topics"
        );
    }
    assert_eq!(
        sumud,
        service_crates().len() - 1,
        "every service but the simulator"
    );
    // The broker itself: SASL/SCRAM on the one listener other containers
    // reach, the controller on the container's loopback, and the authorizer
    // denying what no ACL allows.
    let broker = std::fs::read_to_string(root().join("deploy/kafka/start.sh")).unwrap();
    for line in [
        "listeners=SASL_PLAINTEXT://:9092,CONTROLLER://127.0.0.1:9093",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
        "sasl.enabled.mechanisms=SCRAM-SHA-512",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found=false",
    ] {
        assert!(
            broker.lines().any(|l| l == line),
            "deploy/kafka/start.sh lacks {line}"
        );
    }
}

/// The deployment's scripts parse (no Docker engine here runs them).
#[test]
fn the_deployment_scripts_parse() {
    for (shell, script) in [
        ("bash", "deploy/kafka/start.sh"),
        ("bash", "deploy/kafka/init.sh"),
        ("sh", "deploy/init.sh"),
        ("bash", "scripts/demo-secrets.sh"),
    ] {
        let out = std::process::Command::new(shell)
            .arg("-n")
            .arg(root().join(script))
            .output()
            .expect("the shell runs");
        assert!(
            out.status.success(),
            "{script} does not parse: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The ACLs the deployment's Kafka init job applies are the ones
/// docs/security.md documents (and tests/tests/secure_transport.rs runs the
/// pipeline under), and it creates a SCRAM user for every principal the
/// deployment stack connects as.
#[test]
fn the_deployment_applies_the_documented_acls_to_its_own_principals() {
    let acl_lines = |text: &str| -> BTreeSet<String> {
        text.lines()
            .map(str::trim)
            .filter(|l| l.starts_with("acl --"))
            .map(str::to_owned)
            .collect()
    };
    let doc = std::fs::read_to_string(root().join("docs/security.md")).unwrap();
    let block = doc
        .split_once("<!-- acl-commands")
        .expect("docs/security.md has an acl-commands block")
        .1
        .split("```")
        .nth(1)
        .unwrap();
    let init = std::fs::read_to_string(root().join("deploy/kafka/init.sh")).unwrap();
    let documented = acl_lines(block);
    assert!(documented.len() > 10, "{documented:?}");
    // The assign-only readers name a group, whose coordinator librdkafka
    // looks up all the same: their principals may read it.
    for (user, group) in [
        ("sumud-operator", "sumud-deadletter-cli"),
        ("sumud-dashboard", "sumud-dashboard-reader"),
    ] {
        assert!(
            documented
                .iter()
                .any(|l| l.contains(&format!("User:{user} --operation Read"))
                    && l.contains(&format!("--group {group}"))),
            "{user} may not read its group {group}"
        );
    }
    assert_eq!(acl_lines(&init), documented);
    let compose = compose();
    for (name, svc) in compose["services"].as_mapping().unwrap() {
        if !runs_a_sumud_service(svc) {
            continue;
        }
        let user = svc["environment"]["SUMUD_RDKAFKA_SASL_USERNAME"]
            .as_str()
            .unwrap();
        assert!(
            init.contains(&format!("\nuser {user} ")),
            "the init job creates no SCRAM user {user} for {name:?}"
        );
        assert!(
            documented
                .iter()
                .any(|l| l.contains(&format!("User:{user} "))),
            "no documented ACL for {user}"
        );
    }
}

/// The compose services that run a Sumud binary (`sumud-<name>`), with the
/// port of their `SUMUD_HTTP_ADDR`.
fn sumud_services(doc: &Value) -> Vec<(String, u16)> {
    let mut out = Vec::new();
    for (name, svc) in doc["services"].as_mapping().unwrap() {
        if !runs_a_sumud_service(svc) {
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

/// The targets Prometheus scrapes in `doc`: the jobs of every file its
/// service mounts where `deploy/prometheus.yml` reads scrape files from.
fn scrape_targets(doc: &Value) -> BTreeSet<String> {
    let main = yaml_file("deploy/prometheus.yml");
    let globs: Vec<&str> = main["scrape_config_files"]
        .as_sequence()
        .expect("deploy/prometheus.yml reads its jobs from scrape_config_files")
        .iter()
        .map(|g| g.as_str().unwrap())
        .collect();
    assert!(
        main["scrape_configs"].is_null(),
        "deploy/prometheus.yml names jobs of its own, scraped on every stack"
    );
    doc["services"]["prometheus"]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| {
            let mut parts = v.as_str().unwrap().split(':');
            let (source, target) = (parts.next()?, parts.next()?);
            let dir = target.rsplit_once('/')?.0;
            let read = globs
                .iter()
                .any(|g| g.rsplit_once('/').map(|(d, _)| d) == Some(dir))
                && target.ends_with(".yml");
            read.then(|| source.trim_start_matches("./").to_owned())
        })
        .flat_map(|file| {
            yaml_file(&file)["scrape_configs"]
                .as_sequence()
                .cloned()
                .unwrap_or_else(|| panic!("{file} has no scrape_configs"))
        })
        .flat_map(|job| {
            job["static_configs"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
        })
        .flat_map(|c| c["targets"].as_sequence().cloned().unwrap_or_default())
        .map(|t| t.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_sumud_service_exports_traces_to_the_collector_and_is_scraped() {
    for (stack, doc) in [("the deployment stack", compose()), ("the demo", demo())] {
        let defined: BTreeSet<&str> = doc["services"]
            .as_mapping()
            .unwrap()
            .keys()
            .map(|k| k.as_str().unwrap())
            .collect();
        for s in ["otel-collector", "jaeger", "prometheus", "grafana"] {
            assert!(defined.contains(s), "{stack} has no {s} service");
        }
        let targets = scrape_targets(&doc);
        let services = sumud_services(&doc);
        assert!(services.len() >= 6, "{services:?}");
        for (name, port) in &services {
            assert!(
                targets.contains(&format!("{name}:{port}")),
                "Prometheus of {stack} does not scrape {name}:{port}"
            );
            let endpoint = doc["services"][name.as_str()]["environment"]
                ["OTEL_EXPORTER_OTLP_ENDPOINT"]
                .as_str()
                .unwrap_or_else(|| panic!("{name} exports no traces"));
            assert_eq!(endpoint, "http://otel-collector:4318", "{name}");
        }
        // A target the stack does not run would only ever show as down.
        for t in &targets {
            let host = t.split(':').next().unwrap();
            assert!(
                defined.contains(host),
                "Prometheus of {stack} scrapes {t}, which {stack} does not run"
            );
        }
    }
    let doc = demo();
    let defined: BTreeSet<&str> = doc["services"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
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
    let doc = demo();
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
