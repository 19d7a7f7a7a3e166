//! The registry service against the real broker and database.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::Row;
use sumud_shared::areas::AreaCatalog;
use sumud_shared::db::Store;
use sumud_shared::deadletter::{DeadLetter, Reason};
use sumud_shared::envelope::Envelope;
use sumud_shared::events::household::{
    Household, HouseholdRemoved, HOUSEHOLD_REMOVED, HOUSEHOLD_UPSERTED,
};
use sumud_shared::on_store;
use sumud_shared::synthetic;
use sumud_tests::{on_both_backends, wait_for, Backend, Running, Stage, TestEnv};

const DEADLINE: Duration = Duration::from_secs(60);

fn start_registry(env: &TestEnv) -> impl std::future::Future<Output = Running> {
    let settings = env.settings.clone();
    async move {
        let app = sumud_registry::App::build(settings)
            .await
            .expect("registry builds");
        Running::spawn(|token| app.run(token))
    }
}

fn upsert(h: &Household) -> Vec<u8> {
    Envelope::new(
        "urn:test",
        HOUSEHOLD_UPSERTED,
        Some(h.household_id.clone()),
        h,
    )
    .to_bytes()
}

fn removal(id: &str, version: i64) -> Vec<u8> {
    let data = HouseholdRemoved {
        household_id: id.into(),
        version,
        reason: Some("test".into()),
    };
    Envelope::new("urn:test", HOUSEHOLD_REMOVED, Some(id.into()), data).to_bytes()
}

/// Every dead letter the registry service will write for what was sent so
/// far: read once it has committed to the end of its topic (`settle`).
async fn all_dead_letters(env: &TestEnv) -> Vec<DeadLetter> {
    let stage = Stage {
        service: "registry",
        topic: &env.settings.topics.registry,
        outbox: None,
    };
    env.settle(&[stage], DEADLINE).await;
    sumud_tests::pipeline::all_dead_letters(env)
}

async fn count(env: &TestEnv, sql: &str) -> i64 {
    env.count(sql).await
}

async fn version_of(env: &TestEnv, id: &str) -> Option<(i64, bool)> {
    let sql = "SELECT version, removed FROM registry.households WHERE household_id = $1";
    match &env.store {
        Store::Postgres(pool) => sqlx::query_as(sql).bind(id).fetch_optional(pool).await,
        Store::Sqlite(pool) => sqlx::query_as(sql).bind(id).fetch_optional(pool).await,
    }
    .unwrap()
}

/// A stored household as the tests compare it, read the same way from
/// either backend (lists and personal data are arrays and jsonb on
/// PostgreSQL, JSON text on SQLite).
struct StoredRow {
    household_id: String,
    area_code: String,
    governorate: String,
    district: Option<String>,
    members: i32,
    welfare_score: f64,
    flags: Vec<String>,
    programmes: Vec<String>,
    payment_channel: String,
    account_token: String,
    removed: bool,
    personal_keys: Vec<String>,
}

async fn stored_rows(env: &TestEnv) -> Vec<StoredRow> {
    // Lists come back as JSON text from both backends, so one decoding serves.
    let sql = match env.store.backend() {
        Backend::Postgres => {
            "SELECT household_id, area_code, governorate, district, members, welfare_score, \
                    payment_channel, account_token, removed, \
                    to_json(flags)::text AS flags, to_json(programmes)::text AS programmes, \
                    coalesce((SELECT json_agg(k) FROM jsonb_object_keys(personal) k), '[]')::text \
                        AS personal_keys \
             FROM registry.households"
        }
        Backend::Sqlite => {
            "SELECT household_id, area_code, governorate, district, members, welfare_score, \
                    payment_channel, account_token, removed, flags, programmes, \
                    (SELECT json_group_array(key) FROM json_each(personal)) AS personal_keys \
             FROM registry.households"
        }
    };
    let list = |text: String| serde_json::from_str::<Vec<String>>(&text).unwrap();
    on_store!(&env.store, pool => sqlx::query(sql)
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|r| StoredRow {
            household_id: r.get("household_id"),
            area_code: r.get("area_code"),
            governorate: r.get("governorate"),
            district: r.get("district"),
            members: r.get("members"),
            welfare_score: r.get("welfare_score"),
            flags: list(r.get("flags")),
            programmes: list(r.get("programmes")),
            payment_channel: r.get("payment_channel"),
            account_token: r.get("account_token"),
            removed: r.get("removed"),
            personal_keys: list(r.get("personal_keys")),
        })
        .collect())
}

