//! Registry changes reach future tranches, on the real broker and database:
//! after the first tranche is paid, households move away, grow richer,
//! grow, shrink and leave their programme; each one's later tranches follow
//! its new record (cancelled, raised, reduced, switched), the tranche
//! already paid stands and is never paid again, and every change names the
//! registry version that caused it. Expected payments are computed here
//! from the playbook's figures, not read from the services.

use std::collections::BTreeSet;

use sumud_disbursement::config::DisbursementConfig;
use sumud_provider_sim::behaviour::Behaviour;
use sumud_shared::events::control::CommandKind;
use sumud_shared::events::household::Household;
use sumud_tests::pipeline::*;
use sumud_tests::{on_both_backends, Backend};

/// Severe flood, horizontal: 50,000 + 10,000 a member, capped at 125,000.
fn horizontal(members: i32) -> i64 {
    (50_000 + 10_000 * i64::from(members)).min(125_000)
}

/// Severe flood, vertical: 62,500 + 12,500 a member, capped at 150,000.
fn vertical(members: i32) -> i64 {
    (62_500 + 12_500 * i64::from(members)).min(150_000)
}

/// (kind, tranche, part, amount) of every instruction of a household.
type Paid = BTreeSet<(String, i32, i32, i64)>;

async fn paid(p: &Pipeline, household: &str) -> Paid {
    let sql = format!(
        "SELECT kind, tranche, part, amount_minor FROM disbursement.instructions \
         WHERE crisis_id = 'RC-1' AND household_id = '{household}'"
    );
    p.env
        .rows::<(String, i32, i32, i64)>(&sql)
        .await
        .into_iter()
        .collect()
}

fn tranches(kind: &str, from: i32, to: i32, amount: i64) -> Paid {
    (from..=to)
        .map(|t| (kind.to_owned(), t, 0, amount))
        .collect()
}

