//! The OpenAPI document and the router agree: every served path is
//! documented and every documented path is served, each answers only with
//! statuses the document lists, and the JSON the dashboard produces
//! validates against the document's schemas. Runs without Kafka or
//! PostgreSQL (the pool points at a closed port, so database-backed routes
//! answer 503, which the document must list too); the same validation
//! against a live pipeline is in `tests/tests/dashboard.rs`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use sqlx::postgres::PgPoolOptions;
use sumud_dashboard::deadletters::DeadLetterBoard;
use sumud_dashboard::http::{self, AppState};
use sumud_dashboard::lag::LagBoard;
use sumud_dashboard::model::*;
use sumud_dashboard::openapi::{self, response_schema};
use sumud_dashboard::snapshot::Monitor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// Serves the router with a pool that can never connect.
async fn serve_without_database() -> (SocketAddr, CancellationToken) {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy(&format!(
            "postgres://nobody:nothing@127.0.0.1:{closed}/none"
        ))
        .unwrap();
    let shutdown = CancellationToken::new();
    let monitor = Arc::new(Monitor::new(
        pool.into(),
        DeadLetterBoard::new("sumud.deadletter.v1"),
        LagBoard::new(),
    ));
    let state = Arc::new(AppState {
        monitor,
        frames: tokio::sync::watch::channel(None).0,
        shutdown: shutdown.clone(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        axum::serve(listener, http::router(state))
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
            .unwrap();
    });
    (addr, shutdown)
}

/// A plain HTTP/1.1 GET: (status, headers, body). With `head_only` it
/// returns once the headers arrived (for the never-ending event stream).
async fn get(addr: SocketAddr, path: &str, head_only: bool) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf))
            .await
            .expect("an answer within 20 s")
            .unwrap();
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if head_only && raw.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

