//! Turning the database's aggregate rows into what the page shows: the
//! funnel of a crisis, the area table with the shipped area names, provider
//! health. Pure functions, no IO, so that every figure's arithmetic is
//! tested here rather than through a browser.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sumud_shared::areas::{AreaCatalog, Level};

use crate::db::{
    AreaAggregate, CrisisRow, DisbursementRow, EligibilityRow, ProviderCounts, ProviderLatency,
    ProviderReports, TriggerRow, PROVIDER_WINDOW_SECS,
};
use crate::model::{
    AreaRow, Attention, CrisisSummary, Funnel, ProviderHealth, ReasonCount, Stage, TriggeringAlert,
};

/// Registered households inside any of `areas` (a crisis naming a
/// governorate covers its districts and localities), from counts per area
/// code.
pub fn affected(catalog: &AreaCatalog, areas: &[String], by_code: &[(String, i64)]) -> i64 {
    by_code
        .iter()
        .filter(|(code, _)| areas.iter().any(|a| catalog.contains(a, code)))
        .map(|(_, n)| n)
        .sum()
}

/// What the other services know of one crisis, gathered for [`summary`].
#[derive(Debug, Default)]
pub struct Parts<'a> {
    /// Eligibility's figures, once it has seen the crisis.
    pub eligibility: Option<&'a EligibilityRow>,
    /// Disbursement's figures, once it has seen the crisis.
    pub disbursement: Option<&'a DisbursementRow>,
    /// The triggering alert, if any.
    pub trigger: Option<&'a TriggerRow>,
    /// Households in the crisis areas, if the registry view exists.
    pub affected: i64,
}

fn stage(households: i64, instructions: i64, amount_minor: i64) -> Stage {
    Stage {
        households,
        instructions: Some(instructions),
        amount_minor: Some(amount_minor),
    }
}

/// One crisis's summary as of `now`.
pub fn summary(c: &CrisisRow, parts: Parts<'_>, now: DateTime<Utc>) -> CrisisSummary {
    let e = parts.eligibility.cloned().unwrap_or_default();
    let d = parts.disbursement.cloned().unwrap_or_default();
    let funnel = Funnel {
        affected: Stage {
            households: parts.affected,
            instructions: None,
            amount_minor: None,
        },
        eligible: Stage {
            households: e.entitled_households,
            instructions: None,
            amount_minor: Some(e.entitled_minor),
        },
        waitlisted: Stage {
            households: e.waitlisted_households,
            instructions: None,
            amount_minor: Some(e.waitlisted_minor),
        },
        instructed: stage(d.instructed_households, d.instructed, d.instructed_minor),
        in_flight: stage(d.in_flight_households, d.in_flight, d.in_flight_minor),
        paid: stage(d.paid_households, d.paid, d.paid_minor),
        failed: stage(d.failed_households, d.failed, d.failed_minor),
    };
    CrisisSummary {
        crisis_id: c.crisis_id.clone(),
        title: c.title.clone(),
        hazard: c.hazard.clone(),
        severity: c.severity.clone(),
        state: c.state.clone(),
        revision: c.revision,
        pending_approval: c.pending_approval,
        areas: c.areas.clone(),
        currency: c.currency.clone(),
        budget_minor: c.budget_minor,
        committed_minor: parts.eligibility.map(|e| e.committed_minor),
        reserved_minor: parts.disbursement.map(|d| d.reserved_minor),
        declared_by: c.declared_by.clone(),
        declared_at: c.declared_at,
        updated_at: c.updated_at,
        alert: parts.trigger.map(|t| TriggeringAlert {
            kind: t.kind.clone(),
            source: t.source.clone(),
            reference: t.reference.clone(),
            sent_at: t.sent_at,
            seconds_since: (now - t.sent_at).num_seconds().max(0),
        }),
        funnel,
        field_tasks_open: d.field_tasks_open,
        attention: Attention {
            held: d.held,
            held_minor: d.held_minor,
            incidents_open: d.incidents_open,
            pass_failures: i64::from(d.pass_failures),
            last_pass_error: d.last_pass_error,
        },
    }
}

/// Rows keyed so that a governorate sorts before its districts:
/// (governorate, "" or district, currency).
type AreaMap = BTreeMap<(String, String, String), AreaRow>;

