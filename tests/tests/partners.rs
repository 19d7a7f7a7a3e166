//! Partner agencies on the real broker and database, on both backends.
//!
//! From the attacker's side first: a record that is unsigned, under an
//! unknown key, forged under the agency's key id, under a revoked key,
//! stale, re-keyed to another household, with a malformed match key,
//! correcting a record the agency never made, or replayed, is each
//! dead-lettered with its reason and changes nothing.
//!
//! Then the agency's own records, matched to households only through the
//! agencies' match key (computed here by Node.js's own `crypto`, never by
//! the code under test): assistance given before a flood is declared
//! reduces the flood's top-up under its rule (`top_up_to`: by hand,
//! max(0, 3 × price − given) div 3) and the reason names the agency;
//! assistance given after re-prices a decision already made, from the next
//! tranche on; a reversal raises it back; a record for another period, or
//! for a match key no household has, changes nothing. The match key never
//! reveals an identity: it is not the plain hash of a national id, and no
//! national id is in eligibility's tables.
//!
//! And records follow the registry: one that arrived before its household
//! counts once the household is registered; one whose key two households
//! share (a duplicated national id) counts for neither until the registry
//! is corrected, then for the one left with the key.

use std::collections::BTreeMap;
use std::process::Command;

use chrono::Utc;
use sha2::{Digest, Sha256};
use sumud_control::signing::Jwk;
use sumud_shared::deadletter::Reason;
use sumud_shared::envelope::Envelope;
use sumud_shared::events::assistance::{
    AssistanceAction, AssistanceClaims, SignedAssistance, SumudAssistance, PARTNER_ASSISTANCE,
    SUMUD_ASSISTANCE,
};
use sumud_shared::events::control::CommandKind;
use sumud_shared::events::household::Household;
use sumud_shared::money::Money;
use sumud_tests::pipeline::*;
use sumud_tests::{on_both_backends, wait_for, Backend, Stage};