/// The columns of the view other services read.
async fn view_columns(env: &TestEnv) -> Vec<String> {
    match &env.store {
        Store::Postgres(pool) => {
            sqlx::query_scalar(
                "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = 'registry' AND table_name = 'households_v'",
            )
            .fetch_all(pool)
            .await
        }
        Store::Sqlite(pool) => {
            sqlx::query_scalar("SELECT name FROM pragma_table_info('households_v', 'registry')")
                .fetch_all(pool)
                .await
        }
    }
    .unwrap()
}

fn dead_letters(env: &TestEnv, expected: usize) -> Vec<DeadLetter> {
    env.read_topic(
        &env.settings.topics.deadletter,
        expected,
        Duration::from_secs(20),
    )
    .into_iter()
    .map(|(_, bytes)| {
        serde_json::from_slice::<Envelope<DeadLetter>>(&bytes)
            .unwrap()
            .data
    })
    .collect()
}

async fn a_thousand_households_land_in_the_table_exactly_as_sent(backend: Backend) {
    let env = TestEnv::with(backend).await;
    let catalog = AreaCatalog::default_catalog();
    let households: Vec<Household> = (0..1000)
        .map(|i| synthetic::household(catalog, 42, i))
        .collect();
    for h in &households {
        env.publish(&env.settings.topics.registry, &h.household_id, &upsert(h))
            .await;
    }
    let service = start_registry(&env).await;

    wait_for("1000 households", DEADLINE, || async {
        (count(&env, "SELECT count(*) FROM registry.households").await == 1000).then_some(())
    })
    .await;

    let rows = stored_rows(&env).await;
    assert_eq!(rows.len(), 1000);
    let by_id: HashMap<String, &Household> = households
        .iter()
        .map(|h| (h.household_id.clone(), h))
        .collect();
    for row in &rows {
        let h = by_id[&row.household_id];
        let path = catalog.resolve(&h.area_code).unwrap();
        assert_eq!(row.area_code, h.area_code);
        assert_eq!(row.governorate, path.governorate);
        assert_eq!(row.district, path.district);
        assert_eq!(row.members, h.members);
        assert_eq!(row.welfare_score, h.welfare_score);
        assert_eq!(
            row.flags,
            h.flags
                .iter()
                .map(|f| f.as_str().to_owned())
                .collect::<Vec<_>>()
        );
        assert_eq!(row.programmes, h.programmes);
        assert_eq!(row.payment_channel, h.payment.channel.as_str());
        assert_eq!(row.account_token, h.payment.account_token);
        assert!(!row.removed);
        // Personal identifiers are stored (the synthetic records carry them)...
        assert!(
            row.personal_keys.iter().any(|k| k == "national_id"),
            "{:?}",
            row.personal_keys
        );
    }
    // ...but the view other services read has none.
    let view_columns = view_columns(&env).await;
    assert!(
        view_columns.iter().any(|c| c == "household_id"),
        "view columns: {view_columns:?}"
    );
    assert!(
        !view_columns.iter().any(|c| c == "personal"),
        "view columns: {view_columns:?}"
    );
    assert!(all_dead_letters(&env).await.is_empty());
    service.stop().await;
}

