//! Signed crisis control and automatic eligibility expansion, on the real
//! broker and database: registry → control → eligibility.

use std::collections::HashSet;

use sumud_control::config::ControlConfig;
use sumud_control::signing::{self, Jwk};
use sumud_shared::areas::AreaCatalog;
use sumud_shared::deadletter::Reason;
use sumud_shared::envelope::Envelope;
use sumud_shared::events::control::CommandKind;
use sumud_shared::events::entitlement::{EntitlementDecision, ExpansionKind};
use sumud_shared::events::household::Household;
use sumud_shared::synthetic;
use sumud_tests::pipeline::*;
use sumud_tests::{on_both_backends, wait_for, Backend, Running};

async fn a_declaration_entitles_exactly_the_expected_households(backend: Backend) {
    let p = Pipeline::start_on(backend, 3000, no_four_eyes()).await;
    let areas = ["JO-MN", "JO-KA", "JO-AQ-01"];
    let want = expected(&p.households, &areas);
    assert!(
        want.len() > 50,
        "the scenario has a real caseload ({})",
        want.len()
    );
    p.send(
        &p.alice,
        &claims(
            CommandKind::Declare,
            "FL-1",
            Some(definition(&areas, "10000000")),
        ),
    )
    .await;

    p.wait_count(
        "all entitlements",
        "SELECT count(*) FROM eligibility.entitlements",
        want.len() as i64,
    )
    .await;
    let got = p.entitlements("FL-1").await;
    for (id, (kind, amount)) in &want {
        let (k, s, a) = &got[id];
        assert_eq!(
            (k, s.as_str(), a),
            (kind, "entitled", amount),
            "household {id}"
        );
    }
    assert_eq!(got.len(), want.len());
    // Every decision is explained and published.
    let published = p
        .env
        .read_topic(&p.env.settings.topics.entitlements, want.len(), DEADLINE);
    assert_eq!(
        published
            .iter()
            .map(|(k, _)| k.clone())
            .collect::<HashSet<_>>()
            .len(),
        want.len()
    );
    // Each reason reads the same on both backends: the score as Rust prints
    // it (12, not 12.0), the amount, the members and the tranches.
    let by_id: std::collections::HashMap<&str, &Household> = p
        .households
        .iter()
        .map(|h| (h.household_id.as_str(), h))
        .collect();
    let crisis = sumud_eligibility::db::crisis_now(&p.env.store, "FL-1")
        .await
        .unwrap()
        .unwrap();
    for (_, payload) in &published {
        let e: Envelope<EntitlementDecision> = serde_json::from_slice(payload).unwrap();
        let d = e.data;
        let h = by_id[d.household_id.as_str()];
        let why = match d.kind {
            ExpansionKind::Vertical => "vertical top-up: enrolled in NAF-CASH".to_owned(),
            ExpansionKind::Horizontal => format!(
                "horizontal enrolment: welfare score {} under 35",
                h.welfare_score
            ),
        };
        let tail = format!(
            "; area {} is in the crisis areas; {} per tranche for {} members x 3 tranches",
            h.area_code, d.amount_per_tranche.minor, h.members
        );
        assert_eq!(
            d.reason,
            format!("{why}{tail}"),
            "household {}",
            h.household_id
        );
        // The set-based expansion and the policy explain asks agree on
        // every decision: kind, amount and reason.
        let (facts, _) = sumud_eligibility::db::household_facts(&p.env.store, &d.household_id)
            .await
            .unwrap()
            .unwrap();
        let verdict = sumud_eligibility::policy::judge(
            &crisis.resolved,
            &crisis.definition.areas,
            &facts,
            &Default::default(),
        );
        let sumud_eligibility::policy::Verdict::Qualifies {
            kind,
            amount_minor,
            reason,
            ..
        } = verdict
        else {
            panic!(
                "the policy does not qualify {}: {verdict:?}",
                d.household_id
            )
        };
        let want_kind = match d.kind {
            ExpansionKind::Vertical => "vertical",
            ExpansionKind::Horizontal => "horizontal",
        };
        assert_eq!(
            (kind, amount_minor, &reason),
            (want_kind, d.amount_per_tranche.minor, &d.reason)
        );
    }
    let lines =
        sumud_eligibility::explain::explain(&p.env.store, "FL-1", want.keys().next().unwrap())
            .await
            .unwrap();
    assert!(lines.iter().any(|l| l.contains("entitled")), "{lines:?}");
    assert_eq!(p.state("FL-1").await.as_deref(), Some("active"));
    let committed: i64 = p
        .count("SELECT committed_minor FROM eligibility.crises WHERE crisis_id = 'FL-1'")
        .await;
    assert_eq!(committed, want.values().map(|(_, a)| a * 3).sum::<i64>());
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_eyes_hold_a_large_declaration_until_another_principal_approves() {
    let config = ControlConfig {
        four_eyes_threshold_minor: 1_000_000,
        ..ControlConfig::default()
    };
    let p = Pipeline::start(500, config).await;
    let areas = ["JO-MN"];
    p.send(
        &p.bob,
        &claims(
            CommandKind::Declare,
            "FL-2",
            Some(definition(&areas, "5000000")),
        ),
    )
    .await;
    wait_for("the proposal", DEADLINE, || async {
        (p.state("FL-2").await.as_deref() == Some("proposed")).then_some(())
    })
    .await;
    let proposed = definition(&areas, "5000000");
    p.send(&p.bob, &approval("FL-2", 1, &proposed)).await; // own proposal
    p.send(&p.alice, &approval("FL-2", 1, &proposed)).await; // lacks the approve role
    let letters = p.dead_letters(2);
    let mut reasons: Vec<Reason> = letters.iter().map(|l| l.reason).collect();
    reasons.sort_by_key(|r| r.code());
    assert_eq!(reasons, vec![Reason::FourEyesViolation, Reason::WrongRole]);
    assert_eq!(p.state("FL-2").await.as_deref(), Some("proposed"));
    assert_eq!(
        p.count("SELECT count(*) FROM eligibility.entitlements")
            .await,
        0
    );
    // While it waits, a household the rules will enrol is told exactly
    // that, not that it is ineligible; one elsewhere is told where it lives.
    let want = expected(&p.households, &areas);
    let (qualifying, (kind, _)) = want.iter().next().unwrap();
    wait_for("eligibility to know the proposal", DEADLINE, || async {
        let lines = sumud_eligibility::explain::explain(&p.env.store, "FL-2", qualifying)
            .await
            .unwrap();
        lines[0].contains("proposed").then_some(())
    })
    .await;
    let lines = sumud_eligibility::explain::explain(&p.env.store, "FL-2", qualifying)
        .await
        .unwrap();
    let last = lines.last().unwrap();
    assert!(
        last.starts_with(&format!(
            "Household {qualifying} qualifies under revision 1 as a {kind} expansion ("
        )) && last.ends_with("but the crisis is proposed and awaits approval: nothing is decided before it is active."),
        "{lines:#?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("not eligible")),
        "{lines:#?}"
    );
    let elsewhere = p
        .households
        .iter()
        .find(|h| !h.area_code.starts_with("JO-MN"))
        .unwrap();
    let lines = sumud_eligibility::explain::explain(&p.env.store, "FL-2", &elsewhere.household_id)
        .await
        .unwrap();
    assert!(
        lines.last().unwrap().ends_with(&format!(
            "is registered in {} (governorate {}, district {}), which none of the crisis areas (JO-MN) names: not eligible.",
            elsewhere.area_code,
            &elsewhere.area_code[..5],
            &elsewhere.area_code[..8]
        )),
        "{lines:#?}"
    );

    let carol = operator(&p.env.store, "carol-1", "carol", &["approve"]).await;
    p.send(&carol, &approval("FL-2", 1, &proposed)).await;
    wait_for("activation", DEADLINE, || async {
        (p.state("FL-2").await.as_deref() == Some("active")).then_some(())
    })
    .await;
    let want = expected(&p.households, &areas).len() as i64;
    p.wait_count(
        "entitlements after approval",
        "SELECT count(*) FROM eligibility.entitlements",
        want,
    )
    .await;
    let trail = sumud_control::db::audit_trail(&p.env.store, "FL-2")
        .await
        .unwrap();
    assert_eq!(
        trail.iter().map(|t| t.5.as_str()).collect::<Vec<_>>(),
        vec!["proposed", "activated"]
    );
    assert_eq!(trail[1].2, "carol");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_forged_or_stale_command_is_dead_lettered_with_its_reason_and_has_no_effect() {
    let p = Pipeline::start(50, no_four_eyes()).await;
    let def = || Some(definition(&["JO-MN"], "1000"));
    // Unsigned: no signature at all.
    p.send_jws("X1", String::new()).await;
    // Bad signature: signed by bob's key but claiming alice's kid.
    let mut impostor = p.bob.clone();
    impostor.kid = "alice-1".into();
    p.send(&impostor, &claims(CommandKind::Declare, "X2", def()))
        .await;
    // Unknown key.
    p.send(
        &Jwk::generate("mallory-1"),
        &claims(CommandKind::Declare, "X3", def()),
    )
    .await;
    // Revoked key.
    let dave = operator(&p.env.store, "dave-1", "dave", &["admin"]).await;
    sumud_control::db::revoke_operator(&p.env.store, "dave-1")
        .await
        .unwrap();
    p.send(&dave, &claims(CommandKind::Declare, "X4", def()))
        .await;
    // Wrong role: bob cannot close.
    // Expired: issued an hour ago.
    let mut old = claims(CommandKind::Declare, "X6", def());
    old.iat -= 3600;
    p.send(&p.alice, &old).await;
    // Replayed: the same valid command twice.
    let once = claims(CommandKind::Declare, "X7", def());
    let jws = signing::sign(&once, &p.alice).unwrap();
    p.send_jws("X7", jws.clone()).await;
    p.send_jws("X7", jws).await;
    wait_for("the valid declaration", DEADLINE, || async {
        p.state("X7").await.map(|_| ())
    })
    .await;
    p.send(&p.bob, &claims(CommandKind::Close, "X7", None))
        .await;

    let letters = p.dead_letters(7);
    let mut reasons: Vec<&str> = letters.iter().map(|l| l.reason.code()).collect();
    reasons.sort();
    assert_eq!(
        reasons,
        vec![
            "bad_signature",
            "expired",
            "replayed",
            "revoked_key",
            "unknown_key",
            "unsigned",
            "wrong_role"
        ]
    );
    assert!(letters.iter().all(|l| l.service == "control"));
    assert_eq!(
        p.count("SELECT count(*) FROM control.crises").await,
        1,
        "only the valid declaration took effect"
    );
    assert_eq!(p.state("X7").await.as_deref(), Some("active"));
    assert_eq!(p.count("SELECT count(*) FROM control.audit").await, 1);
    p.stop().await;
}

async fn amendments_produce_only_the_delta(backend: Backend) {
    let p = Pipeline::start_on(backend, 2000, no_four_eyes()).await;
    let first = ["JO-MN"];
    p.send(
        &p.alice,
        &claims(
            CommandKind::Declare,
            "FL-3",
            Some(definition(&first, "10000000")),
        ),
    )
    .await;
    let want1 = expected(&p.households, &first);
    p.wait_count(
        "first expansion",
        "SELECT count(*) FROM eligibility.entitlements",
        want1.len() as i64,
    )
    .await;
    let before = p.entitlements("FL-3").await;

    // Add an area: only its households are added, nothing already decided changes.
    let both = ["JO-MN", "JO-KA"];
    p.send(
        &p.alice,
        &claims(
            CommandKind::Amend,
            "FL-3",
            Some(definition(&both, "10000000")),
        ),
    )
    .await;
    let want2 = expected(&p.households, &both);
    p.wait_count(
        "added area",
        "SELECT count(*) FROM eligibility.entitlements",
        want2.len() as i64,
    )
    .await;
    let after = p.entitlements("FL-3").await;
    for (id, v) in &before {
        assert_eq!(&after[id], v, "{id} unchanged by the added area");
    }

    // Remove the first area: its decisions are cancelled, the rest stay.
    let second = ["JO-KA"];
    p.send(
        &p.alice,
        &claims(
            CommandKind::Amend,
            "FL-3",
            Some(definition(&second, "10000000")),
        ),
    )
    .await;
    p.wait_count(
        "cancellations",
        "SELECT count(*) FROM eligibility.entitlements WHERE status = 'cancelled'",
        want1.len() as i64,
    )
    .await;
    let want3 = expected(&p.households, &second);
    assert_eq!(
        p.count("SELECT count(*) FROM eligibility.entitlements WHERE status = 'entitled'")
            .await,
        want3.len() as i64
    );

    // Raise the vertical amount: entitled vertical decisions are repriced, no new rows.
    let mut raised = definition(&second, "10000000");
    raised.response.overrides.vertical_flat_minor = Some(90_000);
    p.send(&p.alice, &claims(CommandKind::Amend, "FL-3", Some(raised)))
        .await;
    wait_for("repricing", DEADLINE, || async {
        (p.count("SELECT count(*) FROM eligibility.entitlements WHERE kind = 'vertical' AND status = 'entitled' AND amount_minor < 90000").await == 0).then_some(())
    })
    .await;
    assert_eq!(
        p.count("SELECT count(*) FROM eligibility.entitlements")
            .await,
        want2.len() as i64,
        "no duplicates"
    );
    // Put the first area back: its cancelled decisions are re-enrolled in place, not duplicated.
    p.send(
        &p.alice,
        &claims(
            CommandKind::Amend,
            "FL-3",
            Some(definition(&both, "10000000")),
        ),
    )
    .await;
    p.wait_count(
        "re-enrolment",
        "SELECT count(*) FROM eligibility.entitlements WHERE status = 'cancelled'",
        0,
    )
    .await;
    assert_eq!(
        p.count("SELECT count(*) FROM eligibility.entitlements")
            .await,
        want2.len() as i64,
        "still no duplicates"
    );
    let committed = p
        .count("SELECT committed_minor FROM eligibility.crises WHERE crisis_id = 'FL-3'")
        .await;
    let sum = p.count("SELECT CAST(coalesce(sum(amount_minor * tranches), 0) AS bigint) FROM eligibility.entitlements WHERE status = 'entitled'").await;
    assert_eq!(committed, sum);

    // The trail of those changes is evidence: the database itself refuses
    // to rewrite or remove an entry, whoever asks.
    let trail = "SELECT count(*) FROM eligibility.decision_log WHERE crisis_id = 'FL-3'";
    let entries = p.count(trail).await;
    assert!(entries > 0, "the amendments left a trail");
    let fingerprint = "SELECT CAST(sum(amount_minor) + sum(length(reason)) AS bigint) FROM eligibility.decision_log";
    let before = p.count(fingerprint).await;
    for attack in [
        "UPDATE eligibility.decision_log SET amount_minor = 1, reason = 'rewritten'",
        "DELETE FROM eligibility.decision_log",
        "DELETE FROM eligibility.decision_log WHERE seq = (SELECT max(seq) FROM eligibility.decision_log)",
    ] {
        let refused = p.env.try_execute(attack).await;
        assert!(
            refused.as_ref().is_err_and(|e| e.contains("append-only")),
            "{attack}: {refused:?}"
        );
    }
    if backend == Backend::Postgres {
        let refused = p.env.try_execute("TRUNCATE eligibility.decision_log").await;
        assert!(refused.is_err_and(|e| e.contains("append-only")));
    }
    assert_eq!(p.count(trail).await, entries);
    assert_eq!(p.count(fingerprint).await, before);
    p.stop().await;
}

async fn an_exhausted_budget_waitlists_in_priority_order_and_a_raise_promotes_the_waitlist(
    backend: Backend,
) {
    let p = Pipeline::start_on(backend, 2000, no_four_eyes()).await;
    let areas = ["JO-AM"];
    let want = expected(&p.households, &areas);
    let full: i64 = want.values().map(|(_, a)| a * 3).sum();
    let budget = full / 2;
    let budget_major = format!("{}.{:03}", budget / 1000, budget % 1000);
    p.send(
        &p.alice,
        &claims(
            CommandKind::Declare,
            "FL-4",
            Some(definition(&areas, &budget_major)),
        ),
    )
    .await;
    p.wait_count(
        "every decision",
        "SELECT count(*) FROM eligibility.entitlements",
        want.len() as i64,
    )
    .await;

    // Independently: rank by (priority flags desc, score asc, id asc); the
    // entitled set is the longest prefix whose running total fits.
    let flags = ["disability", "female_headed", "elderly", "young_children"];
    let mut ranked: Vec<&Household> = p
        .households
        .iter()
        .filter(|h| want.contains_key(&h.household_id))
        .collect();
    let prio = |h: &Household| {
        h.flags
            .iter()
            .filter(|f| flags.contains(&f.as_str()))
            .count()
    };
    ranked.sort_by(|a, b| {
        prio(b)
            .cmp(&prio(a))
            .then(a.welfare_score.total_cmp(&b.welfare_score))
            .then(a.household_id.cmp(&b.household_id))
    });
    let mut running = 0;
    let mut covered = HashSet::new();
    // Where each stood when its turn came: (rank, budget left before it).
    let mut position = std::collections::HashMap::new();
    for (i, h) in ranked.iter().enumerate() {
        position.insert(h.household_id.clone(), (i + 1, budget - running));
        running += want[&h.household_id].1 * 3;
    }
    running = 0;
    for h in ranked {
        running += want[&h.household_id].1 * 3;
        if running > budget {
            break;
        }
        covered.insert(h.household_id.clone());
    }
    let got = p.entitlements("FL-4").await;
    let entitled: HashSet<String> = got
        .iter()
        .filter(|(_, v)| v.1 == "entitled")
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(entitled, covered);
    assert!(got.values().any(|v| v.1 == "waitlisted"));
    // A waitlisted household is told it qualifies and why it waits, never
    // that it is ineligible.
    let waiting = want.keys().find(|id| !covered.contains(*id)).unwrap();
    let lines = sumud_eligibility::explain::explain(&p.env.store, "FL-4", waiting)
        .await
        .unwrap();
    let kind = &want[waiting].0;
    assert!(
        lines[1].starts_with(&format!(
            "Household {waiting}: waitlisted ({kind} expansion)"
        )),
        "{lines:#?}"
    );
    assert!(
        lines[2].ends_with(
            "waitlisted: the remaining budget does not reach this household in priority order."
        ),
        "{lines:#?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("not eligible")),
        "{lines:#?}"
    );
    // …and where it stood: its rank and the budget left when its turn came,
    // as computed above from the ranking alone.
    let (rank, left) = position[waiting.as_str()];
    let needed = want[waiting].1 * 3;
    let jod = |minor: i64| format!("{}.{:03} JOD", minor / 1000, minor % 1000);
    let stood = if left >= 0 {
        format!("{} of the budget was left when its turn came", jod(left))
    } else {
        format!(
            "the households ranked before it had already claimed {} more than the budget held",
            jod(-left)
        )
    };
    assert_eq!(
        lines[3],
        format!(
            "  Budget when decided: rank {rank} in priority order; {stood}, and it needed {}.",
            jod(needed)
        ),
        "{lines:#?}"
    );
    assert!(
        left < needed,
        "a waitlisted household's need exceeded what was left"
    );
    let committed = p
        .count("SELECT committed_minor FROM eligibility.crises WHERE crisis_id = 'FL-4'")
        .await;
    assert!(committed <= budget, "budget holds: {committed} <= {budget}");

    // Double the budget: the whole waitlist fits and is promoted.
    let full_major = format!("{}.{:03}", full / 1000, full % 1000);
    p.send(
        &p.alice,
        &claims(
            CommandKind::Amend,
            "FL-4",
            Some(definition(&areas, &full_major)),
        ),
    )
    .await;
    p.wait_count(
        "promotion",
        "SELECT count(*) FROM eligibility.entitlements WHERE status = 'entitled'",
        want.len() as i64,
    )
    .await;
    assert_eq!(
        p.count("SELECT committed_minor FROM eligibility.crises WHERE crisis_id = 'FL-4'")
            .await,
        full
    );
    p.stop().await;
}

async fn a_household_registered_during_an_active_crisis_becomes_entitled(backend: Backend) {
    let p = Pipeline::start_on(backend, 300, no_four_eyes()).await;
    let areas = ["JO-MN"];
    p.send(
        &p.alice,
        &claims(
            CommandKind::Declare,
            "FL-5",
            Some(definition(&areas, "10000000")),
        ),
    )
    .await;
    let want = expected(&p.households, &areas).len() as i64;
    p.wait_count(
        "first expansion",
        "SELECT count(*) FROM eligibility.entitlements",
        want,
    )
    .await;

    let mut newcomer = synthetic::household(AreaCatalog::default_catalog(), 999, 1);
    newcomer.household_id = "HH-NEW-1".into();
    newcomer.area_code = "JO-MN-01-003".into();
    newcomer.welfare_score = 10.0;
    newcomer.programmes.clear();
    let mut rich = newcomer.clone();
    rich.household_id = "HH-NEW-2".into();
    rich.welfare_score = 90.0;
    // Exactly at the threshold (35): not under it.
    let mut at = newcomer.clone();
    at.household_id = "HH-NEW-3".into();
    at.welfare_score = 35.0;
    for h in [&newcomer, &rich, &at] {
        p.publish_household(h).await;
    }
    p.wait_count(
        "the newcomer's entitlement",
        "SELECT count(*) FROM eligibility.entitlements",
        want + 1,
    )
    .await;
    p.wait_count(
        "the registry's copy of the newcomers",
        "SELECT count(*) FROM registry.households WHERE household_id LIKE 'HH-NEW-%'",
        3,
    )
    .await;
    let got = p.entitlements("FL-5").await;
    assert_eq!(got["HH-NEW-1"].0, "horizontal");
    assert!(!got.contains_key("HH-NEW-2"));
    assert!(!got.contains_key("HH-NEW-3"));
    // Each is told the rule that decided it, in the rule's own figures.
    let explain = |id: &'static str| {
        let store = p.env.store.clone();
        async move {
            sumud_eligibility::explain::explain(&store, "FL-5", id)
                .await
                .unwrap()
        }
    };
    let lines = explain("HH-NEW-3").await;
    assert_eq!(
        lines.last().unwrap(),
        "Household HH-NEW-3 is in the crisis areas, but it is not enrolled in NAF-CASH; its welfare score 35 is not under the threshold 35 for new enrolment: not eligible.",
        "{lines:#?}"
    );
    let lines = explain("HH-NEW-2").await;
    assert!(
        lines
            .last()
            .unwrap()
            .contains("its welfare score 90 is not under the threshold 35"),
        "{lines:#?}"
    );
    let lines = explain("HH-NEW-1").await;
    let members = newcomer.members;
    let amount = (50_000 + 10_000 * i64::from(members)).min(125_000);
    assert!(
        lines[1].starts_with("Household HH-NEW-1: entitled (horizontal expansion)")
            && lines[1].contains("on registry record version 1 "),
        "{lines:#?}"
    );
    assert_eq!(
        lines[2],
        format!("  Why: horizontal enrolment: welfare score 10 under 35; area JO-MN-01-003 is in the crisis areas; {amount} per tranche for {members} members x 3 tranches.")
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("Registry record version 1 was set by event ")),
        "{lines:#?}"
    );
    // The newcomer moving away later is cancelled by that registry
    // version (its future tranches go with it), and the trail keeps both.
    let mut moved = newcomer.clone();
    moved.version = 2;
    moved.area_code = "JO-AM-01-001".into();
    p.publish_household(&moved).await;
    wait_for("the move", DEADLINE, || async {
        (p.count("SELECT version FROM registry.households WHERE household_id = 'HH-NEW-1'")
            .await
            == 2)
            .then_some(())
    })
    .await;
    wait_for("the cancellation", DEADLINE, || async {
        (p.entitlements("FL-5").await["HH-NEW-1"].1 == "cancelled").then_some(())
    })
    .await;
    let lines = explain("HH-NEW-1").await;
    assert!(
        lines
            .iter()
            .any(|l| l.contains("Why: cancelled: registry version 2 (event ")
                && l.contains("places the household in JO-AM-01-001, outside the crisis areas")),
        "{lines:#?}"
    );
    p.stop().await;
}