async fn later_tranches_follow_each_households_new_registry_record(backend: Backend) {
    // Arrange: three tranches 30 "days" apart, a day being 0.3 s (9 s).
    let schedule = DisbursementConfig {
        day_seconds: 0.3,
        retry_base_secs: 0,
        tick_ms: 100,
        ..DisbursementConfig::default()
    };
    let p = Pipeline::start_with_payments_on(
        backend,
        1500,
        no_four_eyes(),
        schedule,
        Behaviour::honest(),
    )
    .await;
    let areas = ["JO-MN"];
    let want = expected(&p.households, &areas);
    let of_kind = |kind: &str, fits: &dyn Fn(&Household) -> bool| -> Vec<Household> {
        p.households
            .iter()
            .filter(|h| want.get(&h.household_id).is_some_and(|(k, _)| k == kind))
            .filter(|h| fits(h))
            .cloned()
            .collect()
    };
    let small = of_kind("horizontal", &|h| (2..=5).contains(&h.members));
    assert!(
        small.len() >= 4,
        "the scenario needs four small horizontal households"
    );
    let (moves, richer, grows, shrinks) = (&small[0], &small[1], &small[2], &small[3]);
    let leaves = &of_kind("vertical", &|_| true)[0];
    let changing: Vec<&str> = [moves, richer, grows, shrinks]
        .iter()
        .map(|h| h.household_id.as_str())
        .collect();
    let stays = &of_kind("horizontal", &|h| {
        !changing.contains(&h.household_id.as_str())
    })[0];

    p.send(
        &p.alice,
        &claims(
            CommandKind::Declare,
            "RC-1",
            Some(definition(&areas, "10000000")),
        ),
    )
    .await;
    let n = want.len() as i64;
    p.wait_count(
        "the first tranche paid",
        "SELECT count(*) FROM disbursement.instructions WHERE tranche = 1 AND status = 'succeeded'",
        n,
    )
    .await;

    // Act: new registry records, version 2.
    let next = |h: &Household, change: &dyn Fn(&mut Household)| {
        let mut h = h.clone();
        h.version = 2;
        change(&mut h);
        h
    };
    let changed = [
        next(moves, &|h| h.area_code = "JO-AM-01-001".into()),
        next(richer, &|h| h.welfare_score = 90.0),
        next(grows, &|h| h.members += 2),
        next(shrinks, &|h| h.members = 1),
        next(leaves, &|h| {
            h.programmes.clear();
            h.welfare_score = 10.0;
        }),
    ];
    for h in &changed {
        p.publish_household(h).await;
    }
    // Disbursement holds the new decisions (two cancelled, two repriced,
    // the vertical cancelled and a horizontal entitled in its place)…
    let ids = [moves, richer, grows, shrinks, leaves]
        .iter()
        .map(|h| format!("'{}'", h.household_id))
        .collect::<Vec<_>>()
        .join(", ");
    p.wait_count(
        "three cancellations in disbursement",
        &format!(
            "SELECT count(*) FROM disbursement.entitlements WHERE crisis_id = 'RC-1' \
             AND household_id IN ({ids}) AND status = 'cancelled'"
        ),
        3,
    )
    .await;
    p.wait_count(
        "the switched household's horizontal entitlement in disbursement",
        &format!(
            "SELECT count(*) FROM disbursement.entitlements WHERE crisis_id = 'RC-1' \
             AND household_id = '{}' AND kind = 'horizontal' AND status = 'entitled'",
            leaves.household_id
        ),
        1,
    )
    .await;
    for (h, members) in [(grows, grows.members + 2), (shrinks, 1)] {
        p.wait_count(
            "a repriced entitlement in disbursement",
            &format!(
                "SELECT count(*) FROM disbursement.entitlements WHERE crisis_id = 'RC-1' \
                 AND household_id = '{}' AND amount_minor = {}",
                h.household_id,
                horizontal(members)
            ),
            1,
        )
        .await;
    }
    // …before the second tranche falls due (otherwise this run proves nothing).
    assert_eq!(
        p.count("SELECT count(*) FROM disbursement.instructions WHERE tranche > 1")
            .await,
        0,
        "the changes reached disbursement before the second tranche"
    );

    // Every later tranche is paid.
    let total = 3 * n - 2 - 2;
    p.wait_count(
        "the third tranche paid",
        "SELECT count(*) FROM disbursement.instructions WHERE tranche = 3 AND status = 'succeeded'",
        n - 2,
    )
    .await;
    assert_eq!(
        p.count("SELECT count(*) FROM disbursement.instructions")
            .await,
        total,
        "three tranches each, one for the two who left, none paid twice"
    );

    // Assert: each household's payments, computed from the playbook.
    let amount = |h: &Household| want[&h.household_id].1;
    assert_eq!(
        paid(&p, &moves.household_id).await,
        tranches("horizontal", 1, 1, amount(moves))
    );
    assert_eq!(
        paid(&p, &richer.household_id).await,
        tranches("horizontal", 1, 1, amount(richer))
    );
    let mut g = tranches("horizontal", 1, 1, amount(grows));
    g.extend(tranches("horizontal", 2, 3, horizontal(grows.members + 2)));
    assert_eq!(
        paid(&p, &grows.household_id).await,
        g,
        "raised from the next tranche, no top-up"
    );
    let mut s = tranches("horizontal", 1, 1, amount(shrinks));
    s.extend(tranches("horizontal", 2, 3, horizontal(1)));
    assert_eq!(paid(&p, &shrinks.household_id).await, s);
    let mut l = tranches("vertical", 1, 1, vertical(leaves.members));
    l.extend(tranches("horizontal", 2, 3, horizontal(leaves.members)));
    assert_eq!(
        paid(&p, &leaves.household_id).await,
        l,
        "the first period is not paid again under the new kind"
    );
    assert_eq!(
        paid(&p, &stays.household_id).await,
        tranches("horizontal", 1, 3, amount(stays))
    );
    assert_eq!(
        p.count("SELECT count(*) FROM disbursement.instructions WHERE part > 0")
            .await,
        0,
        "no tranche was topped up"
    );
    let (_, paid_twice, _) = sumud_provider_sim::ledger_audit(&p.env.store)
        .await
        .unwrap();
    assert_eq!(paid_twice, 0);
    p.assert_budget_holds("RC-1").await;

    // Every change names the registry version that made it, in the trail too.
    let reason = |h: &Household, kind: &str| {
        let sql = format!(
            "SELECT reason FROM eligibility.entitlements WHERE crisis_id = 'RC-1' \
             AND household_id = '{}' AND kind = '{kind}'",
            h.household_id
        );
        let p = &p;
        async move { p.env.rows::<(String,)>(&sql).await[0].0.clone() }
    };
    let r = reason(moves, "horizontal").await;
    assert!(
        r.starts_with("cancelled: registry version 2 (event ")
            && r.ends_with("places the household in JO-AM-01-001, outside the crisis areas; tranches already instructed stand"),
        "{r}"
    );
    let r = reason(richer, "horizontal").await;
    assert!(
        r.contains("its welfare score 90 is not under the threshold 35"),
        "{r}"
    );
    let r = reason(grows, "horizontal").await;
    assert!(
        r.ends_with(&format!(
            "{} members, {} per tranche from the next tranche on (was {}); tranches already instructed stand",
            grows.members + 2,
            horizontal(grows.members + 2),
            amount(grows)
        )),
        "{r}"
    );
    let r = reason(leaves, "vertical").await;
    assert!(
        r.contains("now qualifies as a horizontal expansion instead"),
        "{r}"
    );
    assert_eq!(
        p.count(
            "SELECT count(*) FROM eligibility.decision_log WHERE crisis_id = 'RC-1' \
             AND reason LIKE '%registry version 2 (event %'"
        )
        .await,
        5,
        "one trail entry per re-decided household"
    );
    p.stop().await;
}

on_both_backends!(later_tranches_follow_each_households_new_registry_record);
