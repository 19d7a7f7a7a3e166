//! Each service's HTTP surface on the real broker and database: `/healthz`,
//! `/readyz` (which really asks Kafka and PostgreSQL) and `/metrics`
//! (Prometheus text, counting what the consumer loop did, and the crisis
//! figures eligibility and disbursement read from their tables on scrape).

use std::time::Duration;

use sumud_disbursement::config::DisbursementConfig;
use sumud_provider_sim::behaviour::Behaviour;
use sumud_shared::areas::AreaCatalog;
use sumud_shared::envelope::Envelope;
use sumud_shared::events::control::CommandKind;
use sumud_shared::events::household::HOUSEHOLD_UPSERTED;
use sumud_shared::synthetic;
use sumud_tests::infra::{free_addr, http_get};
use sumud_tests::pipeline::{claims, definition, expected, no_four_eyes, Pipeline, DEADLINE};
use sumud_tests::{wait_for, Running, TestEnv};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_reports_health_readiness_and_what_it_consumed() {
    let env = TestEnv::new().await;
    let addr = free_addr();
    let mut settings = env.settings.clone();
    settings.http_addr = Some(addr);
    let registry = sumud_registry::App::build(settings).await.unwrap();
    let running = Running::spawn(|t| registry.run(t));
    let topic = env.settings.topics.registry.clone();
    for i in 0..5 {
        let h = synthetic::household(AreaCatalog::default_catalog(), 5, i);
        let e = Envelope::new(
            "urn:test",
            HOUSEHOLD_UPSERTED,
            Some(h.household_id.clone()),
            &h,
        );
        env.publish(&topic, &h.household_id, &e.to_bytes()).await;
    }
    env.publish(&topic, "poison", b"not json at all").await;

    let (status, body) = wait_for("/healthz", Duration::from_secs(30), || {
        http_get(addr, "/healthz")
    })
    .await;
    assert_eq!((status, body.trim()), (200, "ok"));
    // Ready once its consumer has joined its group (a moment after start).
    let body = wait_for("/readyz to answer 200", Duration::from_secs(60), || async {
        let (status, body) = http_get(addr, "/readyz").await?;
        (status == 200).then_some(body)
    })
    .await;
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["kafka"], "ok");
    assert_eq!(ready["postgresql"], "ok");
    assert_eq!(ready["consumer"]["status"], "ok");
    assert_eq!(
        ready["consumer"]["group"],
        env.settings.group_id("registry")
    );
    assert_eq!(ready["consumer"]["partitions"], 3, "{body}");

    let consumed =
        format!(r#"sumud_messages_consumed_total{{service="registry",topic="{topic}"}} 6"#);
    let dead = format!(
        r#"sumud_messages_dead_lettered_total{{service="registry",topic="{topic}",reason="not_json"}} 1"#
    );
    let text = wait_for("the batch counted", Duration::from_secs(60), || async {
        let (_, text) = http_get(addr, "/metrics").await?;
        (text.contains(&consumed) && text.contains(&dead)).then_some(text)
    })
    .await;
    assert!(text.contains(r#"sumud_batch_processing_seconds_count{service="registry"}"#));
    assert!(text.contains(r#"sumud_db_pool_connections{service="registry",state="idle"}"#));
    assert!(
        text.contains(&format!(
            r#"sumud_messages_produced_total{{topic="{}"}}"#,
            env.settings.topics.deadletter
        )),
        "the dead letter was produced and counted"
    );
    assert!(!text.contains("HH-"), "no household ids in labels");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_with_the_reason_when_kafka_does_not_answer() {
    let env = TestEnv::new().await;
    let addr = free_addr();
    let mut settings = env.settings.clone();
    settings.http_addr = Some(addr);
    settings.bootstrap_servers = format!("127.0.0.1:{}", free_addr().port());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = sumud_shared::http::spawn(
        &settings,
        "probe-test",
        env.pool.clone().into(),
        None,
        None,
        shutdown.clone(),
    )
    .unwrap()
    .expect("an address is set");
    let (status, body) = wait_for("/readyz", Duration::from_secs(30), || {
        http_get(addr, "/readyz")
    })
    .await;
    assert_eq!(status, 503, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["postgresql"], "ok");
    assert_ne!(ready["kafka"], "ok");
    assert_eq!(
        http_get(addr, "/healthz").await.unwrap().0,
        200,
        "alive while not ready"
    );
    shutdown.cancel();
    server.await.unwrap();
}

/// `/readyz` as (status, JSON body), once it answers.
async fn readyz(addr: std::net::SocketAddr) -> Option<(u16, serde_json::Value)> {
    let (status, body) = http_get(addr, "/readyz").await?;
    Some((status, serde_json::from_str(&body).ok()?))
}

/// A member of `group` that takes every partition of `topic` and holds the
/// group with an assignor no Sumud consumer offers (`cooperative-sticky`
/// alone), so the broker refuses their JoinGroup (inconsistent group
/// protocol) for as long as it stays: a consumer that cannot join, made
/// from outside the service. Leaves the group when dropped.
struct GroupSquatter {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Told once the squatter's consumer is destroyed (it left the group).
    gone: std::sync::mpsc::Receiver<()>,
}

impl GroupSquatter {
    fn start(settings: &sumud_shared::config::Settings, group: &str, topic: &str) -> Self {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = sumud_shared::kafka::client_config(settings)
            .set("group.id", group)
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("enable.auto.commit", "false")
            .create()
            .expect("squatter");
        consumer.subscribe(&[topic]).expect("subscribe");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (holds, held) = std::sync::mpsc::channel();
        let flag = stop.clone();
        let (left, gone) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut told = false;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = consumer.poll(Duration::from_millis(100));
                if !told && consumer.assignment().is_ok_and(|a| a.count() > 0) {
                    let _ = holds.send(());
                    told = true;
                }
            }
            // Dropping closes the consumer: it leaves the group.
            drop(consumer);
            let _ = left.send(());
        });
        held.recv_timeout(Duration::from_secs(60))
            .expect("the squatter holds the group within 60 s");
        GroupSquatter { stop, gone }
    }
}

impl Drop for GroupSquatter {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        // Bounded: librdkafka's close may wait on its group coordinator
        // without a limit; a squatter that never leaves fails the test's
        // own wait for the group, rather than hanging it here.
        let _ = self.gone.recv_timeout(Duration::from_secs(60));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_cannot_join_its_group_is_not_ready_and_is_made_anew_until_it_joins() {
    // Arrange: the registry's group held by a member the service's
    // consumer cannot share it with; a join bound of 5 s.
    let env = TestEnv::new().await;
    let addr = free_addr();
    let mut settings = env.settings.clone();
    settings.http_addr = Some(addr);
    settings.consumer_bounds.join_within = Duration::from_secs(5);
    let group = env.settings.group_id("registry");
    let squatter = GroupSquatter::start(&env.settings, &group, &env.settings.topics.registry);
    let registry = sumud_registry::App::build(settings).await.unwrap();
    let running = Running::spawn(|t| registry.run(t));

    // Assert: not ready, saying why; then made anew, and still not ready.
    let (_, body) = wait_for("/readyz to refuse for the group", DEADLINE, || async {
        let (status, body) = readyz(addr).await?;
        (status == 503).then_some(((), body))
    })
    .await;
    assert_eq!(body["kafka"], "ok", "{body}");
    assert_eq!(body["postgresql"], "ok", "{body}");
    let status = body["consumer"]["status"].as_str().unwrap_or_default();
    assert!(
        status.contains(&format!("not a member of group {group}")),
        "{body}"
    );
    let body = wait_for("the consumer to be made anew", DEADLINE, || async {
        let (status, body) = readyz(addr).await?;
        (status == 503 && body["consumer"]["recreated"].as_u64() >= Some(1)).then_some(body)
    })
    .await;
    assert_eq!(body["ready"], false);
    let metric = r#"sumud_consumers_recreated_total{service="registry"}"#;
    let (_, text) = http_get(addr, "/metrics").await.unwrap();
    assert!(sample(&text, metric).is_some_and(|n| n >= 1), "{text}");
    assert_eq!(
        sample(&text, r#"sumud_consumer_ready{service="registry"}"#),
        Some(0)
    );

    // Act: the squatter leaves.
    drop(squatter);

    // Assert: the current consumer joins, is ready and consumes.
    let body = wait_for(
        "/readyz to answer 200 after the group is free",
        DEADLINE,
        || async {
            let (status, body) = readyz(addr).await?;
            (status == 200).then_some(body)
        },
    )
    .await;
    assert_eq!(body["consumer"]["partitions"], 3, "{body}");
    let h = synthetic::household(AreaCatalog::default_catalog(), 9, 1);
    let e = Envelope::new(
        "urn:test",
        HOUSEHOLD_UPSERTED,
        Some(h.household_id.clone()),
        &h,
    );
    env.publish(
        &env.settings.topics.registry,
        &h.household_id,
        &e.to_bytes(),
    )
    .await;
    wait_for("the household stored", DEADLINE, || async {
        (env.count("SELECT count(*) FROM registry.households").await == 1).then_some(())
    })
    .await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_makes_no_progress_on_waiting_messages_is_not_ready_until_it_moves() {
    // Arrange: a ready registry and a dashboard, both with a stall bound of
    // 2 s; one household stored (so the group has committed offsets the
    // dashboard can read); then the registry's table locked by the test,
    // so its handler waits on the lock.
    let env = TestEnv::new().await;
    let addr = free_addr();
    let mut settings = env.settings.clone();
    settings.http_addr = Some(addr);
    settings.consumer_bounds.stall_after = Duration::from_secs(2);
    let registry = sumud_registry::App::build(settings.clone()).await.unwrap();
    let running = Running::spawn(|t| registry.run(t));
    let dashboard = sumud_dashboard::App::build(
        settings,
        sumud_dashboard::config::DashboardConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            refresh: Duration::from_millis(250),
            lag_refresh: Duration::from_secs(1),
        },
    )
    .await
    .unwrap();
    let dash_addr = dashboard.local_addr();
    let dash = Running::spawn(|t| dashboard.run(t));
    let (group, topic) = (
        env.settings.group_id("registry"),
        env.settings.topics.registry.clone(),
    );
    // The dashboard's row of the registry's group on its topic.
    let row = || async {
        let (_, body) = http_get(dash_addr, "/api/lag").await?;
        let lag: serde_json::Value = serde_json::from_str(&body).ok()?;
        lag["groups"]
            .as_array()?
            .iter()
            .find(|g| g["group"] == group.as_str() && g["topic"] == topic.as_str())
            .cloned()
    };
    let h = synthetic::household(AreaCatalog::default_catalog(), 9, 2);
    let e = Envelope::new(
        "urn:test",
        HOUSEHOLD_UPSERTED,
        Some(h.household_id.clone()),
        &h,
    );
    env.publish(&topic, &h.household_id, &e.to_bytes()).await;
    wait_for(
        "the first household stored and committed",
        DEADLINE,
        || async {
            let r = row().await?;
            (r["lag"] == 0 && env.count("SELECT count(*) FROM registry.households").await == 1)
                .then_some(())
        },
    )
    .await;
    wait_for("/readyz to answer 200", DEADLINE, || async {
        let (status, _) = readyz(addr).await?;
        (status == 200).then_some(())
    })
    .await;
    let mut lock = env.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE registry.households IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();

    // Act: the household comes again and cannot be stored.
    env.publish(&topic, &h.household_id, &e.to_bytes()).await;

    // Assert: not ready, saying no progress with one message waiting,
    // while the database and Kafka answer.
    let body = wait_for("/readyz to report the stall", DEADLINE, || async {
        let (status, body) = readyz(addr).await?;
        (status == 503).then_some(body)
    })
    .await;
    assert_eq!(body["postgresql"], "ok", "{body}");
    assert_eq!(body["kafka"], "ok", "{body}");
    let status = body["consumer"]["status"].as_str().unwrap_or_default();
    assert!(status.starts_with("no progress for"), "{body}");
    assert_eq!(body["consumer"]["lag"], 1, "{body}");
    // The dashboard, judging from outside by the committed offsets, shows
    // the group stalled on its topic.
    let stalled = wait_for("the dashboard to show the stall", DEADLINE, || async {
        row().await?["stalled_s"].as_u64()
    })
    .await;
    assert!(stalled >= 2, "{stalled}");

    // Act: the lock goes; Assert: ready again, caught up on the dashboard.
    lock.rollback().await.unwrap();
    wait_for("/readyz to answer 200 again", DEADLINE, || async {
        let (status, _) = readyz(addr).await?;
        (status == 200).then_some(())
    })
    .await;
    wait_for("the dashboard to clear the stall", DEADLINE, || async {
        let r = row().await?;
        (r["lag"] == 0 && r["stalled_s"].is_null()).then_some(())
    })
    .await;
    dash.stop().await;
    running.stop().await;
}

/// The value of the sample `name{labels}` in an exposition, if present.
fn sample(text: &str, name_and_labels: &str) -> Option<i64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse::<f64>().ok())
        .map(|v| v as i64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crisis_figures_are_exposed_by_status_and_follow_the_payments() {
    // Arrange: a pipeline with payments; one tranche; a provider that
    // rejects some payments for good, so that all three amounts appear.
    let schedule = DisbursementConfig {
        day_seconds: 3600.0,
        tick_ms: 100,
        ..DisbursementConfig::default()
    };
    let provider = Behaviour {
        latency_ms: 5,
        retryable_reject_rate: 0.0,
        permanent_reject_rate: 0.2,
        duplicate_rate: 0.0,
        late_pending_rate: 0.0,
        ..Behaviour::default()
    };
    let p = Pipeline::start_with_payments(2000, no_four_eyes(), schedule, provider).await;
    let addr = free_addr();
    let mut settings = p.env.settings.clone();
    settings.http_addr = Some(addr);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = sumud_shared::http::spawn(
        &settings,
        "monitoring-test",
        p.env.pool.clone().into(),
        None,
        None,
        shutdown.clone(),
    )
    .unwrap()
    .expect("an address is set");

    // Act: declare a crisis and let its first tranche be answered.
    let areas = ["JO-MN", "JO-KA"];
    let entitled = expected(&p.households, &areas).len() as i64;
    assert!(entitled > 0);
    p.send(
        &p.alice,
        &claims(
            CommandKind::Declare,
            "MON-1",
            Some(definition(&areas, "10000000")),
        ),
    )
    .await;
    p.wait_count(
        "every first-tranche payment answered",
        "SELECT count(*) FROM disbursement.instructions WHERE status IN ('succeeded', 'failed')",
        entitled,
    )
    .await;
    let (paid, failed, instructed): (i64, i64, i64) = sqlx::query_as(
        "SELECT coalesce(sum(amount_minor) FILTER (WHERE status = 'succeeded'), 0)::bigint, \
                coalesce(sum(amount_minor) FILTER (WHERE status IN ('failed', 'reversed')), 0)::bigint, \
                coalesce(sum(amount_minor), 0)::bigint \
         FROM disbursement.instructions WHERE crisis_id = 'MON-1'",
    )
    .fetch_one(&p.env.pool)
    .await
    .unwrap();
    assert!(paid > 0 && failed > 0, "paid {paid}, failed {failed}");

    // Assert: the scrape shows the crisis figures the tables hold.
    let amount = |status: &str| {
        format!(
            r#"sumud_payment_amount_minor_units{{crisis="MON-1",currency="JOD",status="{status}"}}"#
        )
    };
    let text = wait_for("the crisis figures on /metrics", DEADLINE, || async {
        let (_, text) = http_get(addr, "/metrics").await?;
        (sample(&text, &amount("paid")) == Some(paid)
            && sample(&text, &amount("failed")) == Some(failed))
        .then_some(text)
    })
    .await;
    assert_eq!(sample(&text, &amount("instructed")), Some(instructed));
    assert_eq!(
        sample(
            &text,
            r#"sumud_entitlements{crisis="MON-1",status="entitled"}"#
        ),
        Some(entitled)
    );
    assert_eq!(sample(&text, r#"sumud_crises{state="active"}"#), Some(1));
    let by_status = |s: &str| {
        sample(
            &text,
            &format!(r#"sumud_instructions{{crisis="MON-1",status="{s}"}}"#),
        )
    };
    assert_eq!(
        by_status("succeeded").unwrap_or(0) + by_status("failed").unwrap_or(0),
        entitled
    );
    assert!(
        sample(&text, r#"sumud_entitlements_committed_minor_units{crisis="MON-1",currency="JOD",status="entitled"}"#)
            .is_some_and(|v| v > 0)
    );
    for family in [
        "sumud_crises",
        "sumud_entitlements",
        "sumud_instructions",
        "sumud_payment_amount_minor_units",
    ] {
        assert!(text.contains(&format!("# TYPE {family} gauge")), "{family}");
    }
    assert!(!text.contains("HH-"), "no household ids in labels");
    assert!(
        !text.contains("ben-"),
        "no beneficiary references in labels"
    );
    shutdown.cancel();
    server.await.unwrap();
    p.stop().await;
}