fn validate(doc: &Value, path: &str, status: u16, body: &Value) {
    let schema = response_schema(doc, path, status, "application/json")
        .unwrap_or_else(|| panic!("GET {path} {status} application/json is not documented"));
    let validator = jsonschema::draft202012::new(&schema)
        .unwrap_or_else(|e| panic!("the schema of GET {path} {status} compiles: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "GET {path} {status}: {errors:#?}");
}

#[test]
fn every_served_path_is_documented_and_every_documented_path_is_served() {
    let doc = openapi::document();
    let documented: BTreeSet<(String, String)> = openapi::operations(&doc).into_iter().collect();
    let served: BTreeSet<(String, String)> = http::paths()
        .into_iter()
        .map(|p| (p.to_owned(), "get".to_owned()))
        .collect();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "served but not documented: {undocumented:?}"
    );
    assert!(
        unserved.is_empty(),
        "documented but not served: {unserved:?}"
    );
}

#[tokio::test]
async fn every_documented_path_answers_with_a_documented_status() {
    let doc = openapi::document();
    let (addr, shutdown) = serve_without_database().await;
    for (path, _) in openapi::operations(&doc) {
        let url = path.replace("{crisis_id}", "NO-SUCH-CRISIS");
        let streaming = path == "/api/events";
        let (status, head, body) = get(addr, &url, streaming).await;
        let responses = &doc["paths"][&path]["get"]["responses"];
        assert!(
            responses.get(status.to_string()).is_some(),
            "GET {url} answered {status}, which the document does not list: {body}"
        );
        // The content type is one the document names for that status.
        let content = responses[status.to_string()]["content"]
            .as_object()
            .unwrap();
        assert!(
            content
                .keys()
                .any(|media| head.contains(&format!("content-type: {media}"))),
            "GET {url} {status}: content type not documented in {head}"
        );
        if head.contains("content-type: application/json") && !streaming {
            let json: Value = serde_json::from_str(&body).unwrap();
            if path != "/openapi.json" {
                validate(&doc, &path, status, &json);
            }
        }
    }
    shutdown.cancel();
}

#[test]
fn snapshots_with_every_optional_field_set_or_unset_validate() {
    let doc = openapi::document();
    let now = Utc::now();
    let stage = |n: i64, with_money: bool| Stage {
        households: n,
        instructions: with_money.then_some(n),
        amount_minor: with_money.then_some(n * 1000),
    };
    let funnel = Funnel {
        affected: Stage {
            households: 10,
            instructions: None,
            amount_minor: None,
        },
        eligible: stage(8, true),
        waitlisted: stage(1, true),
        instructed: stage(8, true),
        in_flight: stage(2, true),
        paid: stage(6, true),
        failed: stage(0, true),
    };
    let crisis = |id: &str, alert: Option<TriggeringAlert>, processed: bool| CrisisSummary {
        crisis_id: id.into(),
        title: "Flash floods".into(),
        hazard: "flood".into(),
        severity: "severe".into(),
        state: "active".into(),
        revision: 2,
        pending_approval: !processed,
        areas: vec!["JO-MN".into()],
        currency: "JOD".into(),
        budget_minor: 1_000_000,
        committed_minor: processed.then_some(500),
        reserved_minor: processed.then_some(400),
        declared_by: "alice".into(),
        declared_at: now,
        updated_at: now,
        alert,
        funnel,
        field_tasks_open: 1,
        attention: Attention {
            held: 1,
            held_minor: 250,
            incidents_open: 1,
            pass_failures: 2,
            last_pass_error: processed.then(|| "a CHECK refused an amount of 0".into()),
        },
    };
    let alert = TriggeringAlert {
        kind: "cap".into(),
        source: "ncmc@example.jo".into(),
        reference: "FF-1".into(),
        sent_at: now,
        seconds_since: 12,
    };
    let snapshot = Snapshot {
        generated_at: now,
        crises: vec![crisis("A", Some(alert), true), crisis("B", None, false)],
        areas: vec![AreaRow {
            code: "JO-MN-01".into(),
            level: "district".into(),
            parent: Some("JO-MN".into()),
            name_en: "Ma'an".into(),
            name_ar: "معان".into(),
            currency: "JOD".into(),
            entitled_households: 1,
            entitled_minor: 2,
            paid_instructions: 3,
            paid_minor: 4,
            failed_instructions: 0,
            failed_minor: 0,
        }],
        grievances: [Some(now), None]
            .into_iter()
            .map(|oldest| GrievanceArea {
                code: "JO-MN".into(),
                name_en: "Ma'an".into(),
                name_ar: "معان".into(),
                open: i64::from(oldest.is_some()),
                not_included: i64::from(oldest.is_some()),
                wrong_amount: 0,
                not_received: 0,
                under_1_day: i64::from(oldest.is_some()),
                from_1_to_7_days: 0,
                over_7_days: 0,
                oldest_open_at: oldest,
                answered: 2,
            })
            .collect(),
        referrals: vec![ReferralArea {
            code: "JO-MN".into(),
            name_en: "Ma'an".into(),
            name_ar: "معان".into(),
            service: "rehabilitation".into(),
            provider: "moh-rehab".into(),
            referred: 3,
            accepted: 1,
            served: 2,
            declined: 0,
        }],
        providers: vec![ProviderHealth {
            provider: "wallet".into(),
            instructions: 4,
            open_instructions: 1,
            overdue: 0,
            window_seconds: 3600,
            acknowledged: 3,
            ack_latency_p50_seconds: Some(0.2),
            ack_latency_p95_seconds: None,
            final_reports: 3,
            rejected: 1,
            rejection_rate: Some(1.0 / 3.0),
            rejections_by_reason: vec![ReasonCount {
                reason: "timeout".into(),
                count: 1,
            }],
        }],
        dead_letters: DeadLetters {
            available: true,
            note: None,
            topic: "sumud.deadletter.v1".into(),
            total: 1,
            by_reason: vec![DeadLetterCount {
                service: "registry".into(),
                reason: "not_json".into(),
                count: 1,
                last_at: Some(now),
            }],
        },
        consumer_lag: ConsumerLag {
            available: false,
            note: Some("not read yet".into()),
            read_at: None,
            groups: vec![GroupLag {
                service: "registry".into(),
                group: "sumud-registry".into(),
                topic: "sumud.registry.v1".into(),
                lag: 0,
                partitions: 3,
                stalled_s: None,
            }],
        },
        sources: Sources::default(),
    };
    validate(
        &doc,
        "/api/snapshot",
        200,
        &serde_json::to_value(&snapshot).unwrap(),
    );
    // A field the document does not know is a drift, and is caught.
    let mut drifted = serde_json::to_value(&snapshot).unwrap();
    drifted["crises"][0]["funnel"]["paid"]["surprise"] = Value::from(1);
    let schema = response_schema(&doc, "/api/snapshot", 200, "application/json").unwrap();
    assert!(!jsonschema::draft202012::new(&schema)
        .unwrap()
        .is_valid(&drifted));
}