async fn redelivery_and_out_of_order_versions_never_overwrite_newer_data(backend: Backend) {
    let env = TestEnv::with(backend).await;
    let topic = env.settings.topics.registry.clone();
    let mut h = synthetic::household(AreaCatalog::default_catalog(), 7, 1);
    let id = h.household_id.clone();
    h.version = 3;
    let v3 = upsert(&h);
    h.version = 2;
    h.members = 9;
    let v2 = upsert(&h);
    h.version = 5;
    h.members = 4;
    let v5 = upsert(&h);

    env.publish(&topic, &id, &v3).await; // applied
    env.publish(&topic, &id, &v2).await; // older: stale
    env.publish(&topic, &id, &v3).await; // the same event again: replay
    env.publish(&topic, &id, &v5).await; // applied
    let service = start_registry(&env).await;

    wait_for("version 5", DEADLINE, || async {
        (version_of(&env, &id).await == Some((5, false))).then_some(())
    })
    .await;
    let letters = dead_letters(&env, 2);
    let mut reasons: Vec<Reason> = letters.iter().map(|d| d.reason).collect();
    reasons.sort_by_key(|r| r.code());
    assert_eq!(reasons, vec![Reason::Replayed, Reason::StaleVersion]);
    let members = count(
        &env,
        &format!(
            "SELECT CAST(members AS bigint) FROM registry.households WHERE household_id = '{id}'"
        ),
    )
    .await;
    assert_eq!(members, 4);
    service.stop().await;
}

async fn removals_are_versioned_tombstones(backend: Backend) {
    let env = TestEnv::with(backend).await;
    let topic = env.settings.topics.registry.clone();
    let mut h = synthetic::household(AreaCatalog::default_catalog(), 9, 1);
    let id = h.household_id.clone();
    let service = start_registry(&env).await;

    env.publish(&topic, &id, &upsert(&h)).await; // v1
    env.publish(&topic, &id, &removal(&id, 2)).await; // tombstone v2
    h.version = 1;
    h.members = 7;
    env.publish(&topic, &id, &upsert(&h)).await; // late v1 (new event id): stale
    wait_for("tombstone", DEADLINE, || async {
        (version_of(&env, &id).await == Some((2, true))).then_some(())
    })
    .await;
    let letters = dead_letters(&env, 1);
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason, Reason::StaleVersion);
    assert_eq!(
        count(&env, "SELECT count(*) FROM registry.households_v").await,
        0
    );

    // Re-registration with a higher version brings the household back.
    h.version = 3;
    env.publish(&topic, &id, &upsert(&h)).await;
    wait_for("re-registration", DEADLINE, || async {
        (version_of(&env, &id).await == Some((3, false))).then_some(())
    })
    .await;
    assert_eq!(
        count(&env, "SELECT count(*) FROM registry.households_v").await,
        1
    );
    service.stop().await;
}

