//! Social-service referrals on the real broker and database, on both
//! backends.
//!
//! A flood over one governorate refers, beside cash, every household there
//! with a disability flag to rehabilitation (moh-rehab) and every household
//! with young children and a female head to child protection
//! (unicef-jordan): the set is computed here from the generated households,
//! independently of the service's SQL, and read back from the topic as an
//! outside consumer would. A household that gains the flag later is
//! referred when the registry says so.
//!
//! From the attacker's side: an acknowledgement that is unsigned, under an
//! unknown key, forged under the provider's key id, signed by another
//! agency than the referral's provider, re-keyed, for a referral never
//! made, declining without saying why, stale, replayed, or moving a final
//! referral, and a referral event written by someone other than
//! eligibility, are each dead-lettered with their reason and change
//! nothing. The provider's own answers move the referral, and `explain`
//! shows them to the social worker.

use std::collections::BTreeSet;

use chrono::Utc;
use sumud_control::signing::Jwk;
use sumud_shared::deadletter::Reason;
use sumud_shared::envelope::Envelope;
use sumud_shared::events::control::CommandKind;
use sumud_shared::events::household::VulnerabilityFlag::{Disability, FemaleHeaded, YoungChildren};
use sumud_shared::events::referral::{
    AcknowledgementClaims, Referral, ReferralStatus, SignedAcknowledgement, REFERRAL_ACKNOWLEDGED,
    REFERRAL_RECORDED,
};
use sumud_tests::pipeline::*;
use sumud_tests::{on_both_backends, wait_for, Backend};

const AREA: &str = "JO-IR";

fn ack(referral_id: &str, status: ReferralStatus, note: Option<&str>) -> AcknowledgementClaims {
    AcknowledgementClaims {
        jti: uuid::Uuid::new_v4().to_string(),
        iat: Utc::now().timestamp(),
        referral_id: referral_id.into(),
        status,
        note: note.map(str::to_owned),
    }
}

/// Publishes `jws` on the referrals topic under Kafka key `key`.
async fn send_jws(p: &Pipeline, key: &str, jws: String) {
    let e = Envelope::new(
        "urn:partner:test",
        REFERRAL_ACKNOWLEDGED,
        Some(key.to_owned()),
        SignedAcknowledgement { jws },
    );
    p.env
        .publish(&p.env.settings.topics.referral_answers, key, &e.to_bytes())
        .await;
}

async fn send(p: &Pipeline, key: &Jwk, c: &AcknowledgementClaims) -> String {
    let jws = sumud_shared::jws::sign(c, key).unwrap();
    send_jws(p, &c.referral_id, jws.clone()).await;
    jws
}

async fn status(p: &Pipeline, referral_id: &str) -> (String, Option<String>) {
    sumud_shared::on_store!(&p.env.store, pool => sqlx::query_as(
        "SELECT status, note FROM eligibility.referrals WHERE referral_id = $1")
        .bind(referral_id)
        .fetch_one(pool)
        .await)
    .unwrap()
}

