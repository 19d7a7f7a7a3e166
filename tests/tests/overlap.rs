//! Overlapping crises on the real broker and database, on both backends:
//! a flood is declared over a few districts; then four price shocks, each
//! with another overlap rule, over the governorates around them. Every
//! amount is computed here by hand from the test's own registry:
//!
//! - `skip`: a household the flood already pays gets nothing; the others
//!   the full amount;
//! - `top_up_to`: only what lifts the household's total for the period up
//!   to the price shock's entitlement (rounded down to a minor unit);
//! - `stack` with a household cap: both, but never more than the cap
//!   together;
//! - a price shock whose period starts after the flood's ends is not
//!   reduced by the flood, only by its playbook's household cap.
//!
//! Each reduced decision names the flood and what it gave; a skipped
//! household's `explain` says why it gets nothing; the set-based expansion
//! and the policy `explain` asks agree on every decision; each crisis's
//! committed budget is the sum of what it pays.

use std::collections::BTreeMap;

use sumud_eligibility::{db, explain, policy};
use sumud_shared::events::control::CommandKind;
use sumud_shared::events::crisis::{CrisisDefinition, Hazard, Severity};
use sumud_shared::events::household::Household;
use sumud_shared::playbook::OverlapRule;
use sumud_tests::pipeline::*;
use sumud_tests::{on_both_backends, wait_for, Backend};

/// The flood: `definition`'s severe flood (3 tranches, 2026-12-01 to
/// 2027-03-01) over a few districts only.
const FLOOD: &str = "OV-FLOOD";
const FLOOD_AREAS: [&str; 4] = ["JO-IR-01", "JO-IR-02", "JO-MA-01", "JO-AZ-01"];

/// The price shocks' figures: 100,000 + 20,000 per member a tranche,
/// capped at 100,000 (the override raises the playbook's 60,000 cap to the
/// flat amount), over 4 tranches; new enrolment under a score of 25.
const SHOCK_TRANCHES: i64 = 4;
const SHOCK_CAP: i64 = 500_000;
/// A cap that never binds (no shock pays a household more than 400,000).
const NO_CAP: i64 = 1_000_000;
/// The shipped price-shock playbook's household cap, which a shock that
/// sets none of its own keeps.
const PLAYBOOK_CAP: i64 = 300_000;

fn price_shock(
    area: &str,
    (starts_on, ends_on): (&str, &str),
    rule: OverlapRule,
    cap: Option<i64>,
) -> CrisisDefinition {
    let mut d = definition(&[area], "100000000");
    d.title = format!("Price shock in {area}");
    d.hazard = Hazard::PriceShock;
    d.severity = Severity::Moderate;
    d.response.playbook = "price-shock-topup".into();
    let o = &mut d.response.overrides;
    o.vertical_flat_minor = Some(100_000);
    o.vertical_per_member_minor = Some(20_000);
    o.horizontal_flat_minor = Some(100_000);
    o.horizontal_per_member_minor = Some(20_000);
    o.tranches = Some(SHOCK_TRANCHES as u32);
    o.interval_days = Some(30);
    o.overlap = Some(rule);
    o.household_cap_minor = cap;
    d.starts_on = starts_on.parse().unwrap();
    d.ends_on = ends_on.parse().unwrap();
    d
}

/// What a price shock over `area` would pay each household before any
/// overlap: (kind, per-tranche amount), by hand from the playbook above.
fn shock_base(households: &[Household], area: &str) -> BTreeMap<String, (String, i64)> {
    households
        .iter()
        .filter(|h| h.area_code.starts_with(&format!("{area}-")))
        .filter_map(|h| {
            let amount = (100_000 + 20_000 * i64::from(h.members)).min(100_000);
            let kind = if h.programmes.iter().any(|p| p == "NAF-CASH") {
                "vertical"
            } else if h.welfare_score < 25.0 {
                "horizontal"
            } else {
                return None;
            };
            Some((h.household_id.clone(), (kind.to_owned(), amount)))
        })
        .collect()
}

