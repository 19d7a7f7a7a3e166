//! One trace from the alert to the provider's status report, on the real
//! broker and database: a CAP flood alert declares a crisis through the
//! alerts service, eligibility decides, disbursement instructs, the provider
//! simulator answers — and every hop's `process` span is in the alert's
//! trace, exported over OTLP/HTTP to a tiny receiver started here.
//!
//! A test binary of its own: it installs the process's global subscriber
//! with the exporter on, before any service starts.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use chrono::{SecondsFormat, Utc};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use sumud_alerts::rules::RuleBook;
use sumud_disbursement::config::DisbursementConfig;
use sumud_provider_sim::behaviour::Behaviour;
use sumud_shared::envelope::Envelope;
use sumud_shared::events::alert::{ALERT_CAP, CAP_XML};
use sumud_tests::pipeline::*;
use sumud_tests::{wait_explained, wait_for};

/// A received span, reduced to what the test looks at.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    trace: String,
    name: String,
    kind: i32,
    attributes: BTreeMap<String, String>,
}

type Spans = Arc<Mutex<Vec<Received>>>;

/// The OTLP/HTTP traces endpoint: protobuf in, an empty success out.
async fn traces(State(spans): State<Spans>, body: Bytes) -> &'static str {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return "";
    };
    let mut out = spans.lock().unwrap();
    for rs in request.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|a| a.key == "service.name")
            .map(|a| text(a.value.as_ref().and_then(|v| v.value.as_ref())))
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                out.push(Received {
                    service: service.clone(),
                    trace: s.trace_id.iter().map(|b| format!("{b:02x}")).collect(),
                    name: s.name,
                    kind: s.kind,
                    attributes: s
                        .attributes
                        .into_iter()
                        .map(|a| (a.key, text(a.value.as_ref().and_then(|v| v.value.as_ref()))))
                        .collect(),
                });
            }
        }
    }
    ""
}

