//! Early warning to anticipatory action, on the real broker and database:
//! CAP alerts and indicator readings → alerts service → signed commands →
//! control → eligibility → disbursement. The CAP documents are the templates
//! in `tests/data/cap/` (real-world shapes: multi-language info blocks,
//! polygons, circles, geocodes, Update and Cancel chains) and two documents
//! issued by real alerting authorities elsewhere.

use chrono::{SecondsFormat, Utc};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use sumud_alerts::rules::RuleBook;
use sumud_alerts::senders::SenderBook;
use sumud_control::config::ControlConfig;
use sumud_control::signing::Jwk;
use sumud_disbursement::config::DisbursementConfig;
use sumud_provider_sim::behaviour::Behaviour;
use sumud_shared::db::Store;
use sumud_shared::deadletter::Reason;
use sumud_shared::envelope::Envelope;
use sumud_shared::events::alert::{IndicatorReading, ALERT_CAP, CAP_XML, INDICATOR_READING};
use sumud_shared::events::control::CommandKind;
use sumud_shared::events::crisis::{CrisisState, Hazard, Severity};
use sumud_shared::events::household::Household;
use sumud_shared::on_store;
use sumud_tests::pipeline::*;
use sumud_tests::{on_both_backends, wait_for, Backend, Stage};

fn template(name: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/cap/");
    std::fs::read_to_string(format!("{path}{name}")).unwrap()
}

/// A CAP document from a template, sent now and expiring in a day.
fn document(name: &str, id: &str, fill: &[(&str, &str)]) -> (String, String) {
    let sent = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, false);
    let expires =
        (Utc::now() + chrono::Duration::days(1)).to_rfc3339_opts(SecondsFormat::Secs, false);
    let mut doc = template(name);
    for (k, v) in fill {
        doc = doc.replace(k, v);
    }
    let doc = doc
        .replace("{{ID}}", id)
        .replace("{{SENT}}", &sent)
        .replace("{{EXPIRES}}", &expires);
    (doc, sent)
}

fn cap_event(xml: String) -> Envelope<String> {
    let mut e = Envelope::new("urn:ncsc:early-warning", ALERT_CAP, None, xml);
    e.datacontenttype = CAP_XML.into();
    e
}

/// Share of households under the poverty line of the shipped rules (30).
fn poor_share(households: &[Household], area: &str) -> f64 {
    let inside: Vec<&Household> = households
        .iter()
        .filter(|h| h.area_code == area || h.area_code.starts_with(&format!("{area}-")))
        .collect();
    inside.iter().filter(|h| h.welfare_score < 30.0).count() as f64 / inside.len().max(1) as f64
}

/// The crisis as control holds it, once it reaches `state` at `revision`.
async fn wait_control(
    p: &Pipeline,
    crisis: &str,
    state: CrisisState,
    revision: i32,
) -> sumud_control::lifecycle::Crisis {
    wait_for(
        &format!("{crisis} {} r{revision}", state.as_str()),
        DEADLINE,
        || async {
            sumud_control::db::crisis(&p.env.store, crisis)
                .await
                .unwrap()
                .filter(|c| c.state == state && c.revision == revision)
        },
    )
    .await
}

/// The flood alert of the template (delivered twice, acted on once)
/// declares one crisis over the poor district its polygon covers; returns
/// the crisis and the alert's `sent`.
async fn declare_by_flood_alert(p: &Pipeline) -> (String, String) {
    let (alert, sent) = document("jordan-flood-alert.xml", "NCSC-FL-1", &[]);
    p.publish_alert("ncsc.gov.jo", &cap_event(alert.clone()))
        .await;
    p.publish_alert("ncsc.gov.jo", &cap_event(alert)).await;
    let (outcome, crisis) = alert_outcome(p, "NCSC-FL-1").await;
    assert_eq!(outcome, "declared");
    let crisis = crisis.expect("the alert caused a crisis");
    let c = wait_control(p, &crisis, CrisisState::Active, 1).await;
    assert_eq!(c.definition.areas, vec!["JO-MA-01".to_string()]);
    assert_eq!(c.definition.hazard, Hazard::Flood);
    assert_eq!(c.definition.severity, Severity::Severe);
    (crisis, sent)
}

/// The Update referring to that alert widens the footprint (the crisis is
/// amended, not duplicated); the Cancel referring to both closes it.
async fn update_then_cancel(p: &Pipeline, crisis: &str, sent: &str) {
    let refs = format!("ncsc.gov.jo,NCSC-FL-1,{sent}");
    let (update, update_sent) = document(
        "jordan-flood-update.xml",
        "NCSC-FL-2",
        &[("{{REFERENCES}}", &refs)],
    );
    p.publish_alert("ncsc.gov.jo", &cap_event(update)).await;
    assert_eq!(alert_outcome(p, "NCSC-FL-2").await.0, "amended");
    let c = wait_control(p, crisis, CrisisState::Active, 2).await;
    assert_eq!(c.definition.areas, vec!["JO-MA-01", "JO-MA-02"]);
    assert_eq!(c.definition.severity, Severity::Extreme);

    let refs = format!("{refs} ncsc.gov.jo,NCSC-FL-2,{update_sent}");
    let (cancel, _) = document(
        "jordan-flood-cancel.xml",
        "NCSC-FL-3",
        &[("{{REFERENCES}}", &refs)],
    );
    p.publish_alert("ncsc.gov.jo", &cap_event(cancel)).await;
    assert_eq!(alert_outcome(p, "NCSC-FL-3").await.0, "cancelled");
    wait_control(p, crisis, CrisisState::Closed, 2).await;
}