fn area_row<'a>(
    rows: &'a mut AreaMap,
    catalog: &AreaCatalog,
    a: &AreaAggregate,
) -> &'a mut AreaRow {
    let code = a.district.clone().unwrap_or_else(|| a.governorate.clone());
    let key = (
        a.governorate.clone(),
        a.district.clone().unwrap_or_default(),
        a.currency.clone(),
    );
    rows.entry(key).or_insert_with(|| {
        let known = catalog.get(&code);
        AreaRow {
            level: match (known.map(|k| k.level), &a.district) {
                (Some(Level::Governorate), _) | (None, None) => "governorate".into(),
                _ => "district".into(),
            },
            parent: a.district.as_ref().map(|_| a.governorate.clone()),
            name_en: known.map(|k| k.name.en.clone()).unwrap_or(code.clone()),
            name_ar: known.map(|k| k.name.ar.clone()).unwrap_or(code.clone()),
            code,
            currency: a.currency.clone(),
            entitled_households: 0,
            entitled_minor: 0,
            paid_instructions: 0,
            paid_minor: 0,
            failed_instructions: 0,
            failed_minor: 0,
        }
    })
}

/// The area table: entitlements and payments merged by (area, currency),
/// named from the catalog, each governorate followed by its districts.
/// Codes the catalog does not know keep their code as their name rather
/// than vanish: money paid there still has to show.
pub fn area_rows(
    catalog: &AreaCatalog,
    entitled: &[AreaAggregate],
    payments: &[AreaAggregate],
) -> Vec<AreaRow> {
    let mut rows: AreaMap = BTreeMap::new();
    for a in entitled {
        let r = area_row(&mut rows, catalog, a);
        r.entitled_households += a.n1;
        r.entitled_minor += a.m1;
    }
    for a in payments {
        let r = area_row(&mut rows, catalog, a);
        r.paid_instructions += a.n1;
        r.paid_minor += a.m1;
        r.failed_instructions += a.n2;
        r.failed_minor += a.m2;
    }
    rows.into_values().collect()
}

fn provider_entry<'a>(
    by: &'a mut BTreeMap<String, ProviderHealth>,
    p: &str,
) -> &'a mut ProviderHealth {
    by.entry(p.to_owned()).or_insert_with(|| ProviderHealth {
        provider: p.to_owned(),
        instructions: 0,
        open_instructions: 0,
        overdue: 0,
        window_seconds: PROVIDER_WINDOW_SECS,
        acknowledged: 0,
        ack_latency_p50_seconds: None,
        ack_latency_p95_seconds: None,
        final_reports: 0,
        rejected: 0,
        rejection_rate: None,
        rejections_by_reason: Vec::new(),
    })
}

