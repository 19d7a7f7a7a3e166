//! The bad-input storm: 10,000 hostile messages mixed with 1,000 valid ones
//! across every input topic (registry, control, alerts, payment status),
//! against the whole pipeline. Hostile: not JSON, truncated, over the size
//! limit, a wrong CloudEvents version, schema-invalid, unknown event types,
//! unknown areas, crises and instructions, timestamps far in the future and
//! past, forged, unsigned, unknown-key, expired and replayed signatures,
//! duplicated valid messages, out-of-order versions, malformed and expired
//! CAP. Afterwards: every hostile message is on the dead-letter topic once,
//! with the reason its kind calls for; every valid one was processed exactly
//! once; no service stopped; every consumer group caught up to the end of
//! every topic it reads.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::{json, Value};
use sumud_alerts::rules::RuleBook;
use sumud_control::signing::{self, Jwk};
use sumud_provider_sim::behaviour::Behaviour;
use sumud_shared::areas::AreaCatalog;
use sumud_shared::config::Settings;
use sumud_shared::deadletter::{DeadLetter, Reason};
use sumud_shared::envelope::Envelope;
use sumud_shared::events::alert::{ALERT_CAP, CAP_XML};
use sumud_shared::events::control::{CommandKind, SignedCommand, CONTROL_COMMAND};
use sumud_shared::events::household::{Household, HOUSEHOLD_UPSERTED};
use sumud_shared::events::payment::{PaymentStatus, StatusReport, PAYMENT_STATUS};
use sumud_shared::synthetic;
use sumud_tests::pipeline::*;
use sumud_tests::wait_for;

/// Valid registry upserts (new households, version 2).
const NEW_HOUSEHOLDS: u64 = 975;
/// Valid exercise alerts (recorded, never acted on).
const EXERCISES: usize = 24;
/// Seed of the new households (the pipeline's own registry uses `SEED`).
const STORM_SEED: u64 = 4242;

/// One message to publish, and what should become of it.
struct Item {
    topic: String,
    key: String,
    bytes: Vec<u8>,
    /// `None` for a valid message; the dead-letter reason otherwise.
    reason: Option<Reason>,
}

fn item(topic: &str, key: &str, bytes: Vec<u8>, reason: Option<Reason>) -> Item {
    Item {
        topic: topic.to_owned(),
        key: key.to_owned(),
        bytes,
        reason,
    }
}

fn json_of<T: serde::Serialize>(e: &Envelope<T>) -> Value {
    serde_json::from_slice(&e.to_bytes()).unwrap()
}

fn upsert(h: &Household) -> Envelope<Household> {
    Envelope::new("urn:test:registry", HOUSEHOLD_UPSERTED, None, h.clone())
}

fn new_household(i: u64, version: i64) -> Household {
    let mut h = synthetic::household(AreaCatalog::default_catalog(), STORM_SEED, i);
    h.household_id = format!("HH-STORM-{i:05}");
    h.version = version;
    h
}

fn cap_document(id: &str, status: &str, expires: chrono::DateTime<Utc>) -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/cap/jordan-flood-alert.xml"
    );
    std::fs::read_to_string(path)
        .unwrap()
        .replace("{{ID}}", id)
        .replace(
            "{{SENT}}",
            &Utc::now().to_rfc3339_opts(SecondsFormat::Secs, false),
        )
        .replace(
            "{{EXPIRES}}",
            &expires.to_rfc3339_opts(SecondsFormat::Secs, false),
        )
        .replace(
            "<status>Actual</status>",
            &format!("<status>{status}</status>"),
        )
}

fn cap_event(xml: String) -> Envelope<String> {
    let mut e = Envelope::new("urn:ncsc:early-warning", ALERT_CAP, None, xml);
    e.datacontenttype = CAP_XML.into();
    e
}

fn command(crisis: &str, jws: String) -> Vec<u8> {
    Envelope::new(
        "urn:test",
        CONTROL_COMMAND,
        Some(crisis.into()),
        SignedCommand { jws },
    )
    .to_bytes()
}