/// The match key of `national_id`, by Node.js's `crypto`.
fn node_match_key(national_id: &str) -> String {
    let out = Command::new("node")
        .args([
            "-e",
            "const c = require('crypto'); \
             const id = process.argv[2].replace(/[\\s-]/g, '').toUpperCase(); \
             process.stdout.write(c.createHmac('sha256', Buffer.from(process.argv[1], 'base64url')).update(id).digest('base64url'))",
            MATCH_SECRET,
            national_id,
        ])
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn national_id(h: &Household) -> &str {
    &h.personal.as_ref().unwrap()["national_id"]
}

fn record(
    record_id: &str,
    action: AssistanceAction,
    match_key: &str,
    amount: i64,
    period: (&str, &str),
) -> AssistanceClaims {
    AssistanceClaims {
        jti: uuid::Uuid::new_v4().to_string(),
        iat: Utc::now().timestamp(),
        record_id: record_id.into(),
        action,
        match_key: match_key.into(),
        amount: (action != AssistanceAction::Reversed).then(|| Money::new(amount, "JOD").unwrap()),
        period_from: (action != AssistanceAction::Reversed).then(|| period.0.parse().unwrap()),
        period_to: (action != AssistanceAction::Reversed).then(|| period.1.parse().unwrap()),
        programme: Some("food vouchers".into()),
    }
}

/// Publishes `jws` on the assistance topic under Kafka key `key`.
async fn send_jws(p: &Pipeline, key: &str, jws: String) {
    let e = Envelope::new(
        "urn:partner:test",
        PARTNER_ASSISTANCE,
        Some(key.to_owned()),
        SignedAssistance { jws },
    );
    p.env
        .publish(&p.env.settings.topics.assistance, key, &e.to_bytes())
        .await;
}

async fn send(p: &Pipeline, key: &Jwk, c: &AssistanceClaims) -> String {
    let jws = sumud_shared::jws::sign(c, key).unwrap();
    send_jws(p, &c.match_key, jws.clone()).await;
    jws
}

async fn entitlement(p: &Pipeline, crisis: &str, h: &str) -> Option<(String, i64, String)> {
    const SQL: &str = "SELECT status, amount_minor, reason FROM eligibility.entitlements \
                       WHERE crisis_id = $1 AND household_id = $2";
    sumud_shared::on_store!(&p.env.store, pool => sqlx::query_as(SQL)
        .bind(crisis)
        .bind(h)
        .fetch_optional(pool)
        .await)
    .unwrap()
}

/// A pipeline of `n` households on `backend`, once the registry has stored
/// every household's match key.
async fn with_match_keys(backend: Backend, n: u64) -> Pipeline {
    let p = Pipeline::start_on(backend, n, no_four_eyes()).await;
    p.wait_count(
        "every household's match key",
        "SELECT count(*) FROM registry.match_keys",
        p.households.len() as i64,
    )
    .await;
    p
}

/// The pipeline's households by id.
fn households_by_id(p: &Pipeline) -> BTreeMap<&str, &Household> {
    p.households
        .iter()
        .map(|h| (h.household_id.as_str(), h))
        .collect()
}

async fn partners_are_weighed_and_outsiders_change_nothing(backend: Backend) {
    let p = with_match_keys(backend, 3000).await;
    let store = &p.env.store;
    let area = "JO-IR";
    let flood = expected(&p.households, &[area]);
    let by_id = households_by_id(&p);
    let mut in_flood = flood.keys();
    let (h1, h2, h3) = (
        in_flood.next().unwrap().clone(),
        in_flood.next().unwrap().clone(),
        in_flood.next().unwrap().clone(),
    );
    let key_of = |h: &str| node_match_key(national_id(by_id[h]));
    let (k1, k2, k3) = (key_of(&h1), key_of(&h2), key_of(&h3));
    // The registry computes the same key as an outsider's implementation,
    // and it is not the plain hash of the national id.
    let stored: String = sumud_shared::on_store!(store, pool => sqlx::query_scalar(
        "SELECT match_key FROM registry.match_keys WHERE household_id = $1")
        .bind(&h1)
        .fetch_one(pool)
        .await)
    .unwrap();
    assert_eq!(stored, k1);
    use base64::Engine;
    let plain = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(national_id(by_id[h1.as_str()]).as_bytes()));
    assert_ne!(stored, plain);

    let wfp = Jwk::generate("wfp-jo-1");
    let unicef = Jwk::generate("unicef-jo-1");
    sumud_eligibility::db::add_partner_key(store, &wfp.kid, "WFP", &wfp.x)
        .await
        .unwrap();
    sumud_eligibility::db::add_partner_key(store, &unicef.kid, "UNICEF", &unicef.x)
        .await
        .unwrap();
    assert!(
        sumud_eligibility::db::revoke_partner_key(store, &unicef.kid)
            .await
            .unwrap()
    );
    let during = ("2026-12-01", "2027-03-01");

    // The attacker's side: ten messages refused, each with its reason, no
    // effect.
    let good = record("R-1", AssistanceAction::Given, &k1, 150_000, during);
    send_jws(&p, &k1, String::new()).await; // unsigned
    let stranger = Jwk::generate("stranger-1");
    send(
        &p,
        &stranger,
        &record("X-1", AssistanceAction::Given, &k1, 1, during),
    )
    .await; // unknown_key
    let mut forger = Jwk::generate(&wfp.kid);
    forger.kid = wfp.kid.clone();
    send(
        &p,
        &forger,
        &record("X-2", AssistanceAction::Given, &k1, 1, during),
    )
    .await; // bad_signature
    let mut revoked = record("X-3", AssistanceAction::Given, &k1, 1, during);
    revoked.jti = "shared-jti-1".into();
    send(&p, &unicef, &revoked).await; // revoked_key
    let mut stale = record("X-4", AssistanceAction::Given, &k1, 1, during);
    stale.iat -= 7200;
    send(&p, &wfp, &stale).await; // expired
    let rekeyed = record("X-5", AssistanceAction::Given, &k1, 1, during);
    send_jws(&p, &k2, sumud_shared::jws::sign(&rekeyed, &wfp).unwrap()).await; // key_mismatch
    let bad_key = record("X-6", AssistanceAction::Given, "9871234567", 1, during);
    send_jws(
        &p,
        "9871234567",
        sumud_shared::jws::sign(&bad_key, &wfp).unwrap(),
    )
    .await; // invalid_command
    send(
        &p,
        &wfp,
        &record("X-7", AssistanceAction::Corrected, &k1, 1, during),
    )
    .await; // invalid_transition
    let jws = send(&p, &wfp, &good).await; // applied
    send_jws(&p, &k1, jws).await; // replayed
                                  // Another agency, with a good key, cannot touch WFP's record: its
                                  // "R-1" is its own, and it has none.
    let unhcr = Jwk::generate("unhcr-jo-1");
    sumud_eligibility::db::add_partner_key(store, &unhcr.kid, "UNHCR", &unhcr.x)
        .await
        .unwrap();
    send(
        &p,
        &unhcr,
        &record("R-1", AssistanceAction::Reversed, &k1, 0, during),
    )
    .await; // invalid_transition
    let letters = p.dead_letters(10);
    let mut reasons: Vec<Reason> = letters.iter().map(|d| d.reason).collect();
    reasons.sort_by_key(|r| r.code());
    let mut want = vec![
        Reason::Unsigned,
        Reason::UnknownKey,
        Reason::BadSignature,
        Reason::RevokedKey,
        Reason::Expired,
        Reason::KeyMismatch,
        Reason::InvalidCommand,
        Reason::InvalidTransition,
        Reason::InvalidTransition,
        Reason::Replayed,
    ];
    want.sort_by_key(|r| r.code());
    assert_eq!(reasons, want, "{letters:#?}");
    let kept: Vec<(String, String)> = sumud_shared::on_store!(store, pool => sqlx::query_as(
        "SELECT agency, record_id FROM eligibility.partner_records ORDER BY record_id")
        .fetch_all(pool)
        .await)
    .unwrap();
    assert_eq!(
        kept,
        vec![("WFP".to_owned(), "R-1".to_owned())],
        "only the agency's own record"
    );

    // h3's record is for another period; one names no household.
    send(
        &p,
        &wfp,
        &record(
            "R-3",
            AssistanceAction::Given,
            &k3,
            500_000,
            ("2025-01-01", "2025-03-31"),
        ),
    )
    .await;
    send(
        &p,
        &wfp,
        &record(
            "R-9",
            AssistanceAction::Given,
            &node_match_key("1000000001"),
            500_000,
            during,
        ),
    )
    .await;
    p.wait_count(
        "the agency's records",
        "SELECT count(*) FROM eligibility.partner_records",
        3,
    )
    .await;

    // The flood: h1 is topped up only to the difference; h3 in full.
    p.send(
        &p.alice,
        &claims(
            CommandKind::Declare,
            "PA-1",
            Some(definition(&[area], "100000000")),
        ),
    )
    .await;
    p.wait_count(
        "the flood's decisions",
        "SELECT count(*) FROM eligibility.entitlements WHERE crisis_id = 'PA-1'",
        flood.len() as i64,
    )
    .await;
    let price = |h: &str| flood[h].1;
    let (status, amount, reason) = entitlement(&p, "PA-1", &h1).await.unwrap();
    assert_eq!(
        (status.as_str(), amount),
        ("entitled", (price(&h1) * 3 - 150_000).max(0) / 3),
        "{reason}"
    );
    assert!(
        reason.contains("partner WFP already gave 150000"),
        "{reason}"
    );
    assert_eq!(entitlement(&p, "PA-1", &h3).await.unwrap().1, price(&h3));

    // After the declaration: h2's decision is re-weighed from the next
    // tranche. Its message id is the one the revoked key used: ids are per
    // key, so the revoked key could not use it up.
    let mut r2 = record("R-2", AssistanceAction::Given, &k2, 90_000, during);
    r2.jti = "shared-jti-1".into();
    send(&p, &wfp, &r2).await;
    let want2 = (price(&h2) * 3 - 90_000).max(0) / 3;
    wait_for("h2 re-weighed", DEADLINE, || async {
        (entitlement(&p, "PA-1", &h2).await.unwrap().1 == want2).then_some(())
    })
    .await;
    let reason2 = entitlement(&p, "PA-1", &h2).await.unwrap().2;
    assert!(
        reason2.starts_with("partner WFP record R-2 given: other assistance for an overlapping period now 90000 (partner WFP)"),
        "{reason2}"
    );

    // A reversal raises h1 back to the flood's own price.
    send(
        &p,
        &wfp,
        &record("R-1", AssistanceAction::Reversed, &k1, 0, during),
    )
    .await;
    wait_for("h1 raised back", DEADLINE, || async {
        (entitlement(&p, "PA-1", &h1).await.unwrap().1 == price(&h1)).then_some(())
    })
    .await;
    let committed = p
        .count("SELECT committed_minor FROM eligibility.crises WHERE crisis_id = 'PA-1'")
        .await;
    let by_hand: i64 = flood
        .iter()
        .map(|(h, (_, a))| if *h == h2 { want2 * 3 } else { a * 3 })
        .sum();
    assert_eq!(committed, by_hand, "the budget holds exactly what is due");

    let partner_part = p
        .count(&format!(
            "SELECT partner_minor FROM eligibility.entitlements WHERE crisis_id = 'PA-1' AND household_id = '{h2}'"
        ))
        .await;
    assert_eq!(partner_part, 90_000);
    // R-9 names no household and changed nothing; h3's other period neither.
    let unmatched = p
        .count("SELECT count(*) FROM eligibility.partner_records WHERE record_id = 'R-9' AND household_id IS NULL")
        .await;
    assert_eq!(unmatched, 1);

    // No national id of any household is in eligibility's records: its
    // partner tables, reasons and decision trail.
    let text: Vec<String> = sumud_shared::on_store!(store, pool => sqlx::query_scalar(
        "SELECT match_key || ' ' || record_id || ' ' || coalesce(programme, '') FROM eligibility.partner_records \
         UNION ALL SELECT kid || ' ' || jti || ' ' || coalesce(refused_detail, '') FROM eligibility.partner_messages \
         UNION ALL SELECT reason || ' ' || coalesce(assisted_by, '') FROM eligibility.entitlements \
         UNION ALL SELECT reason FROM eligibility.decision_log")
        .fetch_all(pool)
        .await)
    .unwrap();
    assert!(text.len() > 10);
    for h in &p.households {
        let nid = national_id(h);
        assert!(
            !text.iter().any(|t| t.contains(nid)),
            "national id of {} found",
            h.household_id
        );
    }

    // Sumud's own assistance, shared with the agencies on the same topic:
    // one `given` per flood decision, keyed by the household's match key,
    // for the crisis's period, and a `reversed` when a household leaves
    // the registry.
    let removed = sumud_shared::events::household::HouseholdRemoved {
        household_id: h3.clone(),
        version: by_id[h3.as_str()].version + 1,
        reason: Some("emigrated".into()),
    };
    let e = Envelope::new(
        "urn:test",
        sumud_shared::events::household::HOUSEHOLD_REMOVED,
        Some(h3.clone()),
        removed,
    );
    p.env
        .publish(&p.env.settings.topics.registry, &h3, &e.to_bytes())
        .await;
    wait_for("every decision shared and published", DEADLINE, || async {
        let behind = p
            .count(
                "SELECT count(*) FROM eligibility.entitlements WHERE shared_seq IS NULL OR shared_seq <> change_seq \
                 OR status <> 'cancelled' AND household_id = (SELECT household_id FROM registry.households WHERE removed LIMIT 1)",
            )
            .await;
        let unpublished = p
            .count("SELECT count(*) FROM eligibility.outbox WHERE published_at IS NULL")
            .await;
        let removed = p
            .count("SELECT count(*) FROM registry.households WHERE removed")
            .await;
        (behind == 0 && unpublished == 0 && removed == 1).then_some(())
    })
    .await;
    let topic = &p.env.settings.topics.assistance_shared;
    let all = p.env.read_topic(topic, p.env.topic_len(topic), DEADLINE);
    let ours: Vec<(String, SumudAssistance)> = all
        .iter()
        .map(|(key, payload)| {
            let e: Envelope<SumudAssistance> = serde_json::from_slice(payload).unwrap();
            assert_eq!(e.event_type, SUMUD_ASSISTANCE);
            (key.clone(), e.data)
        })
        .collect();
    let flood_keys: BTreeMap<String, &str> =
        flood.keys().map(|h| (key_of(h), h.as_str())).collect();
    let given: Vec<&SumudAssistance> = ours
        .iter()
        .filter(|(_, r)| r.action == AssistanceAction::Given)
        .map(|(_, r)| r)
        .collect();
    assert_eq!(given.len(), flood.len(), "one given per decision");
    for (key, r) in &ours {
        assert_eq!(key, &r.match_key);
        assert!(
            flood_keys.contains_key(&r.match_key),
            "keyed by a flood household's match key"
        );
        assert!(
            !r.record_id.contains(flood_keys[&r.match_key]),
            "the record id does not name the household"
        );
        assert_eq!(
            (r.period_from.to_string(), r.period_to.to_string()),
            ("2026-12-01".to_owned(), "2027-03-01".to_owned())
        );
    }
    let h3_records: Vec<(AssistanceAction, Option<i64>, &str)> = ours
        .iter()
        .filter(|(_, r)| r.match_key == k3)
        .map(|(_, r)| {
            (
                r.action,
                r.amount.as_ref().map(|a| a.minor),
                r.record_id.as_str(),
            )
        })
        .collect();
    let record3 = h3_records[0].2;
    assert_eq!(
        h3_records,
        [
            (AssistanceAction::Given, Some(price(&h3) * 3), record3),
            (AssistanceAction::Reversed, None, record3)
        ]
    );
    // A copy written where partners may write cannot pass for Sumud's:
    // eligibility hears no such type there.
    let (_, forged) = ours[0].clone();
    let e = Envelope::new(
        "urn:sumud:eligibility",
        SUMUD_ASSISTANCE,
        Some(forged.match_key.clone()),
        SumudAssistance {
            amount: Some(Money::new(1, "JOD").unwrap()),
            ..forged
        },
    );
    p.env
        .publish(
            &p.env.settings.topics.assistance,
            &e.data.match_key.clone(),
            &e.to_bytes(),
        )
        .await;
    let letters = p.dead_letters(11);
    assert_eq!(letters.len(), 11);
    assert_eq!(
        letters
            .iter()
            .filter(|d| d.reason == Reason::UnknownEventType)
            .count(),
        1,
        "{letters:#?}"
    );

    // An agency's beneficiary list, as `sumud partners publish` sends it:
    // national ids become match keys on the agency's side.
    let dir = std::env::temp_dir().join(format!("sumud-list-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let list = dir.join("wfp.csv");
    std::fs::write(
        &list,
        format!(
            "record_id,national_id,amount_minor,currency,period_from,period_to,programme\n\
             CSV-1,{},40000,JOD,2026-12-01,2027-01-31,cash for work\n",
            national_id(by_id[h2.as_str()])
        ),
    )
    .unwrap();
    let sent =
        sumud::partner_list::publish(&p.env.settings, &list, &wfp, Some(&match_secret()), false)
            .await
            .unwrap();
    assert_eq!(sent, 1);
    std::fs::remove_dir_all(&dir).unwrap();
    let matched = format!(
        "SELECT count(*) FROM eligibility.partner_records \
         WHERE agency = 'WFP' AND record_id = 'CSV-1' AND household_id = '{h2}' AND amount_minor = 40000"
    );
    p.wait_count("the list's record matched to h2", &matched, 1)
        .await;
    p.stop().await;
}

/// Waits until the registry and eligibility have taken in everything sent
/// so far (registry changes and partner records) and eligibility has
/// published what it enqueued: what the tables hold then is final.
async fn settle_eligibility(p: &Pipeline) {
    let t = &p.env.settings.topics;
    let stage = |service, topic, outbox| Stage {
        service,
        topic,
        outbox,
    };
    p.env
        .settle(
            &[
                stage("registry", &t.registry, None),
                stage("eligibility", &t.registry, None),
                stage("eligibility", &t.assistance, Some("eligibility")),
            ],
            DEADLINE,
        )
        .await;
}

/// A partner's record follows the registry. One that arrived before its
/// household was registered counts as soon as the household is (not only
/// once the agency sends it again). One whose match key two registered
/// households share (a national id entered twice) is not pinned on either
/// of them, and counts for the right one once the registry is corrected.
async fn partner_records_follow_the_registry(backend: Backend) {
    let p = with_match_keys(backend, 500).await;
    let store = &p.env.store;
    let area = "JO-IR";
    let flood = expected(&p.households, &[area]);
    let by_id = households_by_id(&p);
    let mut in_flood = flood.keys();
    let (h2, h3) = (
        in_flood.next().unwrap().clone(),
        in_flood.next().unwrap().clone(),
    );
    let price = |h: &str| flood[h].1;
    let wfp = Jwk::generate("wfp-jo-2");
    sumud_eligibility::db::add_partner_key(store, &wfp.kid, "WFP", &wfp.x)
        .await
        .unwrap();
    let during = ("2026-12-01", "2027-03-01");
    p.send(
        &p.alice,
        &claims(
            CommandKind::Declare,
            "PB-1",
            Some(definition(&[area], "100000000")),
        ),
    )
    .await;
    p.wait_count(
        "the flood's decisions",
        "SELECT count(*) FROM eligibility.entitlements WHERE crisis_id = 'PB-1'",
        flood.len() as i64,
    )
    .await;

    // A household the registry does not hold yet: the agency's record of
    // it waits, unmatched, and counts once the household is registered.
    let catalog = sumud_shared::areas::AreaCatalog::default_catalog();
    let late = (0..)
        .map(|i| sumud_shared::synthetic::household(catalog, 0x1a7e, i))
        .find(|h| !expected(std::slice::from_ref(h), &[area]).is_empty())
        .unwrap();
    let late_id = late.household_id.clone();
    let late_price = expected(std::slice::from_ref(&late), &[area])[&late_id].1;
    send(
        &p,
        &wfp,
        &record(
            "L-1",
            AssistanceAction::Given,
            &node_match_key(national_id(&late)),
            late_price,
            during,
        ),
    )
    .await;
    p.wait_count(
        "the record of a household not yet registered, kept unmatched",
        "SELECT count(*) FROM eligibility.partner_records WHERE record_id = 'L-1' AND household_id IS NULL",
        1,
    )
    .await;
    p.publish_household(&late).await;
    wait_for("the late household decided", DEADLINE, || async {
        entitlement(&p, "PB-1", &late_id).await
    })
    .await;
    let (status, amount, reason) = entitlement(&p, "PB-1", &late_id).await.unwrap();
    assert_eq!(
        (status.as_str(), amount),
        ("entitled", (late_price * 3 - late_price).max(0) / 3),
        "{reason}"
    );
    assert!(
        reason.contains(&format!("partner WFP already gave {late_price}")),
        "{reason}"
    );

    // h3 registered again under h2's national id (a data-entry slip): the
    // key now names two households, and a record under it reduces neither.
    let mut slip = by_id[h3.as_str()].clone();
    slip.version += 1;
    let k2 = node_match_key(national_id(by_id[h2.as_str()]));
    slip.personal.as_mut().unwrap().insert(
        "national_id".into(),
        national_id(by_id[h2.as_str()]).to_owned(),
    );
    p.publish_household(&slip).await;
    p.wait_count(
        "h3's slip stored",
        &format!(
            "SELECT count(*) FROM registry.households h JOIN registry.match_keys m \
               ON m.household_id = h.household_id AND m.version = h.version \
             WHERE h.household_id = '{h3}' AND h.version = {} AND m.match_key = '{k2}'",
            slip.version
        ),
        1,
    )
    .await;
    send(
        &p,
        &wfp,
        &record("D-1", AssistanceAction::Given, &k2, price(&h2), during),
    )
    .await;
    settle_eligibility(&p).await;
    let pinned = p
        .count("SELECT count(*) FROM eligibility.partner_records WHERE record_id = 'D-1' AND household_id IS NOT NULL")
        .await;
    assert_eq!(pinned, 0, "a key two households share matches neither");
    let marked = p
        .count("SELECT count(*) FROM eligibility.partner_records WHERE record_id = 'D-1' AND ambiguous")
        .await;
    assert_eq!(marked, 1, "and the record says why it waits");
    assert_eq!(entitlement(&p, "PB-1", &h2).await.unwrap().1, price(&h2));
    assert_eq!(entitlement(&p, "PB-1", &h3).await.unwrap().1, price(&h3));

    // The registry corrects h3: the key is h2's alone, and the record
    // counts for h2 from the next tranche on.
    let mut fixed = slip.clone();
    fixed.version += 1;
    fixed.personal = by_id[h3.as_str()].personal.clone();
    p.publish_household(&fixed).await;
    let want2 = (price(&h2) * 3 - price(&h2)).max(0) / 3;
    wait_for("h2 re-weighed", DEADLINE, || async {
        (entitlement(&p, "PB-1", &h2).await.unwrap().1 == want2).then_some(())
    })
    .await;
    let reason2 = entitlement(&p, "PB-1", &h2).await.unwrap().2;
    assert!(reason2.contains("(partner WFP)"), "{reason2}");
    settle_eligibility(&p).await;
    assert_eq!(entitlement(&p, "PB-1", &h3).await.unwrap().1, price(&h3));
    let committed = p
        .count("SELECT committed_minor FROM eligibility.crises WHERE crisis_id = 'PB-1'")
        .await;
    let by_hand: i64 = flood
        .iter()
        .map(|(h, (_, a))| if *h == h2 { want2 * 3 } else { a * 3 })
        .sum::<i64>()
        + (late_price * 3 - late_price).max(0) / 3 * 3;
    assert_eq!(committed, by_hand, "the budget holds exactly what is due");

    // A record pinned by the old rule (on a household its key does not
    // name) is put right when eligibility starts.
    sumud_shared::on_store!(store, pool => sqlx::query(
        "INSERT INTO eligibility.partner_records (agency, record_id, match_key, household_id, \
             amount_minor, currency, period_from, period_to, status, last_jti) \
         VALUES ('WFP', 'OLD-1', $1, $2, 1000, 'JOD', '2025-01-01', '2025-03-31', 'given', 'legacy')")
        .bind(&k2)
        .bind(&h3)
        .execute(pool)
        .await
        .map(drop))
    .unwrap();
    drop(
        sumud_eligibility::App::build(p.env.settings.clone())
            .await
            .unwrap(),
    );
    let now: Option<String> = sumud_shared::on_store!(store, pool => sqlx::query_scalar(
        "SELECT household_id FROM eligibility.partner_records WHERE record_id = 'OLD-1'")
        .fetch_one(pool)
        .await)
    .unwrap();
    assert_eq!(now.as_deref(), Some(h2.as_str()), "re-matched at start");
    p.stop().await;
}

on_both_backends!(
    partners_are_weighed_and_outsiders_change_nothing,
    partner_records_follow_the_registry
);