async fn referrals_out_and_answers_back(backend: Backend) {
    let p = Pipeline::start_on(backend, 2000, no_four_eyes()).await;
    let store = &p.env.store;
    let within = |code: &str| code == AREA || code.starts_with(&format!("{AREA}-"));
    let mut want: BTreeSet<String> = BTreeSet::new();
    for h in p.households.iter().filter(|h| within(&h.area_code)) {
        if h.flags.contains(&Disability) {
            want.insert(format!("RF-1/{}/rehabilitation", h.household_id));
        }
        if h.flags.contains(&YoungChildren) && h.flags.contains(&FemaleHeaded) {
            want.insert(format!("RF-1/{}/child_protection", h.household_id));
        }
    }
    let rehab: Vec<&String> = want
        .iter()
        .filter(|r| r.ends_with("/rehabilitation"))
        .collect();
    let child: Vec<&String> = want
        .iter()
        .filter(|r| r.ends_with("/child_protection"))
        .collect();
    assert!(
        rehab.len() >= 2 && !child.is_empty(),
        "the generated households must hold both kinds of need"
    );

    let moh = Jwk::generate("moh-rehab-1");
    let unicef = Jwk::generate("unicef-jo-1");
    for (k, agency) in [(&moh, "moh-rehab"), (&unicef, "unicef-jordan")] {
        sumud_eligibility::db::add_partner_key(store, &k.kid, agency, &k.x)
            .await
            .unwrap();
    }

    p.send(
        &p.alice,
        &claims(
            CommandKind::Declare,
            "RF-1",
            Some(definition(&[AREA], "100000")),
        ),
    )
    .await;
    p.wait_count(
        "the flood's referrals",
        "SELECT count(*) FROM eligibility.referrals WHERE crisis_id = 'RF-1'",
        want.len() as i64,
    )
    .await;
    let made: BTreeSet<String> = p
        .env
        .rows::<(String,)>("SELECT referral_id FROM eligibility.referrals")
        .await
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(made, want);

    // What a provider's consumer reads: one referral.recorded per
    // referral, keyed by its id, addressed to the provider, nothing else.
    let topic = &p.env.settings.topics.referrals;
    let read = p.env.read_topic(topic, want.len(), DEADLINE);
    let mut seen = BTreeSet::new();
    for (key, payload) in &read {
        let e: Envelope<Referral> = serde_json::from_slice(payload).unwrap();
        assert_eq!(e.event_type, REFERRAL_RECORDED);
        assert_eq!(&e.data.referral_id, key);
        assert_eq!(e.data.status, ReferralStatus::Referred);
        let provider = if key.ends_with("/rehabilitation") {
            "moh-rehab"
        } else {
            "unicef-jordan"
        };
        assert_eq!(e.data.provider, provider);
        assert!(!String::from_utf8_lossy(payload).contains("national_id"));
        seen.insert(key.clone());
    }
    assert_eq!(seen, want);

    // The attacker's side: eleven messages refused, each with its reason.
    let (r1, r2, c1) = (rehab[0].as_str(), rehab[1].as_str(), child[0].as_str());
    send_jws(&p, r1, String::new()).await; // unsigned
    send(
        &p,
        &Jwk::generate("stranger-1"),
        &ack(r1, ReferralStatus::Served, None),
    )
    .await; // unknown_key
    let mut forger = Jwk::generate(&moh.kid);
    forger.kid = moh.kid.clone();
    send(&p, &forger, &ack(r1, ReferralStatus::Served, None)).await; // bad_signature
    send(&p, &unicef, &ack(r1, ReferralStatus::Served, None)).await; // wrong_provider
    let rekeyed = ack(r2, ReferralStatus::Accepted, None);
    send_jws(&p, r1, sumud_shared::jws::sign(&rekeyed, &moh).unwrap()).await; // key_mismatch
    send(
        &p,
        &moh,
        &ack(
            "RF-1/HH-none/rehabilitation",
            ReferralStatus::Accepted,
            None,
        ),
    )
    .await; // unknown_referral
    send(&p, &moh, &ack(r2, ReferralStatus::Declined, None)).await; // invalid_command
    let mut stale = ack(r2, ReferralStatus::Accepted, None);
    stale.iat -= 7200;
    send(&p, &moh, &stale).await; // expired
    let forged = Envelope::new(
        "urn:sumud:eligibility",
        REFERRAL_RECORDED,
        Some(r2.to_owned()),
        Referral {
            referral_id: r2.into(),
            crisis_id: "RF-1".into(),
            household_id: "HH-x".into(),
            area_code: AREA.into(),
            service: "rehabilitation".into(),
            provider: "moh-rehab".into(),
            status: ReferralStatus::Served,
            reason: "forged".into(),
            changed_at: Utc::now(),
        },
    );
    // Written where providers may write: it cannot pass for eligibility's
    // (eligibility hears no such type there).
    p.env
        .publish(
            &p.env.settings.topics.referral_answers,
            r2,
            &forged.to_bytes(),
        )
        .await; // untrusted_sender
    let accepted = send(&p, &moh, &ack(r1, ReferralStatus::Accepted, None)).await;
    send_jws(&p, r1, accepted).await; // replayed
    send(
        &p,
        &moh,
        &ack(r1, ReferralStatus::Served, Some("assessment done")),
    )
    .await;
    send(
        &p,
        &moh,
        &ack(r1, ReferralStatus::Declined, Some("too late")),
    )
    .await; // invalid_transition: served is final
            // UNICEF answers with the CLI, as an agency without its own adapter.
    let dir = std::env::temp_dir().join(format!("sumud-ref-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("unicef.jwk");
    std::fs::write(&key_file, serde_json::to_vec(&unicef).unwrap()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    sumud::referrals_cmd::run(
        &p.env.settings,
        sumud::referrals_cmd::ReferralsCommand::Answer {
            referral: c1.to_owned(),
            status: sumud::referrals_cmd::Answer::Declined,
            note: Some("family moved away".into()),
            key_file,
        },
    )
    .await
    .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let letters = p.dead_letters(11);
    let mut reasons: Vec<&str> = letters.iter().map(|d| d.reason.code()).collect();
    reasons.sort();
    let mut expected = vec![
        Reason::Unsigned,
        Reason::UnknownKey,
        Reason::BadSignature,
        Reason::WrongProvider,
        Reason::KeyMismatch,
        Reason::UnknownReferral,
        Reason::InvalidCommand,
        Reason::Expired,
        Reason::UnknownEventType,
        Reason::Replayed,
        Reason::InvalidTransition,
    ]
    .into_iter()
    .map(Reason::code)
    .collect::<Vec<_>>();
    expected.sort();
    assert_eq!(reasons, expected, "{letters:#?}");

    wait_for("the answers applied", DEADLINE, || async {
        (status(&p, r1).await.0 == "served" && status(&p, c1).await.0 == "declined").then_some(())
    })
    .await;
    assert_eq!(
        status(&p, r1).await,
        ("served".into(), Some("assessment done".into()))
    );
    assert_eq!(status(&p, r2).await.0, "referred", "nothing moved r2");
    let answers = p
        .count(&format!(
            "SELECT count(*) FROM eligibility.referral_answers WHERE referral_id = '{r1}'"
        ))
        .await;
    assert_eq!(answers, 2, "accepted, then served");

    // The provider sees the referral move on the topic, in order, ending
    // served: the table is its own outbox, so each row is published as it
    // stands when the relay reads it (an accept followed at once by a
    // serve may reach the topic as the serve alone). Once every change is
    // marked published, the topic holds nothing else.
    p.wait_count(
        "every referral change published",
        "SELECT count(*) FROM eligibility.referrals WHERE published_seq IS NULL OR published_seq <> change_seq",
        0,
    )
    .await;
    let on_topic = p.env.topic_len(topic);
    let moves: Vec<ReferralStatus> = p
        .env
        .read_topic(topic, on_topic, DEADLINE)
        .into_iter()
        .filter(|(k, _)| k == r1)
        .map(|(_, payload)| {
            let e: Envelope<Referral> = serde_json::from_slice(&payload).unwrap();
            e.data.status
        })
        .collect();
    assert!(
        (want.len() + 2..=want.len() + 3).contains(&on_topic),
        "{on_topic} events for {} referrals and three moves",
        want.len()
    );
    let order = [
        ReferralStatus::Referred,
        ReferralStatus::Accepted,
        ReferralStatus::Served,
    ];
    assert_eq!(moves.last(), Some(&ReferralStatus::Served), "{moves:?}");
    assert!(
        moves.windows(2).all(|w| {
            let at = |s| order.iter().position(|o| *o == s);
            at(w[0]) < at(w[1])
        }),
        "moves in order: {moves:?}"
    );

    // The dashboard's table, by area and service.
    let board = sumud_dashboard::referrals::referral_areas(
        sumud_shared::areas::AreaCatalog::default_catalog(),
        &sumud_dashboard::db::referrals(store).await.unwrap(),
    );
    let row = |service: &str| {
        let r = board
            .iter()
            .find(|r| r.code == AREA && r.service == service)
            .unwrap_or_else(|| panic!("{service} in {board:#?}"));
        (r.referred, r.accepted, r.served, r.declined)
    };
    assert_eq!(board.len(), 2, "{board:#?}");
    assert_eq!(row("rehabilitation"), (rehab.len() as i64 - 1, 0, 1, 0));
    assert_eq!(row("child_protection"), (child.len() as i64 - 1, 0, 0, 1));

    // The social worker's view.
    let h1 = r1.split('/').nth(1).unwrap();
    let lines = sumud_eligibility::explain::explain(store, "RF-1", h1)
        .await
        .unwrap()
        .join("\n");
    assert!(
        lines.contains("referred to rehabilitation (moh-rehab), now served"),
        "{lines}"
    );
    assert!(
        lines.contains("served by moh-rehab: assessment done"),
        "{lines}"
    );

    // A household of the area that gains a disability flag is referred
    // when the registry says so.
    let newly = p
        .households
        .iter()
        .find(|h| within(&h.area_code) && !h.flags.contains(&Disability))
        .unwrap();
    let mut changed = newly.clone();
    changed.version += 1;
    changed.flags.push(Disability);
    p.publish_household(&changed).await;
    wait_for("the new need referred", DEADLINE, || async {
        let n = p
            .count(&format!(
                "SELECT count(*) FROM eligibility.referrals WHERE referral_id = 'RF-1/{}/rehabilitation'",
                changed.household_id
            ))
            .await;
        (n == 1).then_some(())
    })
    .await;
    p.stop().await;
}

on_both_backends!(referrals_out_and_answers_back);
