//! Grievances on the real broker and database, on both backends: after a
//! crisis is paid (some payments refused for good), households complain
//! through the hotline and field workers — one left out of the crisis
//! areas, one whose payment failed, one that was paid — and:
//!
//! - a complaint about an unknown household or crisis, or naming another
//!   household's payment, is refused; the same complaint again joins the
//!   open one;
//! - the dashboard's grievance table counts them by governorate, kind and
//!   age, as computed here from the test's own registry and the filing
//!   times it set;
//! - each answer cites what `sumud explain` shows: the real reason (the
//!   household's own area, outside the crisis areas) and the payment's
//!   real status; answered once, and kept final by the database.

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use sumud::grievances_cmd;
use sumud_disbursement::db::{self, Answer, Complaint, Filed};
use sumud_disbursement::grievance::{Channel, Kind, Outcome};
use sumud_shared::areas::AreaCatalog;
use sumud_tests::pipeline::*;
use sumud_tests::{on_both_backends, Backend};

const CRISIS: &str = "GR-1";
const AREAS: [&str; 1] = ["JO-IR"];

fn governorate(area: &str) -> String {
    area.splitn(3, '-').take(2).collect::<Vec<_>>().join("-")
}

/// A complaint taken by the hotline about `household` in the crisis.
fn complaint(household: &str, kind: Kind, channel: Channel) -> Complaint<'_> {
    Complaint {
        crisis: CRISIS,
        household,
        kind,
        channel,
        filed_by: "hotline-7",
        instruction: None,
        note: "",
    }
}

/// (open, not_included, wrong_amount, not_received, <1 day, 1–7 days, >7 days, answered)
type Row = (i64, i64, i64, i64, i64, i64, i64, i64);

async fn board(p: &Pipeline) -> BTreeMap<String, Row> {
    let rows = sumud_dashboard::db::grievances(&p.env.store, Utc::now())
        .await
        .unwrap();
    sumud_dashboard::grievances::grievance_areas(AreaCatalog::default_catalog(), &rows)
        .into_iter()
        .map(|g| {
            (
                g.code,
                (
                    g.open,
                    g.not_included,
                    g.wrong_amount,
                    g.not_received,
                    g.under_1_day,
                    g.from_1_to_7_days,
                    g.over_7_days,
                    g.answered,
                ),
            )
        })
        .collect()
}

