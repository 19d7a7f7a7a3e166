//! Reconciliation against the provider's own statement, on the real broker
//! and database (both backends): a crisis is paid through the provider
//! simulator, which then writes its statement from its ledger (camt.054,
//! pain.002, CSV); discrepancies of every kind are planted in what the
//! provider claims, and `sumud reconcile --statement` (the CLI's library
//! functions) must list exactly the planted ones. Expected sets come from
//! the planting and our instructions table, never from the code under test.
//! The exit statuses of the binary itself are checked in
//! `cli/tests/reconcile_exit_codes.rs`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use sumud_disbursement::config::DisbursementConfig;
use sumud_disbursement::statement::{Kind, Reconciliation};
use sumud_provider_sim::behaviour::Behaviour;
use sumud_provider_sim::statement::{self as sim, Header, LedgerRow};
use sumud_shared::events::control::CommandKind;
use sumud_tests::pipeline::*;
use sumud_tests::{on_both_backends, Backend};

const CRISIS: &str = "REC-1";
/// A reference the provider paid that is none of ours.
const STRANGER: &str = "ffffffff-0000-5000-8000-00000000beef";

/// Our reference as the test compares it: hyphens dropped, lower case (the
/// statement may write either form; pain.001 sent the first).
fn key(reference: &str) -> String {
    reference.replace('-', "").to_lowercase()
}

fn keys<'a>(refs: impl IntoIterator<Item = &'a String>) -> BTreeSet<String> {
    refs.into_iter().map(|r| key(r)).collect()
}

fn listed(r: &Reconciliation, kind: Kind) -> BTreeSet<String> {
    r.lines(kind).iter().map(|l| key(&l.reference)).collect()
}

/// A crisis of one tranche paid by a provider that closes about one
/// account in ten for good; returns the pipeline once every instruction is
/// final, with (succeeded, failed) instruction ids.
async fn paid_crisis(backend: Backend) -> (Pipeline, Vec<String>, Vec<String>) {
    let provider = Behaviour {
        permanent_reject_rate: 0.1,
        ..Behaviour::honest()
    };
    let schedule = DisbursementConfig {
        day_seconds: 0.05,
        retry_base_secs: 0,
        tick_ms: 100,
        ..DisbursementConfig::default()
    };
    let p =
        Pipeline::start_with_payments_on(backend, 1000, no_four_eyes(), schedule, provider).await;
    let areas = ["JO-IR"];
    let n = expected(&p.households, &areas).len() as i64;
    let mut one = definition(&areas, "10000000");
    one.response.overrides.tranches = Some(1);
    p.send(&p.alice, &claims(CommandKind::Declare, CRISIS, Some(one)))
        .await;
    p.wait_count(
        "every instruction final",
        "SELECT count(*) FROM disbursement.instructions WHERE status IN ('succeeded', 'failed')",
        n,
    )
    .await;
    let (paid, failed) = (ids(&p, "succeeded").await, ids(&p, "failed").await);
    assert!(
        paid.len() >= 4 && !failed.is_empty(),
        "the scenario needs four payments and a failure: {} paid, {} failed",
        paid.len(),
        failed.len()
    );
    (p, paid, failed)
}

/// Our instruction ids in `status`, in order.
async fn ids(p: &Pipeline, status: &str) -> Vec<String> {
    let rows: Vec<(String,)> = p
        .env
        .rows(&format!(
            "SELECT instruction_id FROM disbursement.instructions \
             WHERE status = '{status}' ORDER BY instruction_id"
        ))
        .await;
    rows.into_iter().map(|(id,)| id).collect()
}

/// The ledger row of `id`'s payment.
fn paid_row(rows: &[LedgerRow], id: &str) -> usize {
    rows.iter()
        .position(|r| r.reference_id == id && r.paid)
        .unwrap_or_else(|| panic!("{id} is paid in the ledger"))
}

fn header() -> Header {
    Header {
        message_id: "SIM-STMT-1".into(),
        account: format!("CRISIS-{CRISIS}"),
        currency: "JOD".into(),
        created: chrono::Utc::now(),
    }
}