/// The registry's share: valid new households, then hostile records of
/// every kind, then (after the valid ones) stale versions and duplicates.
fn registry_items(t: &str) -> (Vec<Item>, Vec<Item>) {
    let mut first = Vec::new();
    let mut after = Vec::new();
    let valid: Vec<(Household, Vec<u8>)> = (0..NEW_HOUSEHOLDS)
        .map(|i| {
            let h = new_household(i, 2);
            let bytes = upsert(&h).to_bytes();
            (h, bytes)
        })
        .collect();
    for (h, bytes) in &valid {
        first.push(item(t, &h.household_id, bytes.clone(), None));
    }
    let with = |i: u64, f: &dyn Fn(&mut Value)| {
        let mut v = json_of(&upsert(&new_household(10_000 + i, 1)));
        f(&mut v);
        serde_json::to_vec(&v).unwrap()
    };
    let mut push = |n: u64, reason: Reason, make: &dyn Fn(u64) -> Vec<u8>| {
        for i in 0..n {
            first.push(item(t, "hostile", make(i), Some(reason)));
        }
    };
    push(600, Reason::NotJson, &|i| {
        format!("\u{0}\u{9f} garbage {i} <<>>").into_bytes()
    });
    push(600, Reason::NotJson, &|i| {
        let b = upsert(&new_household(20_000 + i, 1)).to_bytes();
        b[..b.len() / 2].to_vec()
    });
    push(500, Reason::NotCloudevent, &|i| {
        serde_json::to_vec(&json!({"hello": "world", "n": i})).unwrap()
    });
    push(500, Reason::UnsupportedSpecversion, &|i| {
        with(i, &|v| v["specversion"] = "0.3".into())
    });
    push(500, Reason::UnknownEventType, &|i| {
        with(i, &|v| v["type"] = "org.sumud.household.exploded".into())
    });
    push(300, Reason::SchemaInvalid, &|i| {
        with(i, &|v| v["data"]["members"] = (-4).into())
    });
    push(300, Reason::SchemaInvalid, &|i| {
        with(i, &|v| v["data"]["payment"] = json!({"channel": "bank"}))
    });
    push(500, Reason::UnknownArea, &|i| {
        with(i, &|v| v["data"]["area_code"] = "JO-ZZ-01".into())
    });
    push(300, Reason::TimestampOutOfRange, &|i| {
        with(i, &|v| v["time"] = "2100-01-01T00:00:00Z".into())
    });
    push(300, Reason::TimestampOutOfRange, &|i| {
        with(i, &|v| v["time"] = "1990-01-01T00:00:00Z".into())
    });
    push(20, Reason::TooLarge, &|i| {
        with(i, &|v| {
            v["data"]["programmes"] = json!(["X".repeat(1_200_000)])
        })
    });
    // Out of order: version 1 of households already at version 2.
    for (h, _) in valid.iter().take(580) {
        let mut old = h.clone();
        old.version = 1;
        after.push(item(
            t,
            &h.household_id,
            upsert(&old).to_bytes(),
            Some(Reason::StaleVersion),
        ));
    }
    // Duplicated valid messages: the same event again (a few three times).
    for (h, bytes) in (0..1000).map(|k| &valid[k % valid.len()]) {
        after.push(item(
            t,
            &h.household_id,
            bytes.clone(),
            Some(Reason::Replayed),
        ));
    }
    (first, after)
}