async fn alert_outcome(p: &Pipeline, identifier: &str) -> (String, Option<String>) {
    wait_for(
        &format!("alert {identifier} recorded"),
        DEADLINE,
        || async {
            let sql = "SELECT outcome, crisis_id FROM alerts.alerts WHERE identifier = $1";
            on_store!(&p.env.store, pool => sqlx::query_as(sql)
                .bind(identifier)
                .fetch_optional(pool)
                .await)
            .unwrap()
        },
    )
    .await
}

/// The food price index of Irbid for the period ending on `day`.
fn reading(day: &str, value: f64) -> Envelope<IndicatorReading> {
    Envelope::new(
        "urn:dos:cpi",
        INDICATOR_READING,
        Some("JO-IR".into()),
        IndicatorReading {
            source: "dos.gov.jo".into(),
            indicator: "food_price_index".into(),
            area: "JO-IR".into(),
            period_end: day.parse().unwrap(),
            value,
            unit: Some("index".into()),
        },
    )
}

/// What caused a crisis, as control recorded it (jsonb on PostgreSQL, JSON
/// text on SQLite).
async fn trigger_of(p: &Pipeline, crisis: &str) -> Value {
    let sql = "SELECT trigger FROM control.crises WHERE crisis_id = $1";
    match &p.env.store {
        Store::Postgres(pool) => sqlx::query_scalar::<_, Option<Value>>(sql)
            .bind(crisis)
            .fetch_one(pool)
            .await
            .unwrap(),
        Store::Sqlite(pool) => sqlx::query_scalar::<_, Option<String>>(sql)
            .bind(crisis)
            .fetch_one(pool)
            .await
            .unwrap()
            .map(|t| serde_json::from_str(&t).unwrap()),
    }
    .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_alert_chain_declares_pays_amends_and_cancels_exactly_once() {
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
    // The scenario's premise, computed from the registry independently: the
    // polygon's district is poor enough for the rule, the geocoded one is not.
    assert!(poor_share(&p.households, "JO-MA-01") > 0.2);
    assert!(poor_share(&p.households, "JO-AM-01") <= 0.2);
    assert!(poor_share(&p.households, "JO-MA-02") > 0.2);
    p.start_alerts(RuleBook::default_book()).await;

    let (crisis, sent) = declare_by_flood_alert(&p).await;
    let trigger = trigger_of(&p, &crisis).await;
    assert_eq!(trigger["rule"]["id"], "flood-severe-poor-areas");
    assert_eq!(trigger["rule"]["version"], 3);
    assert_eq!(trigger["alert"]["identifier"], "NCSC-FL-1");
    assert!(
        trigger["poverty"]["areas"]["JO-AM-01"]["poor_share"]
            .as_f64()
            .unwrap()
            <= 0.2
    );

    // First tranche instructed (and acknowledged by the provider).
    let first = wait_for("first instructions", DEADLINE, || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM disbursement.instructions WHERE crisis_id = $1 AND status IN ('received', 'pending', 'succeeded')",
        )
        .bind(&crisis)
        .fetch_one(&p.env.pool)
        .await
        .unwrap();
        (n > 0).then_some(n)
    })
    .await;
    assert!(first > 0);

    // Update, then Cancel after payments started: the crisis is amended,
    // then closes; no new tranche.
    update_then_cancel(&p, &crisis, &sent).await;

    let crises = p
        .count("SELECT count(*) FROM control.crises WHERE crisis_id LIKE 'EW-%'")
        .await;
    assert_eq!(crises, 1, "one crisis for the whole chain");
    let audit: Vec<(String, String)> = sqlx::query_as(
        "SELECT kind, principal FROM control.audit WHERE crisis_id = $1 ORDER BY seq",
    )
    .bind(&crisis)
    .fetch_all(&p.env.pool)
    .await
    .unwrap();
    assert_eq!(
        audit,
        vec![
            ("crisis.declare".to_string(), "early-warning".to_string()),
            ("crisis.rescope".to_string(), "early-warning".to_string()),
            ("crisis.close".to_string(), "early-warning".to_string()),
        ]
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposals_wait_for_an_operator_and_exercises_only_rehearse() {
    let mut p = Pipeline::start(2000, no_four_eyes()).await;
    p.start_alerts(RuleBook::default_book()).await;

    // An exercise: recorded with the command it would have sent, nothing declared.
    let (exercise, _) = document(
        "jordan-snowstorm-circle.xml",
        "JMD-EX-1",
        &[("{{STATUS}}", "Exercise")],
    );
    p.publish_alert("jmd.gov.jo", &cap_event(exercise)).await;
    assert_eq!(
        alert_outcome(&p, "JMD-EX-1").await,
        ("dry_run".into(), None)
    );
    let rehearsed: Value =
        sqlx::query_scalar("SELECT command FROM alerts.alerts WHERE identifier = 'JMD-EX-1'")
            .fetch_one(&p.env.pool)
            .await
            .unwrap();
    assert_eq!(rehearsed["cmd"], "crisis.declare");
    assert_eq!(rehearsed["propose"], true);

    // The real thing: the cold-wave rule proposes; bob approves.
    let (storm, _) = document(
        "jordan-snowstorm-circle.xml",
        "JMD-SN-1",
        &[("{{STATUS}}", "Actual")],
    );
    p.publish_alert("jmd.gov.jo", &cap_event(storm)).await;
    let (outcome, crisis) = alert_outcome(&p, "JMD-SN-1").await;
    assert_eq!(outcome, "proposed");
    let crisis = crisis.unwrap();
    let def = wait_control(&p, &crisis, CrisisState::Proposed, 1)
        .await
        .definition;
    assert_eq!(def.hazard, Hazard::ColdWave);
    assert!(
        def.areas.iter().all(|a| a.starts_with("JO-AJ")),
        "{:?}",
        def.areas
    );
    assert_eq!(
        p.count("SELECT count(*) FROM eligibility.entitlements")
            .await,
        0,
        "nothing is decided before approval"
    );
    p.send(&p.bob, &approval(&crisis, 1, &def)).await;
    wait_control(&p, &crisis, CrisisState::Active, 1).await;
    wait_for("entitlements after approval", DEADLINE, || async {
        (p.count("SELECT count(*) FROM eligibility.entitlements")
            .await
            > 0)
        .then_some(())
    })
    .await;

    p.stop().await;
}

async fn bad_alerts_are_dead_lettered_with_reasons_and_untrusted_ones_recorded(backend: Backend) {
    let mut p = Pipeline::start_early_warning(backend, 500, no_four_eyes()).await;
    p.start_alerts(RuleBook::default_book()).await;
    let (good, _) = document("jordan-flood-alert.xml", "NCSC-OK", &[]);
    let past =
        (Utc::now() - chrono::Duration::hours(1)).to_rfc3339_opts(SecondsFormat::Secs, false);
    let (expired, _) = document(
        "jordan-flood-alert.xml",
        "NCSC-OLD",
        &[("{{EXPIRES}}", &past)],
    );
    let cases: Vec<(&str, Envelope<Value>, Reason)> = vec![
        (
            "malformed xml",
            to_value(cap_event(good[..400].to_string())),
            Reason::CapInvalid,
        ),
        (
            "wrong namespace",
            to_value(cap_event(
                good.replace("emergency:cap:1.2", "emergency:cap:2.0"),
            )),
            Reason::CapInvalid,
        ),
        (
            "missing sender",
            to_value(cap_event(good.replace("<sender>ncsc.gov.jo</sender>", ""))),
            Reason::CapInvalid,
        ),
        (
            "polygon not closed",
            to_value(cap_event(good.replacen(
                "32.35,36.20 32.33,36.20<",
                "32.35,36.20 32.34,36.21<",
                1,
            ))),
            Reason::CapInvalid,
        ),
        (
            "unknown geocode",
            to_value(cap_event(good.replace("JO-AM-01", "JO-XX-09"))),
            Reason::UnknownArea,
        ),
        (
            // One large entity referenced a thousand times: expanded, it
            // grows without bound (here 10 MB, kept small so that a
            // regression fails by acting instead of exhausting memory).
            "entity expansion",
            to_value(cap_event(
                good.replace("NCSC-OK", "NCSC-ENTITY")
                    .replacen(
                        "<alert ",
                        &format!(
                            "<!DOCTYPE alert [<!ENTITY a \"{}\">]>\n<alert ",
                            "A".repeat(10_000)
                        ),
                        1,
                    )
                    .replacen(
                        "<headline>",
                        &format!("<headline>{}", "&a;".repeat(1_000)),
                        1,
                    ),
            )),
            Reason::CapInvalid,
        ),
        ("expired", to_value(cap_event(expired)), Reason::Expired),
        (
            "xml content type, object data",
            {
                let mut e = Envelope::new("urn:x", ALERT_CAP, None, json!({"xml": 1}));
                e.datacontenttype = CAP_XML.into();
                e
            },
            Reason::CapInvalid,
        ),
        (
            "json form missing severity",
            Envelope::new(
                "urn:x",
                ALERT_CAP,
                None,
                json!({"identifier": "J", "sender": "s", "sent": "2026-11-29T06:00:00+03:00", "status": "Actual",
                       "msgType": "Alert", "scope": "Public",
                       "info": [{"category": ["Met"], "event": "Flood", "urgency": "Immediate", "certainty": "Likely"}]}),
            ),
            Reason::SchemaInvalid,
        ),
        (
            "reading for an unknown area",
            Envelope::new(
                "urn:x",
                INDICATOR_READING,
                None,
                json!({"source": "s", "indicator": "food_price_index", "area": "JO-QQ", "period_end": "2026-11-01", "value": 1.0}),
            ),
            Reason::UnknownArea,
        ),
    ];
    for (_, e, _) in &cases {
        p.publish_alert("bad", e).await;
    }
    // Real documents from other authorities: parse, record as untrusted,
    // dead-letter, no action.
    let mut foreign_ids = Vec::new();
    for name in [
        "nws-blizzard-warning-cap11.xml",
        "tsunami-cancellation-update.xml",
    ] {
        let e = cap_event(template(name));
        foreign_ids.push(e.id.clone());
        p.publish_alert("foreign", &e).await;
    }
    // And after all that, a valid alert still acts.
    p.publish_alert("ncsc.gov.jo", &cap_event(good)).await;
    assert_eq!(alert_outcome(&p, "NCSC-OK").await.0, "declared");

    let letters = p.dead_letters(cases.len() + 2);
    let got: BTreeMap<String, Reason> = letters
        .iter()
        .map(|d| (d.original_id.clone().unwrap_or_default(), d.reason))
        .collect();
    assert_eq!(letters.len(), cases.len() + 2, "{letters:#?}");
    for (what, e, reason) in &cases {
        assert_eq!(got.get(&e.id), Some(reason), "{what}");
    }
    assert_eq!(
        foreign_ids
            .iter()
            .map(|id| got.get(id).copied())
            .collect::<Vec<_>>(),
        vec![Some(Reason::UntrustedSender); 2],
        "authorities not on the trusted-sender list"
    );
    let sql = "SELECT outcome, msg_type FROM alerts.alerts WHERE sender NOT LIKE '%.jo' ORDER BY msg_type";
    let foreign: Vec<(String, String)> =
        on_store!(&p.env.store, pool => sqlx::query_as(sql).fetch_all(pool).await).unwrap();
    assert_eq!(
        foreign,
        vec![
            ("untrusted_sender".to_string(), "Alert".to_string()),
            ("untrusted_sender".to_string(), "Update".to_string()),
        ]
    );
    p.stop().await;
}

fn to_value<T: serde::Serialize>(e: Envelope<T>) -> Envelope<Value> {
    serde_json::from_slice(&e.to_bytes()).unwrap()
}

async fn a_simulation_and_the_live_response_to_the_same_inputs_agree(backend: Backend) {
    let p = Pipeline::start_on(backend, 3000, no_four_eyes()).await;
    // The footprint of a CAP file, as `sumud simulate --cap` reads it.
    let (alert, _) = document("jordan-flood-alert.xml", "SIM-1", &[]);
    let file = std::env::temp_dir().join(format!("sumud-sim-{}.xml", uuid::Uuid::new_v4()));
    std::fs::write(&file, alert).unwrap();
    let place = sumud::alerts_cmd::FootprintArgs {
        cap: Some(file.clone()),
        polygon: None,
    };
    let mut areas = place.areas().unwrap().unwrap();
    std::fs::remove_file(file).unwrap();
    assert_eq!(areas, vec!["JO-AM-01", "JO-MA-01"]);
    areas.push("JO-AJ".into());
    let area_refs: Vec<&str> = areas.iter().map(String::as_str).collect();
    let def = definition(&area_refs, "10000");

    let sim = sumud_eligibility::simulate::simulate(&p.env.store, &def)
        .await
        .unwrap();
    assert!(
        sim.entitled > 0 && sim.waitlisted > 0,
        "the budget binds: {sim:?}"
    );
    assert!(sim.committed_minor <= def.budget.minor);
    assert_eq!(
        p.count("SELECT count(*) FROM eligibility.crises").await,
        0,
        "a simulation leaves nothing behind"
    );

    p.send(
        &p.alice,
        &claims(CommandKind::Declare, "SIM-LIVE", Some(def)),
    )
    .await;
    p.wait_count(
        "the live decisions",
        "SELECT count(*) FROM eligibility.entitlements WHERE crisis_id = 'SIM-LIVE'",
        sim.entitled + sim.waitlisted,
    )
    .await;
    let mut tx = p.env.store.begin().await.unwrap();
    let live = sumud_eligibility::db::caseload(&mut tx, "SIM-LIVE")
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(live, sim.lines, "by district and expansion type");
    let committed = p
        .count("SELECT committed_minor FROM eligibility.crises WHERE crisis_id = 'SIM-LIVE'")
        .await;
    assert_eq!(committed, sim.committed_minor);
    p.stop().await;
}

async fn an_alert_update_and_cancel_declare_amend_and_close_one_crisis(backend: Backend) {
    let mut p = Pipeline::start_early_warning(backend, 3000, no_four_eyes()).await;
    assert!(poor_share(&p.households, "JO-MA-01") > 0.2);
    assert!(poor_share(&p.households, "JO-AM-01") <= 0.2);
    p.start_alerts(RuleBook::default_book()).await;

    let (crisis, sent) = declare_by_flood_alert(&p).await;
    update_then_cancel(&p, &crisis, &sent).await;

    assert_eq!(
        p.count("SELECT count(*) FROM control.crises").await,
        1,
        "one crisis for the whole chain"
    );
    let recent = sumud_alerts::db::recent(&p.env.store, 10).await.unwrap();
    let listed: Vec<(&str, &str, Option<&str>)> = recent
        .iter()
        .map(|a| {
            (
                a.identifier.as_str(),
                a.outcome.as_str(),
                a.crisis_id.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            ("NCSC-FL-3", "cancelled", Some(crisis.as_str())),
            ("NCSC-FL-2", "amended", Some(crisis.as_str())),
            ("NCSC-FL-1", "declared", Some(crisis.as_str())),
        ],
        "every alert recorded once, newest first"
    );
    assert_eq!(recent[1].areas, vec!["JO-MA-01", "JO-MA-02"]);
    assert_eq!(recent[0].kind, "Actual/Cancel");
    let audit = sumud_control::db::audit_trail(&p.env.store, &crisis)
        .await
        .unwrap();
    let steps: Vec<(&str, &str)> = audit.iter().map(|a| (a.1.as_str(), a.2.as_str())).collect();
    assert_eq!(
        steps,
        vec![
            ("crisis.declare", "early-warning"),
            ("crisis.rescope", "early-warning"),
            ("crisis.close", "early-warning"),
        ]
    );
    p.stop().await;
}

async fn a_price_rise_over_the_window_proposes_one_top_up(backend: Backend) {
    let mut p = Pipeline::start_early_warning(backend, 500, no_four_eyes()).await;
    p.start_alerts(RuleBook::default_book()).await;
    // A 20% rise over 30 days, then the next day inside the same rise, then
    // a redelivery of the same point.
    for (day, value) in [
        ("2026-10-01", 100.0),
        ("2026-10-31", 120.0),
        ("2026-11-01", 125.0),
        ("2026-10-31", 120.0),
    ] {
        p.publish_alert("JO-IR", &reading(day, value)).await;
    }
    p.wait_count("readings stored", "SELECT count(*) FROM alerts.readings", 3)
        .await;
    let proposed = wait_for("price-shock proposal", DEADLINE, || async {
        let crises = sumud_control::db::crises(&p.env.store).await.unwrap();
        let shocks: Vec<_> = crises
            .into_iter()
            .filter(|c| c.definition.hazard == Hazard::PriceShock)
            .collect();
        (!shocks.is_empty()).then_some(shocks)
    })
    .await;
    assert_eq!(proposed.len(), 1);
    assert_eq!(proposed[0].state, CrisisState::Proposed);
    assert_eq!(proposed[0].definition.areas, vec!["JO-IR".to_string()]);
    let trigger = trigger_of(&p, &proposed[0].id).await;
    assert_eq!(trigger["rule"]["id"], "food-price-spike");
    assert_eq!(trigger["readings"][0]["value"], 100.0);
    assert_eq!(trigger["readings"][1]["value"], 120.0);
    // Nothing else was proposed, and the redelivered point was no conflict:
    // checked once alerts, then control, have judged everything and
    // published what they enqueued, so that nothing more can come.
    let t = &p.env.settings.topics;
    p.env
        .settle(
            &[
                Stage {
                    service: "alerts",
                    topic: &t.alerts,
                    outbox: Some("alerts"),
                },
                Stage {
                    service: "control",
                    topic: &t.control,
                    outbox: Some("control"),
                },
            ],
            DEADLINE,
        )
        .await;
    assert_eq!(
        p.count("SELECT count(*) FROM alerts.triggers").await,
        1,
        "the next day's reading is inside the same rise"
    );
    assert_eq!(p.count("SELECT count(*) FROM control.crises").await, 1);
    let letters = p.env.read_all(&t.deadletter);
    assert!(letters.is_empty(), "{} dead letters", letters.len());
    p.stop().await;
}

/// A redelivery (a consumer restart, a rebalance) may come after the alert
/// expired; it is the same alert, already applied: nothing to say about it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applied_alert_redelivered_after_it_expired_is_a_duplicate_not_a_dead_letter() {
    let mut p = Pipeline::start_early_warning(Backend::Postgres, 300, no_four_eyes()).await;
    p.start_alerts(RuleBook::default_book()).await;
    let expires_at = Utc::now() + chrono::Duration::seconds(20);
    let soon = expires_at.to_rfc3339_opts(SecondsFormat::Secs, false);
    let (doc, _) = document(
        "jordan-flood-alert.xml",
        "NCSC-SOON",
        &[("{{EXPIRES}}", &soon)],
    );
    let alert = cap_event(doc);
    p.publish_alert("ncsc.gov.jo", &alert).await;
    assert_eq!(alert_outcome(&p, "NCSC-SOON").await.0, "declared");

    wait_for("the alert to expire", DEADLINE, || async {
        (Utc::now() > expires_at + chrono::Duration::seconds(1)).then_some(())
    })
    .await;
    p.publish_alert("ncsc.gov.jo", &alert).await;
    // A sentinel on the same key, processed after the redelivery: the
    // first dead letter must be its.
    let past =
        (Utc::now() - chrono::Duration::hours(1)).to_rfc3339_opts(SecondsFormat::Secs, false);
    let (old, _) = document(
        "jordan-flood-alert.xml",
        "NCSC-STALE",
        &[("{{EXPIRES}}", &past)],
    );
    let sentinel = cap_event(old);
    p.publish_alert("ncsc.gov.jo", &sentinel).await;

    let letters = p.dead_letters(1);
    assert_eq!(letters.len(), 1, "{letters:#?}");
    assert_eq!(
        letters[0].original_id.as_deref(),
        Some(sentinel.id.as_str())
    );
    assert_eq!(letters[0].reason, Reason::Expired);
    assert_eq!(p.count("SELECT count(*) FROM alerts.alerts").await, 1);
    assert_eq!(p.count("SELECT count(*) FROM control.crises").await, 1);
    p.stop().await;
}

/// The demo's sequence, then the attack: the rule declares at its budget
/// (50,000 JOD), alice proposes a raise to 150,000 JOD over two tranches,
/// bob approves it, and then the alert is updated. Before an Update was a
/// rescope, the alerts service rebuilt the definition from the rule and the
/// resulting cut applied without four eyes, undoing both operators.
async fn an_alert_update_never_undoes_what_operators_approved(backend: Backend) {
    let config = ControlConfig {
        four_eyes_threshold_minor: 50_000_000,
        ..ControlConfig::default()
    };
    let mut p = Pipeline::start_early_warning(backend, 3000, config).await;
    p.start_alerts(RuleBook::default_book()).await;
    let (crisis, sent) = declare_by_flood_alert(&p).await;
    let mut raised = wait_control(&p, &crisis, CrisisState::Active, 1)
        .await
        .definition;
    assert_eq!(raised.budget.minor, 50_000_000, "the rule's budget");
    raised.budget.minor = 150_000_000;
    raised.response.overrides.tranches = Some(2);
    p.send(
        &p.alice,
        &claims(CommandKind::Amend, &crisis, Some(raised.clone())),
    )
    .await;
    wait_for("the raise to be pending", DEADLINE, || async {
        sumud_control::db::crisis(&p.env.store, &crisis)
            .await
            .unwrap()
            .and_then(|c| c.pending)
    })
    .await;
    p.send(&p.bob, &approval(&crisis, 2, &raised)).await;
    wait_control(&p, &crisis, CrisisState::Active, 2).await;

    let refs = format!("ncsc.gov.jo,NCSC-FL-1,{sent}");
    let (update, _) = document(
        "jordan-flood-update.xml",
        "NCSC-FL-2",
        &[("{{REFERENCES}}", &refs)],
    );
    p.publish_alert("ncsc.gov.jo", &cap_event(update)).await;
    let after = wait_control(&p, &crisis, CrisisState::Active, 3)
        .await
        .definition;
    assert_eq!(
        after.areas,
        vec!["JO-MA-01", "JO-MA-02"],
        "the alert's footprint"
    );
    assert_eq!(after.severity, Severity::Extreme, "the alert's severity");
    assert_eq!(after.budget, raised.budget, "the approved raise stands");
    assert_eq!(
        after.response, raised.response,
        "the operators' overrides stand"
    );
    let audit = sumud_control::db::audit_trail(&p.env.store, &crisis)
        .await
        .unwrap();
    let steps: Vec<(&str, &str)> = audit.iter().map(|a| (a.1.as_str(), a.2.as_str())).collect();
    assert_eq!(
        steps,
        vec![
            ("crisis.declare", "early-warning"),
            ("crisis.amend", "alice"),
            ("crisis.approve", "bob"),
            ("crisis.rescope", "early-warning"),
        ]
    );
    p.stop().await;
}

/// The senders the trust test runs with: the shipped list with the
/// meteorological department confined to Ajloun, plus a sender held to a
/// signature by `key`.
fn trust_book(key: &Jwk) -> SenderBook {
    let mut book: Value = serde_json::from_str(include_str!(
        "../../services/alerts/data/trusted_senders.json"
    ))
    .unwrap();
    for s in book["senders"].as_array_mut().unwrap() {
        if s["sender"] == "jmd.gov.jo" {
            s["areas"] = json!(["JO-AJ"]);
        }
    }
    book["senders"].as_array_mut().unwrap().push(json!({
        "sender": "signed.gov.jo", "name": "A sender that signs", "areas": ["JO"],
        "rules": ["flood-severe-poor-areas"], "key": {"kid": key.kid, "x": key.x},
    }));
    SenderBook::from_json(&book.to_string(), &RuleBook::default_book()).unwrap()
}

/// The flood alert of the template as `sender` sends it.
fn flood_from(sender: &str, id: &str) -> Envelope<String> {
    let (doc, _) = document("jordan-flood-alert.xml", id, &[]);
    cap_event(doc.replace(
        "<sender>ncsc.gov.jo</sender>",
        &format!("<sender>{sender}</sender>"),
    ))
}

/// Publishes `e` signed by `key` (the `capsignature` profile).
async fn publish_signed(p: &Pipeline, sender: &str, e: &Envelope<String>, key: &Jwk) {
    let mut value = serde_json::to_value(e).unwrap();
    sumud_alerts::senders::sign_event(&mut value, key).unwrap();
    p.env
        .publish(
            &p.env.settings.topics.alerts,
            sender,
            &serde_json::to_vec(&value).unwrap(),
        )
        .await;
}

/// The attacks: anyone who can write the alerts topic declares a crisis
/// (a `declare` rule's budget is below four eyes); a trusted sender cancels
/// or re-scopes another sender's crisis; a sender alerts outside its remit;
/// a keyed sender's alert is forged. Before senders were checked, the first
/// declared a crisis and the Cancel closed the crisis another sender caused.
async fn only_trusted_senders_act_and_only_on_their_own_alerts(backend: Backend) {
    let mut p = Pipeline::start_early_warning(backend, 3000, no_four_eyes()).await;
    let signer = Jwk::generate("signed-1");
    p.start_alerts_trusting(RuleBook::default_book(), trust_book(&signer))
        .await;

    // An unknown sender: recorded, dead-lettered, never acts.
    p.publish_alert("evil.example", &flood_from("evil.example", "EVIL-1"))
        .await;
    assert_eq!(
        alert_outcome(&p, "EVIL-1").await,
        ("untrusted_sender".into(), None)
    );
    let letters = p.dead_letters(1);
    assert_eq!(letters[0].reason, Reason::UntrustedSender, "{letters:?}");

    // The crisis centre's alert declares; another trusted sender may not
    // change or cancel it.
    let (crisis, sent) = declare_by_flood_alert(&p).await;
    let refs = format!("ncsc.gov.jo,NCSC-FL-1,{sent}");
    for (template, id) in [
        ("jordan-flood-update.xml", "JMD-UPD-1"),
        ("jordan-flood-cancel.xml", "JMD-CAN-1"),
    ] {
        let (doc, _) = document(template, id, &[("{{REFERENCES}}", &refs)]);
        let doc = doc.replace(
            "<sender>ncsc.gov.jo</sender>",
            "<sender>jmd.gov.jo</sender>",
        );
        p.publish_alert("jmd.gov.jo", &cap_event(doc)).await;
        assert_eq!(alert_outcome(&p, id).await.0, "untrusted_sender");
    }
    let letters = p.dead_letters(3);
    assert_eq!(
        letters.iter().map(|l| l.reason).collect::<Vec<_>>(),
        vec![Reason::UntrustedSender; 3],
        "{letters:?}"
    );

    // The meteorological department speaks for Ajloun, not Ma'an.
    p.publish_alert("jmd.gov.jo", &flood_from("jmd.gov.jo", "JMD-FL-1"))
        .await;
    assert_eq!(
        alert_outcome(&p, "JMD-FL-1").await,
        ("outside_sender_areas".into(), None)
    );

    // A keyed sender: unsigned and forged alerts are dead-lettered and not
    // recorded (a forgery must not take the real alert's identifier); the
    // signed one acts.
    let forger = Jwk {
        kid: signer.kid.clone(),
        ..Jwk::generate("forger")
    };
    p.publish_alert("signed.gov.jo", &flood_from("signed.gov.jo", "SIG-1"))
        .await;
    publish_signed(
        &p,
        "signed.gov.jo",
        &flood_from("signed.gov.jo", "SIG-1"),
        &forger,
    )
    .await;
    publish_signed(
        &p,
        "signed.gov.jo",
        &flood_from("signed.gov.jo", "SIG-1"),
        &signer,
    )
    .await;
    let (outcome, signed_crisis) = alert_outcome(&p, "SIG-1").await;
    assert_eq!(outcome, "declared");
    // Dead letters come back by partition, not in order: compare as sets.
    let mut reasons: Vec<Reason> = p.dead_letters(5).iter().map(|l| l.reason).collect();
    reasons.sort_by_key(|r| r.code());
    let mut want = vec![
        Reason::UntrustedSender,
        Reason::UntrustedSender,
        Reason::UntrustedSender,
        Reason::Unsigned,
        Reason::BadSignature,
    ];
    want.sort_by_key(|r| r.code());
    assert_eq!(reasons, want);

    // What stands: two crises, the first untouched by the other sender.
    let signed_crisis = signed_crisis.expect("the signed alert caused a crisis");
    wait_control(&p, &signed_crisis, CrisisState::Active, 1).await;
    let first = wait_control(&p, &crisis, CrisisState::Active, 1).await;
    assert_eq!(first.definition.areas, vec!["JO-MA-01"]);
    let ids: Vec<(String,)> = on_store!(&p.env.store, pool => sqlx::query_as(
        "SELECT crisis_id FROM control.crises ORDER BY crisis_id").fetch_all(pool).await)
    .unwrap();
    let mut want = vec![crisis.clone(), signed_crisis];
    want.sort();
    assert_eq!(ids.into_iter().map(|r| r.0).collect::<Vec<_>>(), want);
    p.stop().await;
}

/// The address space the alerts process may use in the memory test
/// (`prlimit --as`): room for its runtime, Kafka client and allocator
/// arenas, far less than one expanded entity bomb.
const ALERTS_ADDRESS_SPACE: u64 = 2 << 30;

/// The flood alert of the template with a DOCTYPE `decl` before its root
/// and `refs` at the start of its headline.
fn with_doctype(id: &str, decl: &str, refs: &str) -> Envelope<String> {
    let (good, _) = document("jordan-flood-alert.xml", id, &[]);
    cap_event(
        good.replacen("<alert ", &format!("{decl}\n<alert "), 1)
            .replacen("<headline>", &format!("<headline>{refs}"), 1),
    )
}

/// The attack of issue 27: entity expansion from messages under the size
/// limit — one 200 KB entity referenced 20,000 times (4 GB expanded, a
/// 260 KB message; it once grew `sumud up` by 30 MB a second until it was
/// killed, then crash-looped on the same offset), nested "billion laughs",
/// parameter entities and an external entity. The alerts service runs as
/// its own process under an address-space limit; it must refuse all four
/// before parsing, stay up, stay small, and act on the next valid alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entity_bombs_neither_kill_nor_bloat_the_alerts_service_and_the_next_alert_acts() {
    let p = Pipeline::start_early_warning(Backend::Postgres, 3000, no_four_eyes()).await;
    let key = operator(
        &p.env.store,
        "alerts-1",
        "early-warning",
        &["declare", "close"],
    )
    .await;
    let dir = std::env::temp_dir().join(format!("sumud-bombs-{:x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("alerts.jwk");
    std::fs::write(&key_file, serde_json::to_vec(&key).unwrap()).unwrap();
    let mut child = Node(
        std::process::Command::new("prlimit")
            .arg(format!("--as={ALERTS_ADDRESS_SPACE}"))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_sumud-node"))
            .arg("alerts")
            .envs(p.env.settings.env_vars())
            .env("SUMUD_ALERTS_KEY_FILE", &key_file)
            .env("RUST_LOG", "error")
            .spawn()
            .expect("prlimit runs sumud-node alerts"),
    );

    wait_for(
        "the alerts process to create its schema",
        DEADLINE,
        || async {
            let sql = "SELECT to_regclass('alerts.alerts') IS NOT NULL";
            let ready: bool = sqlx::query_scalar(sql)
                .fetch_one(&p.env.pool)
                .await
                .unwrap();
            ready.then_some(())
        },
    )
    .await;

    let quadratic = with_doctype(
        "NCSC-BOMB-Q",
        &format!("<!DOCTYPE alert [<!ENTITY a \"{}\">]>", "A".repeat(200_000)),
        &"&a;".repeat(20_000),
    );
    let mut laughs = String::from("<!DOCTYPE alert [<!ENTITY l0 \"lol\">");
    for i in 1..10 {
        laughs.push_str(&format!(
            "<!ENTITY l{i} \"{}\">",
            format!("&l{};", i - 1).repeat(10)
        ));
    }
    laughs.push_str("]>");
    let bombs = [
        quadratic,
        with_doctype("NCSC-BOMB-L", &laughs, "&l9;"),
        with_doctype(
            "NCSC-BOMB-P",
            "<!DOCTYPE alert [<!ENTITY % p \"<!ENTITY x 'xx'>\"> %p;]>",
            "&x;",
        ),
        with_doctype(
            "NCSC-BOMB-X",
            "<!DOCTYPE alert [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>",
            "&x;",
        ),
    ];
    for bomb in &bombs {
        assert!(bomb.to_bytes().len() < 1024 * 1024, "under the size limit");
        p.publish_alert("ncsc.gov.jo", bomb).await;
    }
    let (outcome, _) = declare_by_flood_alert_outcome(&p).await;
    assert_eq!(outcome, "declared", "the next valid alert acts");

    let letters = p.dead_letters(bombs.len());
    assert_eq!(letters.len(), bombs.len(), "{letters:?}");
    assert!(
        letters.iter().all(|l| l.reason == Reason::CapInvalid),
        "{letters:?}"
    );
    let pid = child.0.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("still running");
    let peak_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmHWM");
    assert!(
        peak_kb < 300 * 1024,
        "the alerts process peaked at {peak_kb} kB of resident memory"
    );
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "the alerts process is up"
    );
    drop(child);
    p.stop().await;
}

/// A child process killed when dropped (a failing test leaves none behind).
struct Node(std::process::Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The flood alert of the template, once; what the alerts service made of it.
async fn declare_by_flood_alert_outcome(p: &Pipeline) -> (String, Option<String>) {
    let (alert, _) = document("jordan-flood-alert.xml", "NCSC-AFTER-BOMBS", &[]);
    p.publish_alert("ncsc.gov.jo", &cap_event(alert)).await;
    alert_outcome(p, "NCSC-AFTER-BOMBS").await
}

on_both_backends!(
    only_trusted_senders_act_and_only_on_their_own_alerts,
    an_alert_update_never_undoes_what_operators_approved,
    bad_alerts_are_dead_lettered_with_reasons_and_untrusted_ones_recorded,
    an_alert_update_and_cancel_declare_amend_and_close_one_crisis,
    a_price_rise_over_the_window_proposes_one_top_up,
    a_simulation_and_the_live_response_to_the_same_inputs_agree,
);