async fn a_crash_mid_expansion_leaves_no_duplicates_and_nothing_missing(backend: Backend) {
    let p = Pipeline::start_on(backend, 6000, no_four_eyes()).await;
    let areas = ["JO-AM", "JO-IR"];
    let want = expected(&p.households, &areas);
    let mut services = p.services;
    let eligibility = services.pop().unwrap();
    let p = Pipeline { services, ..p };
    let pub_claims = claims(
        CommandKind::Declare,
        "FL-6",
        Some(definition(&areas, "100000000")),
    );
    p.send(&p.alice, &pub_claims).await;
    // Give the service a moment to be inside the expansion, then crash it.
    wait_for("the crisis", DEADLINE, || async {
        p.state("FL-6").await.map(|_| ())
    })
    .await;
    eligibility.kill().await;
    let app = sumud_eligibility::App::build(p.env.settings.clone())
        .await
        .unwrap();
    let restarted = Running::spawn(|t| app.run(t));
    p.wait_count(
        "every entitlement",
        "SELECT count(*) FROM eligibility.entitlements",
        want.len() as i64,
    )
    .await;
    assert_eq!(
        p.count("SELECT count(*) FROM (SELECT household_id FROM eligibility.entitlements GROUP BY crisis_id, household_id HAVING count(*) > 1) d").await,
        0
    );
    let got = p.entitlements("FL-6").await;
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    restarted.stop().await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_command_is_acknowledged_a_copy_elsewhere_is_a_replay_and_another_command_at_a_reused_offset_applies(
) {
    use std::sync::Arc;
    use sumud_control::handler::ControlHandler;
    use sumud_shared::kafka::consumer::{Handler, Incoming, Verdict};

    // Arrange: a declaration applied through the running pipeline.
    let p = Pipeline::start(200, no_four_eyes()).await;
    let jws = signing::sign(
        &claims(
            CommandKind::Declare,
            "RD-1",
            Some(definition(&["JO-MN"], "1000")),
        ),
        &p.alice,
    )
    .unwrap();
    p.send_jws("RD-1", jws.clone()).await;
    wait_for("the declaration", DEADLINE, || async {
        p.state("RD-1").await.map(|_| ())
    })
    .await;
    let (topic, partition, offset): (String, i32, i64) = sqlx::query_as(
        "SELECT source_topic, source_partition, source_offset FROM control.commands",
    )
    .fetch_one(&p.env.pool)
    .await
    .unwrap();
    assert_eq!(topic, p.env.settings.topics.control);
    // A handler whose clock has moved past the command's validity, as after a
    // long broker outage.
    let handler = |config| {
        ControlHandler::new(
            p.env.store.clone(),
            config,
            p.env.settings.topics.crisis.clone(),
            Arc::new(tokio::sync::Notify::new()),
        )
    };
    let late = handler(ControlConfig {
        max_command_age_secs: -1,
        ..no_four_eyes()
    });
    let message = |offset: i64, crisis: &str, jws: &str| Incoming {
        topic: topic.clone(),
        partition,
        offset,
        key: Some(crisis.as_bytes().to_vec()),
        traceparent: None,
        envelope: Envelope::new(
            "urn:test",
            sumud_shared::events::control::CONTROL_COMMAND,
            Some(crisis.into()),
            serde_json::json!({ "jws": jws }),
        ),
        raw: Arc::from(&b"{}"[..]),
    };

    // Act: the same message again (the group re-reading after a restart),
    // and the same command copied to a later offset.
    let redelivered = late.handle(&[message(offset, "RD-1", &jws)]).await.unwrap();
    let copied = handler(no_four_eyes())
        .handle(&[message(offset + 1, "RD-1", &jws)])
        .await
        .unwrap();

    // Assert
    assert_eq!(redelivered, vec![Verdict::Done]);
    match &copied[0] {
        Verdict::Reject(r) => assert_eq!(r.reason, Reason::Replayed, "{r:?}"),
        v => panic!("a copy at another offset is a replay, got {v:?}"),
    }
    assert_eq!(p.count("SELECT count(*) FROM control.audit").await, 1);
    assert_eq!(
        p.count("SELECT revision::bigint FROM control.crises WHERE crisis_id = 'RD-1'")
            .await,
        1
    );

    // Act: a different command at RD-1's very position, as after the topic
    // was recreated (or the embedded broker, whose topics live in memory,
    // restarted) and numbered its messages from 0 again.
    let other = signing::sign(
        &claims(
            CommandKind::Declare,
            "RD-2",
            Some(definition(&["JO-MN"], "1000")),
        ),
        &p.alice,
    )
    .unwrap();
    let applied = handler(no_four_eyes())
        .handle(&[message(offset, "RD-2", &other)])
        .await
        .unwrap();

    // Assert: it is a new command, applied — not taken for a redelivery.
    assert_eq!(applied, vec![Verdict::Done]);
    assert_eq!(p.state("RD-2").await.as_deref(), Some("active"));
    p.stop().await;
}

async fn a_household_registered_at_governorate_level_is_cancelled_when_its_governorate_leaves(
    backend: Backend,
) {
    // A household whose area code is a governorate has no district: leaving
    // the crisis must cancel its decision all the same.
    let p = Pipeline::start_on(backend, 300, no_four_eyes()).await;
    let mut h = synthetic::household(AreaCatalog::default_catalog(), 999, 2);
    h.household_id = "HH-GOV-1".into();
    h.area_code = "JO-MN".into();
    h.welfare_score = 10.0;
    h.programmes.clear();
    p.publish_household(&h).await;
    p.wait_count(
        "the household",
        "SELECT count(*) FROM registry.households WHERE household_id = 'HH-GOV-1'",
        1,
    )
    .await;
    let both = ["JO-MN", "JO-KA"];
    p.send(
        &p.alice,
        &claims(
            CommandKind::Declare,
            "FL-G",
            Some(definition(&both, "10000000")),
        ),
    )
    .await;
    wait_for("its entitlement", DEADLINE, || async {
        p.entitlements("FL-G")
            .await
            .get("HH-GOV-1")
            .filter(|(_, s, _)| s == "entitled")
            .map(|_| ())
    })
    .await;

    p.send(
        &p.alice,
        &claims(
            CommandKind::Amend,
            "FL-G",
            Some(definition(&["JO-KA"], "10000000")),
        ),
    )
    .await;
    wait_for("its cancellation", DEADLINE, || async {
        p.entitlements("FL-G")
            .await
            .get("HH-GOV-1")
            .filter(|(_, s, _)| s == "cancelled")
            .map(|_| ())
    })
    .await;
    let committed = p
        .count("SELECT committed_minor FROM eligibility.crises WHERE crisis_id = 'FL-G'")
        .await;
    let sum = p.count("SELECT CAST(coalesce(sum(amount_minor * tranches), 0) AS bigint) FROM eligibility.entitlements WHERE status = 'entitled'").await;
    assert_eq!(committed, sum, "its budget was released");
    p.stop().await;
}

on_both_backends!(
    a_declaration_entitles_exactly_the_expected_households,
    amendments_produce_only_the_delta,
    an_exhausted_budget_waitlists_in_priority_order_and_a_raise_promotes_the_waitlist,
    a_household_registered_during_an_active_crisis_becomes_entitled,
    a_crash_mid_expansion_leaves_no_duplicates_and_nothing_missing,
    a_household_registered_at_governorate_level_is_cancelled_when_its_governorate_leaves,
);
