//! Each service's HTTP surface on the real broker and database: `/healthz`,
//! `/readyz` (which really asks Kafka and PostgreSQL) and `/metrics`
//! (Prometheus text, counting what the consumer loop did).

use std::net::SocketAddr;
use std::time::Duration;

use sumud_shared::areas::AreaCatalog;
use sumud_shared::envelope::Envelope;
use sumud_shared::events::household::HOUSEHOLD_UPSERTED;
use sumud_shared::synthetic;
use sumud_tests::{wait_for, Running, TestEnv};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A loopback address nobody listens on right now.
fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A plain HTTP/1.1 GET: (status, body).
async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    let status = out.split(' ').nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

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
        get(addr, "/healthz")
    })
    .await;
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, body) = get(addr, "/readyz").await.unwrap();
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
        let (_, text) = get(addr, "/metrics").await?;
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
        env.pool.clone(),
        None,
        shutdown.clone(),
    )
    .unwrap()
    .expect("an address is set");
    let (status, body) =
        wait_for("/readyz", Duration::from_secs(30), || get(addr, "/readyz")).await;
    assert_eq!(status, 503, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["postgresql"], "ok");
    assert_ne!(ready["kafka"], "ok");
    assert_eq!(
        get(addr, "/healthz").await.unwrap().0,
        200,
        "alive while not ready"
    );
    shutdown.cancel();
    server.await.unwrap();
}
