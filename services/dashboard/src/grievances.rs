//! The grievance table of the page: complaints rolled up to their
//! governorate (from the area recorded when each was filed), the open ones
//! by kind and by age, and how many were answered. Pure, like
//! `assemble.rs`: the arithmetic is tested here.

use std::collections::BTreeMap;

use sumud_shared::areas::AreaCatalog;

use crate::db::GrievanceAggregate;
use crate::model::GrievanceArea;

/// One row per governorate (codes the catalog does not place keep their
/// own code; grievances without an area go under `unknown`), by code.
pub fn grievance_areas(catalog: &AreaCatalog, rows: &[GrievanceAggregate]) -> Vec<GrievanceArea> {
    let mut by: BTreeMap<String, GrievanceArea> = BTreeMap::new();
    for r in rows {
        let code = match r.area_code.as_deref() {
            None => "unknown".to_owned(),
            Some(c) => catalog
                .resolve(c)
                .map(|p| p.governorate)
                .unwrap_or_else(|| c.to_owned()),
        };
        let row = by.entry(code.clone()).or_insert_with(|| {
            let known = catalog.get(&code);
            GrievanceArea {
                name_en: known.map_or(code.clone(), |k| k.name.en.clone()),
                name_ar: known.map_or(code.clone(), |k| k.name.ar.clone()),
                code,
                open: 0,
                not_included: 0,
                wrong_amount: 0,
                not_received: 0,
                under_1_day: 0,
                from_1_to_7_days: 0,
                over_7_days: 0,
                oldest_open_at: None,
                answered: 0,
            }
        });
        if r.answered {
            row.answered += r.n;
            continue;
        }
        row.open += r.n;
        match r.kind.as_str() {
            "not_included" => row.not_included += r.n,
            "wrong_amount" => row.wrong_amount += r.n,
            _ => row.not_received += r.n,
        }
        row.under_1_day += r.under_1_day;
        row.from_1_to_7_days += r.from_1_to_7_days;
        row.over_7_days += r.n - r.under_1_day - r.from_1_to_7_days;
        row.oldest_open_at = match (row.oldest_open_at, r.oldest) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    by.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn agg(
        area: Option<&str>,
        kind: &str,
        answered: bool,
        n: i64,
        day: i64,
        week: i64,
        oldest: &str,
    ) -> GrievanceAggregate {
        GrievanceAggregate {
            area_code: area.map(Into::into),
            kind: kind.into(),
            answered,
            n,
            under_1_day: day,
            from_1_to_7_days: week,
            oldest: Some(oldest.parse::<DateTime<Utc>>().unwrap()),
        }
    }

    #[test]
    fn districts_and_localities_roll_up_to_their_governorate_by_kind_and_age() {
        let rows = [
            agg(
                Some("JO-IR-01"),
                "not_included",
                false,
                5,
                2,
                1,
                "2026-11-20T00:00:00Z",
            ),
            agg(
                Some("JO-IR-02-003"),
                "not_received",
                false,
                3,
                3,
                0,
                "2026-12-06T00:00:00Z",
            ),
            agg(
                Some("JO-IR"),
                "wrong_amount",
                true,
                4,
                0,
                0,
                "2026-10-01T00:00:00Z",
            ),
            agg(
                Some("JO-MN-01"),
                "wrong_amount",
                false,
                1,
                0,
                1,
                "2026-12-01T00:00:00Z",
            ),
            agg(
                Some("XX-99"),
                "not_received",
                false,
                2,
                2,
                0,
                "2026-12-06T12:00:00Z",
            ),
            agg(None, "not_included", false, 1, 1, 0, "2026-12-06T12:00:00Z"),
        ];
        let out = grievance_areas(AreaCatalog::default_catalog(), &rows);
        let codes: Vec<&str> = out.iter().map(|g| g.code.as_str()).collect();
        assert_eq!(codes, ["JO-IR", "JO-MN", "XX-99", "unknown"]);
        let irbid = &out[0];
        // Open: 5 + 3 (the answered 4 count apart).
        assert_eq!(
            (
                irbid.open,
                irbid.not_included,
                irbid.wrong_amount,
                irbid.not_received,
                irbid.answered
            ),
            (8, 5, 0, 3, 4)
        );
        // Ages: under a day 2 + 3; a week 1 + 0; older 5 - 2 - 1 = 2.
        assert_eq!(
            (irbid.under_1_day, irbid.from_1_to_7_days, irbid.over_7_days),
            (5, 1, 2)
        );
        // The oldest open one, not the older answered one.
        assert_eq!(
            irbid.oldest_open_at.unwrap().to_rfc3339(),
            "2026-11-20T00:00:00+00:00"
        );
        assert_eq!(irbid.name_en, "Irbid");
        assert_eq!((out[2].name_en.as_str(), out[3].open), ("XX-99", 1));
    }
}