/// Writes the statement of `rows` in each format to a private directory.
fn write_all(rows: &[LedgerRow], tag: &str) -> Vec<(&'static str, PathBuf)> {
    let dir = std::env::temp_dir().join(format!("sumud-recon-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let h = header();
    [
        ("camt.054", "xml", sim::camt054(rows, &h)),
        ("pain.002", "xml", sim::pain002(rows, &h)),
        ("csv", "csv", sim::csv(rows, &h)),
    ]
    .into_iter()
    .map(|(format, ext, text)| {
        let file = dir.join(format!("{tag}-{format}.{ext}"));
        std::fs::write(&file, text).unwrap();
        (format, file)
    })
    .collect()
}

async fn reconcile(p: &Pipeline, file: &Path, provider: Option<&str>) -> Reconciliation {
    let statement = sumud::statement_cmd::read(file).unwrap();
    sumud::statement_cmd::compare(&p.env.store, CRISIS, provider, &statement)
        .await
        .unwrap()
}

async fn the_simulators_own_statement_reconciles_in_every_format(backend: Backend) {
    let (p, paid, failed) = paid_crisis(backend).await;
    let ledger = sim::ledger(&p.env.store, None).await.unwrap();

    for (format, file) in write_all(&ledger, "clean") {
        let r = reconcile(&p, &file, None).await;

        assert_eq!(r.discrepancies(), 0, "{format}: {r:#?}");
        // camt.054 books payments only; pain.002 and the CSV also list the
        // rejections, which agree with our failures.
        let mut want = keys(&paid);
        if format != "camt.054" {
            want.extend(keys(&failed));
        }
        assert_eq!(listed(&r, Kind::Matched), want, "{format}");
        assert!(r.pending.is_empty(), "{format}");
    }
    p.stop().await;
}

async fn planted_discrepancies_are_listed_exactly_in_every_format(backend: Backend) {
    let (p, paid, failed) = paid_crisis(backend).await;
    let mut rows = sim::ledger(&p.env.store, None).await.unwrap();

    // Plant: one amount changed, one payment dropped, one stranger paid,
    // one payment listed twice, one failure listed as paid.
    let (changed, dropped, doubled) = (&paid[0], &paid[1], &paid[2]);
    let i = paid_row(&rows, changed);
    rows[i].amount_minor += 1;
    let i = paid_row(&rows, dropped);
    rows.remove(i);
    let i = paid_row(&rows, doubled);
    let copy = rows[i].clone();
    rows.push(copy.clone());
    rows.push(LedgerRow {
        reference_id: STRANGER.into(),
        amount_minor: 50_000,
        ..copy
    });
    let resurrected = &failed[0];
    let i = rows
        .iter()
        .position(|r| r.reference_id == *resurrected)
        .expect("the failed attempt is in the ledger");
    rows[i].paid = true;
    rows[i].outcome = "paid".into();

    for (format, file) in write_all(&rows, "planted") {
        let r = reconcile(&p, &file, None).await;

        let one = |id: &String| BTreeSet::from([key(id)]);
        assert_eq!(listed(&r, Kind::AmountMismatch), one(changed), "{format}");
        assert_eq!(listed(&r, Kind::Missing), one(dropped), "{format}");
        assert_eq!(
            listed(&r, Kind::Unknown),
            one(&STRANGER.to_string()),
            "{format}"
        );
        assert_eq!(
            listed(&r, Kind::PaidTwice),
            keys([doubled, resurrected]),
            "{format}"
        );
        assert!(
            r.status_differs.is_empty() && r.pending.is_empty(),
            "{format}"
        );
        let mut matched = keys(&paid[3..]);
        if format != "camt.054" {
            matched.extend(keys(&failed[1..]));
        }
        assert_eq!(listed(&r, Kind::Matched), matched, "{format}");
        assert_eq!(r.discrepancies(), 5, "{format}");
        // The amounts shown are the planted ones.
        let line = &r.amount_mismatch[0];
        let ours = line.ours.as_ref().unwrap();
        let theirs = line.theirs[0].amount.as_ref().unwrap();
        assert_eq!(theirs.minor, ours.amount.minor + 1, "{format}");
    }
    p.stop().await;
}

/// A statement covers one provider: named, only its instructions are
/// expected on it; unnamed, every other provider's payments are missing.
async fn a_statement_of_one_provider_is_compared_with_that_providers_instructions(
    backend: Backend,
) {
    let (p, _, _) = paid_crisis(backend).await;
    let by_provider: Vec<(String, String)> = p
        .env
        .rows(
            "SELECT instruction_id, provider FROM disbursement.instructions \
             WHERE status = 'succeeded' ORDER BY instruction_id",
        )
        .await;
    let first = by_provider[0].1.clone();
    let others: Vec<String> = by_provider
        .iter()
        .filter(|(_, provider)| *provider != first)
        .map(|(id, _)| id.clone())
        .collect();
    assert!(
        !others.is_empty(),
        "the crisis pays through several providers"
    );
    let rows = sim::ledger(&p.env.store, Some(&first)).await.unwrap();
    assert!(rows.iter().all(|r| r.provider == first));

    for (format, file) in write_all(&rows, &first) {
        let named = reconcile(&p, &file, Some(&first)).await;
        let unnamed = reconcile(&p, &file, None).await;

        assert_eq!(named.discrepancies(), 0, "{format}: {named:#?}");
        assert_eq!(listed(&unnamed, Kind::Missing), keys(&others), "{format}");
    }
    p.stop().await;
}

on_both_backends!(
    the_simulators_own_statement_reconciles_in_every_format,
    planted_discrepancies_are_listed_exactly_in_every_format,
    a_statement_of_one_provider_is_compared_with_that_providers_instructions,
);