/// The entitled decisions of `crisis`: (kind, per-tranche amount) by household.
async fn entitled(p: &Pipeline, crisis: &str) -> BTreeMap<String, (String, i64)> {
    p.entitlements(crisis)
        .await
        .into_iter()
        .filter(|(_, (_, status, _))| status == "entitled")
        .map(|(h, (kind, _, amount))| (h, (kind, amount)))
        .collect()
}

/// One price shock of the scenario: id, area, period, overlap rule, cap,
/// and what it pays a household priced at `base` that already holds
/// `held` from the flood, by hand.
type Shock = (
    &'static str,
    &'static str,
    (&'static str, &'static str),
    OverlapRule,
    Option<i64>,
    fn(i64, i64) -> i64,
);

async fn each_overlap_rule_pays_exactly_what_it_allows(backend: Backend) {
    let p = Pipeline::start_on(backend, 3000, no_four_eyes()).await;
    // The flood, decided first: what each household already holds.
    let flood = expected(&p.households, &FLOOD_AREAS);
    p.send(
        &p.alice,
        &claims(
            CommandKind::Declare,
            FLOOD,
            Some(definition(&FLOOD_AREAS, "100000000")),
        ),
    )
    .await;
    p.wait_count(
        "the flood's decisions",
        "SELECT count(*) FROM eligibility.entitlements WHERE crisis_id = 'OV-FLOOD'",
        flood.len() as i64,
    )
    .await;
    let held = |h: &str| flood.get(h).map_or(0, |(_, a)| a * 3);

    // Four price shocks, declared together: three overlap the flood's
    // period, one starts the day after it ends.
    let during = ("2027-01-01", "2027-02-28");
    let after = ("2027-03-02", "2027-04-30");
    let shocks: [Shock; 4] = [
        (
            "OV-SKIP",
            "JO-IR",
            during,
            OverlapRule::Skip,
            Some(NO_CAP),
            |base, held| {
                if held > 0 {
                    0
                } else {
                    base
                }
            },
        ),
        (
            "OV-TOPUP",
            "JO-MA",
            during,
            OverlapRule::TopUpTo,
            Some(NO_CAP),
            |base, held| (base * SHOCK_TRANCHES - held).max(0) / SHOCK_TRANCHES,
        ),
        (
            "OV-STACK",
            "JO-AZ",
            during,
            OverlapRule::Stack,
            Some(SHOCK_CAP),
            |base, held| base.min((SHOCK_CAP - held).max(0) / SHOCK_TRANCHES),
        ),
        (
            "OV-LATER",
            "JO-IR",
            after,
            OverlapRule::TopUpTo,
            None,
            |base, _| base.min(PLAYBOOK_CAP / SHOCK_TRANCHES),
        ),
    ];
    let mut want: BTreeMap<&str, BTreeMap<String, (String, i64)>> = BTreeMap::new();
    for (id, area, period, rule, cap, pays) in shocks {
        let paid: BTreeMap<String, (String, i64)> = shock_base(&p.households, area)
            .into_iter()
            .map(|(h, (kind, base))| {
                let amount = pays(base, held(&h));
                (h, (kind, amount))
            })
            .filter(|(_, (_, amount))| *amount > 0)
            .collect();
        want.insert(id, paid);
        p.send(
            &p.alice,
            &claims(
                CommandKind::Declare,
                id,
                Some(price_shock(area, period, rule, cap)),
            ),
        )
        .await;
    }
    // The scenario reaches every case it claims to test.
    let reduced = |id: &str| {
        want[id]
            .iter()
            .filter(|(h, (_, a))| held(h) > 0 && *a < 100_000)
            .count()
    };
    assert!(
        reduced("OV-TOPUP") > 3 && reduced("OV-STACK") > 3,
        "households topped up and capped: {} and {}",
        reduced("OV-TOPUP"),
        reduced("OV-STACK")
    );
    let skipped: Vec<String> = shock_base(&p.households, "JO-IR")
        .into_keys()
        .filter(|h| !want["OV-SKIP"].contains_key(h))
        .collect();
    assert!(skipped.len() > 3, "households skipped: {}", skipped.len());
    assert!(
        want["OV-SKIP"].len() > 3,
        "and some the flood did not reach: {} of {}",
        want["OV-SKIP"].len(),
        shock_base(&p.households, "JO-IR").len()
    );

    for (id, paid) in &want {
        wait_for(&format!("{id}'s decisions"), DEADLINE, || async {
            let n = p
                .count(&format!(
                    "SELECT count(*) FROM eligibility.entitlements WHERE crisis_id = '{id}'"
                ))
                .await;
            (n == paid.len() as i64 && p.state(id).await.as_deref() == Some("active")).then_some(())
        })
        .await;
        let got: BTreeMap<String, (String, i64)> = p
            .entitlements(id)
            .await
            .into_iter()
            .map(|(h, (kind, status, amount))| {
                assert_eq!(status, "entitled", "{id} {h}");
                (h, (kind, amount))
            })
            .collect();
        assert_eq!(&got, paid, "{id}: kind and amount of every household");
        let committed = p
            .count(&format!(
                "SELECT committed_minor FROM eligibility.crises WHERE crisis_id = '{id}'"
            ))
            .await;
        assert_eq!(
            committed,
            paid.values().map(|(_, a)| a * SHOCK_TRANCHES).sum::<i64>(),
            "{id}'s committed budget"
        );
    }

    // Every reduced decision names the flood and what it gave, and the
    // policy explain asks agrees with the set-based expansion.
    for id in ["OV-TOPUP", "OV-STACK", "OV-LATER"] {
        let crisis = db::crisis_now(&p.env.store, id).await.unwrap().unwrap();
        for (h, (_, amount)) in &want[id] {
            let e = explain::eligibility(&p.env.store, id, h).await.unwrap();
            let d = &e.decisions[0];
            if id == "OV-LATER" {
                let capped = format!(
                    "; reduced to {amount} per tranche by the household cap of {PLAYBOOK_CAP} per period"
                );
                assert!(d.reason.ends_with(&capped), "{id} {h}: {}", d.reason);
            } else if held(h) > 0 && *amount < 100_000 {
                let named = format!(
                    "; reduced to {amount} per tranche: crisis {FLOOD} already gave {} in an overlapping period",
                    held(h)
                );
                assert!(d.reason.contains(&named), "{id} {h}: {}", d.reason);
            } else {
                assert!(!d.reason.contains("reduced"), "{id} {h}: {}", d.reason);
            }
            let facts = e.registry.as_ref().unwrap().facts.clone();
            let mut entries = db::ledger(&p.env.store, h).await.unwrap();
            entries.retain(|l| l.source_id != id);
            let verdict = policy::judge(
                &crisis.resolved,
                &crisis.definition.areas,
                &facts,
                &db::assisted_against(&crisis, &entries),
            );
            let policy::Verdict::Qualifies {
                amount_minor,
                reason,
                ..
            } = verdict
            else {
                panic!("the policy does not qualify {h} in {id}: {verdict:?}");
            };
            assert_eq!((amount_minor, &reason), (*amount, &d.reason), "{id} {h}");
        }
    }
    // The caseload export a partner agency reads: every row valid against
    // the published schema, and the same households and amounts.
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../../schemas/caseload.row.schema.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for (id, paid) in &want {
        let rows = sumud::caseload_cmd::caseload(&p.env.store, id)
            .await
            .unwrap();
        let mut json = Vec::new();
        sumud::caseload_cmd::write(&rows, sumud::caseload_cmd::Format::Json, &mut json).unwrap();
        let json: Vec<serde_json::Value> = serde_json::from_slice(&json).unwrap();
        for row in &json {
            assert!(validator.is_valid(row), "{id}: {row}");
        }
        let exported: BTreeMap<String, (String, i64)> = json
            .iter()
            .map(|r| {
                (
                    r["household_id"].as_str().unwrap().to_owned(),
                    (
                        r["kind"].as_str().unwrap().to_owned(),
                        r["amount_per_tranche_minor"].as_i64().unwrap(),
                    ),
                )
            })
            .collect();
        assert_eq!(&exported, paid, "{id}'s exported caseload");
    }
    // A skipped household is told why, with the flood's name and amount.
    let h = &skipped[0];
    let lines = explain::explain(&p.env.store, "OV-SKIP", h).await.unwrap();
    let why = format!(
        "crisis {FLOOD} already gave {} in an overlapping period",
        held(h)
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&why) && l.contains("no payment from this crisis")),
        "{lines:?}"
    );
    // The ledger shows the household's flood and price-shock assistance.
    let ledger = db::ledger(&p.env.store, h).await.unwrap();
    let sources: Vec<(&str, i64)> = ledger
        .iter()
        .map(|l| (l.source_id.as_str(), l.total_minor))
        .collect();
    let mut want_sources = vec![(FLOOD, held(h))];
    if let Some((_, a)) = want["OV-LATER"].get(h) {
        want_sources.push(("OV-LATER", a * SHOCK_TRANCHES));
    }
    assert_eq!(sources, want_sources, "{h}'s ledger");
    p.stop().await;
}