fn text(v: Option<&Any>) -> String {
    match v {
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::IntValue(i)) => i.to_string(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(Any::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    }
}

/// Starts the receiver on a free loopback port.
async fn receiver() -> (SocketAddr, Spans) {
    let spans: Spans = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/v1/traces", post(traces))
        .with_state(spans.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, spans)
}

fn cap_alert(id: &str) -> Envelope<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/cap/jordan-flood-alert.xml"
    );
    let sent = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, false);
    let expires =
        (Utc::now() + chrono::Duration::days(1)).to_rfc3339_opts(SecondsFormat::Secs, false);
    let xml = std::fs::read_to_string(path)
        .unwrap()
        .replace("{{ID}}", id)
        .replace("{{SENT}}", &sent)
        .replace("{{EXPIRES}}", &expires);
    let mut e = Envelope::new("urn:ncsc:early-warning", ALERT_CAP, None, xml);
    e.datacontenttype = CAP_XML.into();
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_runs_from_the_alert_to_the_providers_status_report() {
    // Arrange: the receiver, then telemetry exporting to it, then the pipeline.
    let (addr, spans) = receiver().await;
    std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"));
    std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "100");
    std::env::set_var("OTEL_BSP_MAX_QUEUE_SIZE", "65536");
    let telemetry = sumud_shared::telemetry::init("sumud-tests");
    assert!(sumud_shared::telemetry::exporting(), "the exporter is on");
    let schedule = DisbursementConfig {
        day_seconds: 3600.0,
        tick_ms: 100,
        ..DisbursementConfig::default()
    };
    let provider = Behaviour {
        latency_ms: 5,
        retryable_reject_rate: 0.0,
        permanent_reject_rate: 0.0,
        duplicate_rate: 0.0,
        late_pending_rate: 0.0,
        ..Behaviour::default()
    };
    let mut p = Pipeline::start_with_payments(3000, no_four_eyes(), schedule, provider).await;
    p.start_alerts(RuleBook::default_book()).await;
    let prefix = p.env.settings.group_prefix.clone();
    let t = p.env.settings.topics.clone();

    // Act: the alert, while the social registry streams updates (each
    // message the first of a trace of its own). Eligibility consumes both
    // topics, so its polls return households and the crisis event together;
    // the crisis's trace must still pass through eligibility's hop.
    let settings = p.env.settings.clone();
    let streaming = tokio::spawn(async move {
        sumud::registry_cmd::publish_synthetic(&settings, 30_000, 7, true).await
    });
    wait_for("the registry stream under way", DEADLINE, || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM registry.households")
            .fetch_one(&p.env.pool)
            .await
            .unwrap();
        (n > 5_000).then_some(())
    })
    .await;
    p.publish_alert("ncsc.gov.jo", &cap_alert("NCSC-TR-1"))
        .await;
    streaming.await.unwrap().unwrap();
    wait_for("a payment reported succeeded", DEADLINE, || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM disbursement.instructions WHERE status = 'succeeded'",
        )
        .fetch_one(&p.env.pool)
        .await
        .unwrap();
        (n > 0).then_some(())
    })
    .await;

    // Assert: one trace holds a CONSUMER `process` span of every hop.
    let hops: Vec<(String, String)> = vec![
        (format!("{prefix}-alerts"), t.alerts.clone()),
        (format!("{prefix}-control"), t.control.clone()),
        (format!("{prefix}-eligibility"), t.crisis.clone()),
        (format!("{prefix}-disbursement"), t.entitlements.clone()),
        (format!("{prefix}-provider-sim"), t.instructions.clone()),
        (format!("{prefix}-disbursement"), t.status.clone()),
    ];
    let (trace, found) = wait_explained(
        "one trace covering every hop",
        Duration::from_secs(60),
        || async {
            let spans = spans.lock().unwrap().clone();
            let alert_traces: BTreeSet<String> = spans
                .iter()
                .filter(|s| s.name == format!("process {}", t.alerts))
                .map(|s| s.trace.clone())
                .collect();
            let mut why = format!("{} spans received, no alert's trace yet", spans.len());
            for trace in alert_traces {
                let found: Vec<Option<Received>> = hops
                    .iter()
                    .map(|(group, topic)| {
                        spans
                            .iter()
                            .find(|s| {
                                s.trace == trace
                                    && s.name == format!("process {topic}")
                                    && s.attributes.get("messaging.consumer.group.name")
                                        == Some(group)
                            })
                            .cloned()
                    })
                    .collect();
                if found.iter().all(Option::is_some) {
                    return Ok((trace, found.into_iter().flatten().collect::<Vec<_>>()));
                }
                let missing: Vec<String> = hops
                    .iter()
                    .zip(&found)
                    .filter(|(_, f)| f.is_none())
                    .map(|((group, topic), _)| format!("{group} on {topic}"))
                    .collect();
                let in_trace: BTreeSet<String> = spans
                    .iter()
                    .filter(|s| s.trace == trace)
                    .map(|s| s.name.clone())
                    .collect();
                why = format!(
                    "trace {trace} lacks a process span of {missing:?}; its spans: {in_trace:?}"
                );
            }
            Err(why)
        },
    )
    .await;
    for (s, (group, topic)) in found.iter().zip(&hops) {
        assert_eq!(s.kind, SpanKind::Consumer as i32, "{s:?}");
        assert_eq!(s.service, "sumud-tests");
        let a = &s.attributes;
        assert_eq!(a["messaging.system"], "kafka", "{s:?}");
        assert_eq!(a["messaging.operation.type"], "process");
        assert_eq!(a["messaging.operation.name"], "process");
        assert_eq!(&a["messaging.destination.name"], topic);
        assert_eq!(&a["messaging.consumer.group.name"], group);
        assert!(
            a.contains_key("messaging.kafka.offset")
                || a.contains_key("messaging.batch.message_count"),
            "{s:?}"
        );
        assert!(
            !a.contains_key("messaging.kafka.message.key"),
            "keys (household ids) are never recorded"
        );
    }
    // The producer side of the same trace: every outgoing topic was sent.
    let spans = spans.lock().unwrap().clone();
    for topic in [
        &t.control,
        &t.crisis,
        &t.entitlements,
        &t.instructions,
        &t.status,
    ] {
        let send = spans
            .iter()
            .find(|s| s.trace == trace && s.name == format!("send {topic}"))
            .unwrap_or_else(|| panic!("no `send {topic}` span in the trace"));
        assert_eq!(send.kind, SpanKind::Producer as i32);
        assert_eq!(send.attributes["messaging.operation.type"], "publish");
        assert_eq!(&send.attributes["messaging.destination.name"], topic);
    }
    p.stop().await;
    drop(telemetry);
}