/// Control: one valid declaration, then hostile commands of every kind.
fn control_items(t: &str, alice: &Jwk, bob: &Jwk) -> (Item, Vec<Item>) {
    let declare = claims(
        CommandKind::Declare,
        "STORM-1",
        Some(definition(&["JO-MN"], "200000")),
    );
    let valid = command("STORM-1", signing::sign(&declare, alice).unwrap());
    let mut hostile = Vec::new();
    let mut push = |n: usize, reason: Reason, make: &dyn Fn(usize) -> (String, Vec<u8>)| {
        for i in 0..n {
            let (key, bytes) = make(i);
            hostile.push(item(t, &key, bytes, Some(reason)));
        }
    };
    let fresh = |crisis: &str| {
        claims(
            CommandKind::Declare,
            crisis,
            Some(definition(&["JO-MN"], "1000")),
        )
    };
    push(200, Reason::NotJson, &|i| {
        (format!("F-{i}"), format!("{{\"jws\": {i}").into_bytes())
    });
    push(200, Reason::SchemaInvalid, &|i| {
        let e = Envelope::new("urn:test", CONTROL_COMMAND, None, json!({"signature": i}));
        (format!("F-{i}"), e.to_bytes())
    });
    push(200, Reason::Unsigned, &|i| {
        let crisis = format!("F-U-{i}");
        let jws = signing::sign(&fresh(&crisis), alice).unwrap();
        let stripped = format!("{}.", jws.rsplit_once('.').unwrap().0);
        (crisis.clone(), command(&crisis, stripped))
    });
    let forger = Jwk::generate("alice-1");
    push(300, Reason::BadSignature, &|i| {
        let crisis = format!("F-B-{i}");
        let jws = signing::sign(&fresh(&crisis), &forger).unwrap();
        (crisis.clone(), command(&crisis, jws))
    });
    let mallory = Jwk::generate("mallory-1");
    push(300, Reason::UnknownKey, &|i| {
        let crisis = format!("F-K-{i}");
        let jws = signing::sign(&fresh(&crisis), &mallory).unwrap();
        (crisis.clone(), command(&crisis, jws))
    });
    push(300, Reason::Expired, &|i| {
        let crisis = format!("F-E-{i}");
        let mut c = fresh(&crisis);
        c.iat = (Utc::now() - chrono::Duration::days(7)).timestamp();
        let jws = signing::sign(&c, alice).unwrap();
        (crisis.clone(), command(&crisis, jws))
    });
    push(200, Reason::Replayed, &|_| {
        ("STORM-1".into(), valid.clone())
    });
    push(100, Reason::WrongRole, &|_| {
        let c = claims(CommandKind::Close, "STORM-1", None);
        (
            "STORM-1".into(),
            command("STORM-1", signing::sign(&c, bob).unwrap()),
        )
    });
    push(200, Reason::UnknownCrisis, &|i| {
        let crisis = format!("F-C-{i}");
        let c = claims(CommandKind::Close, &crisis, None);
        (
            crisis.clone(),
            command(&crisis, signing::sign(&c, alice).unwrap()),
        )
    });
    (item(t, "STORM-1", valid, None), hostile)
}

/// Alerts: exercise alerts (recorded, no action) and hostile CAP.
fn alert_items(t: &str) -> Vec<Item> {
    let tomorrow = Utc::now() + chrono::Duration::days(1);
    let mut items: Vec<Item> = (0..EXERCISES)
        .map(|i| {
            let doc = cap_document(&format!("STORM-EX-{i}"), "Exercise", tomorrow);
            item(t, "ex", cap_event(doc).to_bytes(), None)
        })
        .collect();
    let mut push = |n: usize, reason: Reason, make: &dyn Fn(usize) -> Vec<u8>| {
        for i in 0..n {
            items.push(item(t, "hostile", make(i), Some(reason)));
        }
    };
    push(500, Reason::CapInvalid, &|i| {
        let doc = cap_document(&format!("STORM-M-{i}"), "Actual", tomorrow);
        cap_event(doc[..400].to_string()).to_bytes()
    });
    push(300, Reason::UnknownArea, &|i| {
        let doc = cap_document(&format!("STORM-A-{i}"), "Actual", tomorrow);
        cap_event(doc.replace("JO-AM-01", "JO-XX-09")).to_bytes()
    });
    push(300, Reason::Expired, &|i| {
        let doc = cap_document(
            &format!("STORM-X-{i}"),
            "Actual",
            Utc::now() - chrono::Duration::hours(1),
        );
        cap_event(doc).to_bytes()
    });
    push(200, Reason::SchemaInvalid, &|i| {
        Envelope::new(
            "urn:x",
            ALERT_CAP,
            None,
            json!({"identifier": format!("J-{i}"), "sender": "s", "sent": "2026-11-29T06:00:00+03:00",
                   "status": "Actual", "msgType": "Alert", "scope": "Public",
                   "info": [{"category": ["Met"], "event": "Flood", "urgency": "Immediate", "certainty": "Likely"}]}),
        )
        .to_bytes()
    });
    push(200, Reason::NotJson, &|i| {
        format!("<alert>{i}").into_bytes()
    });
    items
}