/// A flood whose budget first reaches no one (every household waitlisted);
/// a price shock then pays the same households in full; the flood's budget
/// is raised. Promoted as they stood, the waitlisted decisions would pay
/// each household the flood in full on top of the shock: instead each is
/// decided anew against the shock under the flood's own rule (`top_up_to`,
/// no household cap), by hand: max(0, 3 × flood price − shock total) div 3.
/// Then an amendment lowers the flood's top-up: each decision is re-priced
/// against what it was weighed against, and one the rule leaves nothing is
/// cancelled, saying so.
async fn a_waitlisted_household_is_weighed_anew_when_promoted(backend: Backend) {
    let p = Pipeline::start_on(backend, 3000, no_four_eyes()).await;
    let area = "JO-IR";
    let flood = expected(&p.households, &[area]);
    let mut starved = definition(&[area], "0.001");
    starved.title = "A flood with no money yet".into();
    p.send(
        &p.alice,
        &claims(CommandKind::Declare, "OV-W", Some(starved.clone())),
    )
    .await;
    p.wait_count(
        "the flood's waitlist",
        "SELECT count(*) FROM eligibility.entitlements WHERE crisis_id = 'OV-W' AND status = 'waitlisted'",
        flood.len() as i64,
    )
    .await;
    // The shock: top_up_to, no cap that binds; nothing entitled in the
    // flood, so it pays everyone it reaches in full.
    let shock = shock_base(&p.households, area);
    p.send(
        &p.alice,
        &claims(
            CommandKind::Declare,
            "OV-S",
            Some(price_shock(
                area,
                ("2027-01-01", "2027-02-28"),
                OverlapRule::TopUpTo,
                Some(NO_CAP),
            )),
        ),
    )
    .await;
    p.wait_count(
        "the shock's decisions",
        "SELECT count(*) FROM eligibility.entitlements WHERE crisis_id = 'OV-S' AND status = 'entitled'",
        shock.len() as i64,
    )
    .await;
    let shock_total = |h: &str| shock.get(h).map_or(0, |(_, a)| a * SHOCK_TRANCHES);
    // The flood's budget is raised: the waitlist is decided anew.
    let want: BTreeMap<String, (String, i64)> = flood
        .iter()
        .map(|(h, (kind, price))| {
            let paid = (price * 3 - shock_total(h)).max(0) / 3;
            (h.clone(), (kind.clone(), paid))
        })
        .filter(|(_, (_, paid))| *paid > 0)
        .collect();
    let reduced = want
        .iter()
        .filter(|(h, (_, paid))| *paid < flood[*h].1)
        .count();
    let skipped = flood.len() - want.len();
    assert!(
        reduced > 3 && skipped > 3 && want.len() > reduced,
        "the scenario reaches every case: {reduced} reduced, {skipped} skipped, {} in full",
        want.len() - reduced
    );
    let mut funded = starved;
    funded.budget = sumud_shared::money::Money::parse_major("100000000", "JOD").unwrap();
    p.send(
        &p.alice,
        &claims(CommandKind::Amend, "OV-W", Some(funded.clone())),
    )
    .await;
    // Applied in one transaction with the new revision.
    p.wait_count(
        "the flood's revision 2",
        "SELECT count(*) FROM eligibility.crises WHERE crisis_id = 'OV-W' AND revision = 2",
        1,
    )
    .await;
    let got = entitled(&p, "OV-W").await;
    assert_eq!(got, want, "the flood after its budget was raised");
    // Those the shock already covers stay out, cancelled, saying why.
    let cancelled = p
        .count(
            "SELECT count(*) FROM eligibility.entitlements WHERE crisis_id = 'OV-W' AND status = 'cancelled' \
             AND reason LIKE '%changed since it was waitlisted; decided anew'",
        )
        .await;
    assert_eq!(cancelled, skipped as i64);
    let committed = p
        .count("SELECT committed_minor FROM eligibility.crises WHERE crisis_id = 'OV-W'")
        .await;
    assert_eq!(committed, want.values().map(|(_, a)| a * 3).sum::<i64>());

    // An amendment lowers the top-up's flat amount to 20,000: each live
    // decision is re-priced under the rule against what it was weighed
    // against (severe: 20,000 + 12,500 per member, capped at 150,000, over
    // 3 tranches, less the shock's total); one left nothing is cancelled,
    // saying so. New enrolments keep their amounts.
    let members: BTreeMap<&str, i64> = p
        .households
        .iter()
        .map(|h| (h.household_id.as_str(), i64::from(h.members)))
        .collect();
    let mut lowered = funded;
    lowered.response.overrides.vertical_flat_minor = Some(20_000);
    p.send(&p.alice, &claims(CommandKind::Amend, "OV-W", Some(lowered)))
        .await;
    p.wait_count(
        "the flood's revision 3",
        "SELECT count(*) FROM eligibility.crises WHERE crisis_id = 'OV-W' AND revision = 3",
        1,
    )
    .await;
    let mut after = BTreeMap::new();
    let mut emptied = 0;
    for (h, (kind, paid)) in &want {
        let now = if kind == "vertical" {
            let price = (20_000 + 12_500 * members[h.as_str()]).min(150_000);
            (price * 3 - shock_total(h)).max(0) / 3
        } else {
            *paid
        };
        if now == 0 {
            emptied += 1;
        } else {
            after.insert(h.clone(), (kind.clone(), now));
        }
    }
    assert!(
        emptied > 0,
        "the amendment leaves some top-ups nothing to pay"
    );
    let got = entitled(&p, "OV-W").await;
    assert_eq!(got, after, "the flood after its top-up was lowered");
    let cancelled = p
        .count(
            "SELECT count(*) FROM eligibility.entitlements WHERE crisis_id = 'OV-W' AND status = 'cancelled' \
             AND reason LIKE '%overlap rule leaves nothing to pay'",
        )
        .await;
    assert_eq!(cancelled, emptied);
    p.stop().await;
}

on_both_backends!(
    each_overlap_rule_pays_exactly_what_it_allows,
    a_waitlisted_household_is_weighed_anew_when_promoted
);