async fn households_complain_and_are_answered_with_the_real_reason(backend: Backend) {
    // Arrange: a one-tranche crisis in Irbid, paid as far as it goes.
    let p = Pipeline::paid_once_with_refusals(backend, 600, CRISIS, &AREAS, 0.15).await;
    let store = &p.env.store;
    // Three households, chosen from the test's own registry and the payments.
    let out = p
        .households
        .iter()
        .find(|h| governorate(&h.area_code) != "JO-IR")
        .unwrap()
        .clone();
    let (failed_ref, failed_hh, failed_reason): (String, String, String) = p
        .env
        .rows("SELECT instruction_id, household_id, reason_code FROM disbursement.instructions WHERE status = 'failed' ORDER BY instruction_id LIMIT 1")
        .await
        .remove(0);
    let (paid_ref, paid_hh): (String, String) = p
        .env
        .rows("SELECT instruction_id, household_id FROM disbursement.instructions WHERE status = 'succeeded' ORDER BY instruction_id LIMIT 1")
        .await
        .remove(0);
    let area_of = |id: &str| {
        p.households
            .iter()
            .find(|h| h.household_id == id)
            .unwrap()
            .area_code
            .clone()
    };

    // Act: the three complaints.
    let filed = |f: Filed| match f {
        Filed::New(id) => id,
        other => panic!("not filed: {other:?}"),
    };
    let g_out = filed(
        db::file_grievance(
            store,
            &complaint(&out.household_id, Kind::NotIncluded, Channel::Hotline),
        )
        .await
        .unwrap(),
    );
    let g_failed = filed(
        db::file_grievance(
            store,
            &Complaint {
                instruction: Some(&failed_ref),
                filed_by: "field-irbid-2",
                ..complaint(&failed_hh, Kind::NotReceived, Channel::Field)
            },
        )
        .await
        .unwrap(),
    );
    let g_paid = filed(
        db::file_grievance(
            store,
            &complaint(&paid_hh, Kind::WrongAmount, Channel::Hotline),
        )
        .await
        .unwrap(),
    );

    // Assert: refusals and joins.
    let refused = |f: Filed| matches!(f, Filed::Refused(_));
    assert!(refused(
        db::file_grievance(
            store,
            &complaint("HH-nobody", Kind::NotIncluded, Channel::Hotline)
        )
        .await
        .unwrap()
    ));
    assert!(refused(
        db::file_grievance(
            store,
            &Complaint {
                crisis: "NO-SUCH-CRISIS",
                ..complaint(&out.household_id, Kind::NotIncluded, Channel::Hotline)
            }
        )
        .await
        .unwrap()
    ));
    assert!(
        refused(
            db::file_grievance(
                store,
                &Complaint {
                    instruction: Some(&paid_ref),
                    ..complaint(&failed_hh, Kind::WrongAmount, Channel::Hotline)
                }
            )
            .await
            .unwrap()
        ),
        "another household's payment"
    );
    assert_eq!(
        db::file_grievance(
            store,
            &complaint(&out.household_id, Kind::NotIncluded, Channel::Field)
        )
        .await
        .unwrap(),
        Filed::AlreadyOpen(g_out)
    );

    // The dashboard by area and age: one grievance backdated three days,
    // one ten days (the filing time is the arrangement, not the result).
    let backdate = |id: i64, days: i64| {
        let at = Utc::now() - Duration::days(days);
        let at = match backend {
            Backend::Postgres => format!("'{}'", at.to_rfc3339()),
            Backend::Sqlite => format!("'{}'", sumud_shared::db::sqlite::timestamp(at)),
        };
        format!("UPDATE disbursement.grievances SET created_at = {at} WHERE grievance_id = {id}")
    };
    p.env.try_execute(&backdate(g_failed, 3)).await.unwrap();
    p.env.try_execute(&backdate(g_paid, 10)).await.unwrap();
    let mut want: BTreeMap<String, Row> = BTreeMap::new();
    let mut add = |area: &str, kind: Kind, age_days: i64| {
        let r = want.entry(governorate(area)).or_default();
        r.0 += 1;
        match kind {
            Kind::NotIncluded => r.1 += 1,
            Kind::WrongAmount => r.2 += 1,
            Kind::NotReceived => r.3 += 1,
        }
        match age_days {
            0 => r.4 += 1,
            1..=7 => r.5 += 1,
            _ => r.6 += 1,
        }
    };
    add(&out.area_code, Kind::NotIncluded, 0);
    add(&area_of(&failed_hh), Kind::NotReceived, 3);
    add(&area_of(&paid_hh), Kind::WrongAmount, 10);
    assert_eq!(board(&p).await, want);

    // Answers cite the explanation: the household's own area, outside the
    // crisis; the failed payment's reference and its refusal code.
    assert_eq!(
        db::assign_grievance(store, g_out, "case-worker-1")
            .await
            .unwrap(),
        Answer::Changed { reissued: None }
    );
    let (text, json) = grievances_cmd::answer(store, g_out, Outcome::Explained, "hotline-7", "")
        .await
        .unwrap();
    let outside = format!(
        "Household {} is registered in {}",
        out.household_id, out.area_code
    );
    assert!(text.contains(&outside), "{text}");
    assert!(
        text.contains("which none of the crisis areas (JO-IR) names: not eligible"),
        "{text}"
    );
    assert!(json.contains(&out.area_code));
    let (text, _) = grievances_cmd::answer(
        store,
        g_failed,
        Outcome::Upheld,
        "field-irbid-2",
        "re-visit booked",
    )
    .await
    .unwrap();
    assert!(
        text.contains(&failed_ref) && text.contains(&failed_reason),
        "{text}"
    );
    assert!(
        text.starts_with("You told us a payment did not reach you. You are right"),
        "{text}"
    );
    // Kept as given, once.
    let kept = db::grievance(store, g_out).await.unwrap().unwrap();
    assert_eq!(
        (
            kept.state.as_str(),
            kept.outcome.as_deref(),
            kept.resolved_by.as_deref()
        ),
        ("resolved", Some("explained"), Some("hotline-7"))
    );
    assert!(kept.answer.unwrap().contains(&outside));
    assert_eq!(
        db::answer_grievance(store, g_out, "x", Outcome::Explained, "again", "{}")
            .await
            .unwrap(),
        Answer::Unchanged
    );
    assert!(matches!(
        db::answer_grievance(store, g_out, "x", Outcome::Upheld, "changed", "{}")
            .await
            .unwrap(),
        Answer::Refused(_)
    ));
    // The database keeps it final too, past the code's own refusal: a
    // writer going straight to the table cannot rewrite or remove it.
    for sql in [
        format!(
            "UPDATE disbursement.grievances SET answer = 'rewritten' WHERE grievance_id = {g_out}"
        ),
        format!("DELETE FROM disbursement.grievances WHERE grievance_id = {g_out}"),
    ] {
        assert!(p.env.try_execute(&sql).await.is_err(), "{sql}");
    }
    assert!(db::grievance(store, g_out)
        .await
        .unwrap()
        .unwrap()
        .answer
        .unwrap()
        .contains(&outside));
    // The board moves them from open to answered.
    for (area, kind, age) in [
        (out.area_code.clone(), Kind::NotIncluded, 0),
        (area_of(&failed_hh), Kind::NotReceived, 3),
    ] {
        let r = want.get_mut(&governorate(&area)).unwrap();
        r.0 -= 1;
        match kind {
            Kind::NotIncluded => r.1 -= 1,
            _ => r.3 -= 1,
        }
        match age {
            0 => r.4 -= 1,
            _ => r.5 -= 1,
        }
        r.7 += 1;
    }
    assert_eq!(board(&p).await, want);
    p.stop().await;
}

on_both_backends!(households_complain_and_are_answered_with_the_real_reason);