/// Payment status: reports no provider could have a reason to send.
fn status_items(t: &str) -> Vec<Item> {
    let mut items = Vec::new();
    for i in 0..300 {
        let report = StatusReport {
            reference_id: uuid::Uuid::new_v4().to_string(),
            attempt: 1,
            provider: "wallet-a".into(),
            status: PaymentStatus::Succeeded,
            reason_code: None,
            provider_ref: Some(format!("p-{i}")),
            timestamp: Utc::now(),
            signature: None,
        };
        let e = Envelope::new("urn:provider", PAYMENT_STATUS, None, report);
        items.push(item(
            t,
            "hostile",
            e.to_bytes(),
            Some(Reason::UnknownInstruction),
        ));
    }
    for i in 0..100 {
        let e = Envelope::new(
            "urn:provider",
            PAYMENT_STATUS,
            None,
            json!({"reference_id": i, "status": "paid-ish"}),
        );
        items.push(item(
            t,
            "hostile",
            e.to_bytes(),
            Some(Reason::SchemaInvalid),
        ));
    }
    for i in 0..100 {
        items.push(item(
            t,
            "hostile",
            format!("status {i}").into_bytes(),
            Some(Reason::NotJson),
        ));
    }
    items
}

/// Every dead letter on the topic, waiting until `expected` arrived (and a
/// little longer, so that extra ones would be seen too).
fn dead_letters(settings: &Settings, expected: usize) -> Vec<DeadLetter> {
    let topic = &settings.topics.deadletter;
    let consumer: BaseConsumer = sumud_shared::kafka::client_config(settings)
        .set("group.id", format!("storm-reader-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let meta = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in meta.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let end = std::time::Instant::now() + Duration::from_secs(240);
    let mut quiet_since = None;
    while std::time::Instant::now() < end {
        match consumer.poll(Duration::from_millis(200)) {
            Some(m) => {
                let m = m.unwrap();
                let e: Envelope<DeadLetter> = serde_json::from_slice(m.payload().unwrap()).unwrap();
                out.push(e.data);
                quiet_since = None;
            }
            None if out.len() >= expected => {
                let since = *quiet_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() > Duration::from_secs(3) {
                    break;
                }
            }
            None => {}
        }
    }
    out
}

/// Consumer lag of every group of this test on every topic it has
/// committed offsets for: the sum of (end of partition − committed).
fn total_lag(settings: &Settings) -> (i64, usize) {
    let admin: BaseConsumer = sumud_shared::kafka::client_config(settings)
        .set("group.id", format!("storm-lag-{}", uuid::Uuid::new_v4()))
        .create()
        .unwrap();
    let groups = admin
        .fetch_group_list(None, Duration::from_secs(10))
        .unwrap();
    let ours: Vec<String> = groups
        .groups()
        .iter()
        .map(|g| g.name().to_owned())
        .filter(|g| g.starts_with(&format!("{}-", settings.group_prefix)))
        .collect();
    let t = &settings.topics;
    let topics = [
        &t.registry,
        &t.control,
        &t.alerts,
        &t.crisis,
        &t.entitlements,
        &t.instructions,
        &t.status,
    ];
    let mut lag = 0;
    let mut checked = 0;
    for group in &ours {
        let c: BaseConsumer = sumud_shared::kafka::client_config(settings)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        for topic in topics {
            let meta = c
                .fetch_metadata(Some(topic), Duration::from_secs(10))
                .unwrap();
            let mut tpl = TopicPartitionList::new();
            for p in meta.topics()[0].partitions() {
                tpl.add_partition(topic, p.id());
            }
            let committed = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
            for e in committed.elements() {
                if let Offset::Offset(at) = e.offset() {
                    let (_, high) = c
                        .fetch_watermarks(topic, e.partition(), Duration::from_secs(10))
                        .unwrap();
                    lag += high - at;
                    checked += 1;
                }
            }
        }
    }
    (lag, checked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_storm_of_hostile_input_is_dead_lettered_and_valid_input_processed_once() {
    // 10,000 dead letters are 10,000 warnings; the test reads them from the
    // topic, so the log keeps errors only (this binary holds one test).
    std::env::set_var("RUST_LOG", "error");
    // Arrange: the whole pipeline, a provider that pays every instruction.
    let provider = Behaviour {
        latency_ms: 5,
        retryable_reject_rate: 0.0,
        permanent_reject_rate: 0.0,
        duplicate_rate: 0.0,
        late_pending_rate: 0.0,
        ..Behaviour::default()
    };
    let mut p =
        Pipeline::start_with_payments(500, no_four_eyes(), Default::default(), provider).await;
    p.start_alerts(RuleBook::default_book()).await;
    let s = p.env.settings.clone();
    let mut rng = StdRng::seed_from_u64(11);
    let (mut registry, registry_after) = registry_items(&s.topics.registry);
    let (declare, mut control) = control_items(&s.topics.control, &p.alice, &p.bob);
    let mut first: Vec<Item> = Vec::new();
    first.append(&mut registry);
    first.append(&mut alert_items(&s.topics.alerts));
    first.append(&mut status_items(&s.topics.status));
    first.shuffle(&mut rng);
    control.shuffle(&mut rng);
    let mut all = vec![declare];
    all.append(&mut first);
    all.append(&mut control);
    all.extend(registry_after);
    let hostile = all.iter().filter(|i| i.reason.is_some()).count();
    let valid = all.len() - hostile;
    assert_eq!((hostile, valid), (10_000, 1_000));
    let mut expected: BTreeMap<(String, &'static str), usize> = BTreeMap::new();
    for i in &all {
        if let Some(r) = i.reason {
            *expected.entry((i.topic.clone(), r.code())).or_default() += 1;
        }
    }

    // Act: publish everything in that order (per key, order is kept).
    for i in &all {
        p.env
            .producer
            .send_raw(&i.topic, Some(i.key.as_bytes()), &i.bytes, None)
            .await
            .unwrap();
    }

    // Assert: every hostile message dead-lettered once, for its reason.
    let letters = dead_letters(&s, hostile);
    let mut actual: BTreeMap<(String, &'static str), usize> = BTreeMap::new();
    for l in &letters {
        *actual
            .entry((l.source_topic.clone(), l.reason.code()))
            .or_default() += 1;
    }
    assert_eq!(
        actual, expected,
        "dead letters by (topic, reason) differ from the hostile input"
    );
    assert_eq!(letters.len(), hostile);

    // Every valid message processed exactly once.
    p.wait_count(
        "the new households",
        "SELECT count(*) FROM registry.households WHERE household_id LIKE 'HH-STORM-%' AND version = 2",
        NEW_HOUSEHOLDS as i64,
    )
    .await;
    assert_eq!(
        p.count("SELECT count(*) FROM registry.households").await,
        500 + NEW_HOUSEHOLDS as i64
    );
    assert_eq!(
        p.count("SELECT count(*) FROM control.crises").await,
        1,
        "only the valid declaration created a crisis"
    );
    assert_eq!(p.state("STORM-1").await.as_deref(), Some("active"));
    assert_eq!(
        p.count("SELECT count(*) FROM control.audit WHERE crisis_id = 'STORM-1'")
            .await,
        1,
        "the declaration applied once, nothing else touched the crisis"
    );
    p.wait_count(
        "the exercise alerts",
        "SELECT count(*) FROM alerts.alerts WHERE identifier LIKE 'STORM-EX-%'",
        EXERCISES as i64,
    )
    .await;
    assert_eq!(
        p.count("SELECT count(*) FROM alerts.alerts WHERE identifier NOT LIKE 'STORM-EX-%'")
            .await,
        0,
        "no hostile alert was recorded"
    );
    // The crisis ran to payment: one instruction per entitled household and
    // tranche due, all paid.
    let entitled = p
        .count("SELECT count(*) FROM eligibility.entitlements WHERE crisis_id = 'STORM-1' AND status = 'entitled'")
        .await;
    assert!(entitled > 0);
    wait_for("every first-tranche instruction paid", DEADLINE, || async {
        let (n, paid): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE status = 'succeeded') \
             FROM disbursement.instructions WHERE crisis_id = 'STORM-1' AND tranche = 1",
        )
        .fetch_one(&p.env.pool)
        .await
        .ok()?;
        (n == entitled && paid == n).then_some(())
    })
    .await;

    // No service stopped, and every group caught up.
    assert!(
        p.services.iter().all(|s| s.is_running()),
        "a service stopped during the storm"
    );
    let (lag, checked) = wait_for("consumer lag back to zero", DEADLINE, || async {
        let (lag, checked) = total_lag(&s);
        (lag == 0 && checked > 0).then_some((lag, checked))
    })
    .await;
    assert_eq!(lag, 0);
    assert!(
        checked >= 7,
        "only {checked} partitions had committed offsets"
    );
    p.stop().await;
}