/// Provider health from the three provider aggregates.
pub fn providers(
    counts: &[ProviderCounts],
    latency: &[ProviderLatency],
    reports: &[ProviderReports],
) -> Vec<ProviderHealth> {
    let mut by: BTreeMap<String, ProviderHealth> = BTreeMap::new();
    for c in counts {
        let h = provider_entry(&mut by, &c.provider);
        h.instructions = c.instructions;
        h.open_instructions = c.open_instructions;
        h.overdue = c.overdue;
    }
    for l in latency {
        let h = provider_entry(&mut by, &l.provider);
        h.acknowledged = l.acknowledged;
        h.ack_latency_p50_seconds = l.p50;
        h.ack_latency_p95_seconds = l.p95;
    }
    let mut reasons: HashMap<String, BTreeMap<String, i64>> = HashMap::new();
    for r in reports {
        let h = provider_entry(&mut by, &r.provider);
        h.final_reports += r.count;
        if r.status == "rejected" {
            h.rejected += r.count;
            let reason = r
                .reason_code
                .clone()
                .unwrap_or_else(|| "unspecified".into());
            *reasons
                .entry(r.provider.clone())
                .or_default()
                .entry(reason)
                .or_default() += r.count;
        }
    }
    for h in by.values_mut() {
        if h.final_reports > 0 {
            h.rejection_rate = Some(h.rejected as f64 / h.final_reports as f64);
        }
        if let Some(r) = reasons.remove(&h.provider) {
            let mut list: Vec<ReasonCount> = r
                .into_iter()
                .map(|(reason, count)| ReasonCount { reason, count })
                .collect();
            list.sort_by(|a, b| b.count.cmp(&a.count).then(a.reason.cmp(&b.reason)));
            h.rejections_by_reason = list;
        }
    }
    by.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> &'static AreaCatalog {
        AreaCatalog::default_catalog()
    }

    fn agg(g: &str, d: Option<&str>, n1: i64, m1: i64, n2: i64, m2: i64) -> AreaAggregate {
        AreaAggregate {
            governorate: g.into(),
            district: d.map(Into::into),
            currency: "JOD".into(),
            n1,
            m1,
            n2,
            m2,
        }
    }

    #[test]
    fn affected_counts_every_household_below_a_named_area_once() {
        let by_code = vec![
            ("JO-MN-01-001".to_string(), 5),
            ("JO-MN-02-004".to_string(), 7),
            ("JO-MA-01-001".to_string(), 100),
            ("JO-KA-01".to_string(), 3),
        ];
        let areas = vec!["JO-MN".to_string(), "JO-MN-01".to_string()];
        assert_eq!(affected(catalog(), &areas, &by_code), 12);
        assert_eq!(affected(catalog(), &["JO-KA".to_string()], &by_code), 3);
        assert_eq!(affected(catalog(), &[], &by_code), 0);
    }

    #[test]
    fn area_rows_merge_payments_into_entitlements_and_name_them_in_both_languages() {
        let entitled = vec![
            agg("JO-MN", None, 10, 1000, 0, 0),
            agg("JO-MN", Some("JO-MN-01"), 10, 1000, 0, 0),
        ];
        let payments = vec![
            agg("JO-MN", Some("JO-MN-01"), 4, 400, 1, 100),
            agg("JO-MN", None, 4, 400, 1, 100),
            agg("JO-AM", None, 2, 20, 0, 0),
        ];
        let rows = area_rows(catalog(), &entitled, &payments);
        let codes: Vec<&str> = rows.iter().map(|r| r.code.as_str()).collect();
        assert_eq!(codes, ["JO-AM", "JO-MN", "JO-MN-01"], "governorate first");
        let mn = &rows[1];
        assert_eq!(
            (mn.level.as_str(), mn.parent.as_deref()),
            ("governorate", None)
        );
        assert_eq!(
            (
                mn.entitled_households,
                mn.paid_instructions,
                mn.failed_minor
            ),
            (10, 4, 100)
        );
        assert_eq!(mn.name_en, catalog().get("JO-MN").unwrap().name.en);
        assert!(!mn.name_ar.is_empty() && mn.name_ar != mn.name_en);
        let d = &rows[2];
        assert_eq!(
            (d.level.as_str(), d.parent.as_deref()),
            ("district", Some("JO-MN"))
        );
        assert_eq!(
            rows[0].entitled_households, 0,
            "paid without entitlement rows still shows"
        );
    }

    #[test]
    fn an_unknown_area_keeps_its_code_as_name() {
        let rows = area_rows(catalog(), &[agg("XX-ZZ", None, 1, 1, 0, 0)], &[]);
        assert_eq!(rows[0].name_en, "XX-ZZ");
        assert_eq!(rows[0].level, "governorate");
    }

    #[test]
    fn rejection_rate_is_over_final_reports_and_reasons_are_ranked() {
        let counts = vec![ProviderCounts {
            provider: "wallet".into(),
            instructions: 10,
            open_instructions: 2,
            overdue: 1,
        }];
        let reports = vec![
            ProviderReports {
                provider: "wallet".into(),
                status: "succeeded".into(),
                reason_code: None,
                count: 6,
            },
            ProviderReports {
                provider: "wallet".into(),
                status: "rejected".into(),
                reason_code: Some("timeout".into()),
                count: 1,
            },
            ProviderReports {
                provider: "wallet".into(),
                status: "rejected".into(),
                reason_code: Some("account_closed".into()),
                count: 3,
            },
            ProviderReports {
                provider: "bank".into(),
                status: "succeeded".into(),
                reason_code: None,
                count: 1,
            },
        ];
        let h = providers(&counts, &[], &reports);
        assert_eq!(h[0].provider, "bank");
        assert_eq!(h[0].rejection_rate, Some(0.0));
        let w = &h[1];
        assert_eq!((w.final_reports, w.rejected), (10, 4));
        assert_eq!(w.rejection_rate, Some(0.4));
        assert_eq!(w.rejections_by_reason[0].reason, "account_closed");
        assert_eq!(
            w.ack_latency_p50_seconds, None,
            "no latency without reports"
        );
    }

    #[test]
    fn a_crisis_nobody_processed_yet_has_an_empty_funnel_and_null_budget_use() {
        let now = Utc::now();
        let c = CrisisRow {
            crisis_id: "C".into(),
            title: "t".into(),
            hazard: "flood".into(),
            severity: "severe".into(),
            state: "active".into(),
            revision: 1,
            pending_approval: false,
            areas: vec!["JO-MN".into()],
            currency: "JOD".into(),
            budget_minor: 5,
            declared_by: "alice".into(),
            declared_at: now,
            updated_at: now,
        };
        let trigger = TriggerRow {
            crisis_id: "C".into(),
            kind: "cap".into(),
            source: "sender".into(),
            reference: "id".into(),
            sent_at: now - chrono::Duration::seconds(90),
        };
        let s = summary(
            &c,
            Parts {
                trigger: Some(&trigger),
                affected: 40,
                ..Parts::default()
            },
            now,
        );
        assert_eq!(s.committed_minor, None);
        assert_eq!(s.reserved_minor, None);
        assert_eq!(s.funnel.affected.households, 40);
        assert_eq!(s.funnel.paid.instructions, Some(0));
        assert_eq!(s.alert.unwrap().seconds_since, 90);
    }
}