async fn poison_messages_are_dead_lettered_with_their_reason_while_good_ones_are_stored(
    backend: Backend,
) {
    let env = TestEnv::with(backend).await;
    let topic = env.settings.topics.registry.clone();
    let catalog = AreaCatalog::default_catalog();
    let good: Vec<Household> = (0..100)
        .map(|i| synthetic::household(catalog, 11, i))
        .collect();
    let valid = |i: u64| {
        serde_json::to_value(Envelope::new(
            "urn:test",
            HOUSEHOLD_UPSERTED,
            None,
            synthetic::household(catalog, 12, i),
        ))
        .unwrap()
    };
    let with = |i: u64, f: &dyn Fn(&mut Value)| {
        let mut v = valid(i);
        f(&mut v);
        serde_json::to_vec(&v).unwrap()
    };
    let poison: Vec<(Reason, Vec<u8>)> = vec![
        (Reason::NotJson, b"\x00\x9f not json at all".to_vec()),
        (
            Reason::NotJson,
            b"{\"specversion\": \"1.0\", \"id\": ".to_vec(),
        ),
        (Reason::NotCloudevent, br#"{"hello": "world"}"#.to_vec()),
        (
            Reason::UnsupportedSpecversion,
            with(1, &|v| v["specversion"] = "0.3".into()),
        ),
        (
            // Under the size limit, but echoing it whole (quotes escaped
            // twice over) would make a dead letter too large to publish.
            Reason::UnsupportedSpecversion,
            with(8, &|v| v["specversion"] = "\"".repeat(400_000).into()),
        ),
        (
            Reason::UnknownEventType,
            with(2, &|v| v["type"] = "org.sumud.household.exploded".into()),
        ),
        (
            Reason::SchemaInvalid,
            with(3, &|v| v["data"]["members"] = (-4).into()),
        ),
        (
            Reason::SchemaInvalid,
            with(4, &|v| v["data"]["payment"] = json!({"channel": "bank"})),
        ),
        (
            Reason::UnknownArea,
            with(5, &|v| v["data"]["area_code"] = "JO-ZZ-01".into()),
        ),
        (
            Reason::TimestampOutOfRange,
            with(6, &|v| v["time"] = "2100-01-01T00:00:00Z".into()),
        ),
        (
            Reason::TooLarge,
            with(7, &|v| {
                v["data"]["programmes"] = json!(["X".repeat(1_500_000)])
            }),
        ),
    ];
    for (i, h) in good.iter().enumerate() {
        env.publish(&topic, &h.household_id, &upsert(h)).await;
        if let Some((_, bytes)) = poison.get(i) {
            env.publish(&topic, "poison", bytes).await;
        }
    }
    let service = start_registry(&env).await;

    wait_for("100 good households", DEADLINE, || async {
        (count(&env, "SELECT count(*) FROM registry.households").await == 100).then_some(())
    })
    .await;
    let letters = all_dead_letters(&env).await;
    assert_eq!(
        letters.len(),
        poison.len(),
        "exactly one dead letter per poison message"
    );
    for (reason, bytes) in &poison {
        // What a dead letter keeps: the original without personal
        // identifiers (the synthetic records carry some).
        let (shown, redacted) = sumud_shared::deadletter::withhold_personal(bytes);
        let letter = letters
            .iter()
            .find(|l| {
                let kept = base64_decode(&l.original_base64);
                l.personal_redacted == redacted
                    && (kept.is_empty() == shown.is_empty())
                    && shown.starts_with(&kept)
                    && l.original_size == bytes.len() as u64
            })
            .unwrap_or_else(|| {
                panic!("no dead letter carries the original bytes of the {reason} message")
            });
        assert_eq!(letter.reason, *reason, "detail: {}", letter.detail);
        assert_eq!(letter.source_topic, topic);
        assert_eq!(letter.service, "registry");
        assert_eq!(
            letter.original_truncated,
            shown.len() > env.settings.limits.max_bytes / 2
        );
        assert!(
            letter.detail.len() <= 1024,
            "a dead letter's detail is bounded"
        );
    }
    service.stop().await;
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

async fn a_crash_mid_stream_loses_and_duplicates_nothing(backend: Backend) {
    let env = TestEnv::with(backend).await;
    let n = 20_000u64;
    let mut settings = env.settings.clone();
    settings.batch_max = 500;
    let published = sumud::registry_cmd::publish_synthetic(&settings, n, 5, true)
        .await
        .unwrap();
    assert_eq!(published, n);

    let app = sumud_registry::App::build(settings.clone()).await.unwrap();
    let first = Running::spawn(|t| app.run(t));
    wait_for("a first part of the stream", DEADLINE, || async {
        (count(&env, "SELECT count(*) FROM registry.households").await >= 2_000).then_some(())
    })
    .await;
    first.kill().await;
    let at_crash = count(&env, "SELECT count(*) FROM registry.households").await;
    assert!(
        at_crash < n as i64,
        "the crash happened mid-stream ({at_crash} of {n})"
    );

    let app = sumud_registry::App::build(settings).await.unwrap();
    let second = Running::spawn(|t| app.run(t));
    wait_for("every household", Duration::from_secs(120), || async {
        (count(&env, "SELECT count(*) FROM registry.households").await == n as i64).then_some(())
    })
    .await;
    second.stop().await;
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM registry.households WHERE version <> 1"
        )
        .await,
        0
    );
    // Redelivered messages after the crash are recognised, not reported as bad input.
    assert!(all_dead_letters(&env).await.is_empty());
}

on_both_backends!(
    a_thousand_households_land_in_the_table_exactly_as_sent,
    redelivery_and_out_of_order_versions_never_overwrite_newer_data,
    removals_are_versioned_tombstones,
    poison_messages_are_dead_lettered_with_their_reason_while_good_ones_are_stored,
    a_crash_mid_stream_loses_and_duplicates_nothing,
);
