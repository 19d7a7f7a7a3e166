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
    let (status, body) = http_get(addr, "/readyz").await.unwrap();
    assert_eq!(status, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["kafka"], "ok");
    assert_eq!(ready["postgresql"], "ok");

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
