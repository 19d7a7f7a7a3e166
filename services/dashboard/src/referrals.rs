//! The referral table of the page: social-service referrals rolled up to
//! their governorate and service, by where they stand, so that a social
//! worker sees where providers have not answered yet. Pure, like
//! `grievances.rs`: the arithmetic is tested here.

use std::collections::BTreeMap;

use sumud_shared::areas::AreaCatalog;

use crate::db::ReferralAggregate;
use crate::model::ReferralArea;

/// One row per governorate and service, by governorate code then service.
pub fn referral_areas(catalog: &AreaCatalog, rows: &[ReferralAggregate]) -> Vec<ReferralArea> {
    let mut by: BTreeMap<(String, String), ReferralArea> = BTreeMap::new();
    for r in rows {
        let code = catalog
            .resolve(&r.governorate)
            .map(|p| p.governorate)
            .unwrap_or_else(|| r.governorate.clone());
        let row = by
            .entry((code.clone(), r.service.clone()))
            .or_insert_with(|| {
                let known = catalog.get(&code);
                ReferralArea {
                    name_en: known.map_or(code.clone(), |k| k.name.en.clone()),
                    name_ar: known.map_or(code.clone(), |k| k.name.ar.clone()),
                    code,
                    service: r.service.clone(),
                    provider: r.provider.clone(),
                    referred: 0,
                    accepted: 0,
                    served: 0,
                    declined: 0,
                }
            });
        match r.status.as_str() {
            "accepted" => row.accepted += r.n,
            "served" => row.served += r.n,
            "declined" => row.declined += r.n,
            _ => row.referred += r.n,
        }
    }
    by.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agg(governorate: &str, service: &str, status: &str, n: i64) -> ReferralAggregate {
        ReferralAggregate {
            governorate: governorate.into(),
            service: service.into(),
            provider: "moh-rehab".into(),
            status: status.into(),
            n,
        }
    }

    #[test]
    fn referrals_roll_up_by_governorate_and_service_and_where_they_stand() {
        let rows = [
            agg("JO-MN", "rehabilitation", "referred", 4),
            agg("JO-MN", "rehabilitation", "served", 2),
            agg("JO-MN", "rehabilitation", "declined", 1),
            agg("JO-IR", "rehabilitation", "accepted", 3),
            agg("JO-MN", "child_protection", "referred", 5),
        ];
        let out = referral_areas(AreaCatalog::default_catalog(), &rows);
        let got: Vec<(&str, &str, i64, i64, i64, i64)> = out
            .iter()
            .map(|r| {
                (
                    r.code.as_str(),
                    r.service.as_str(),
                    r.referred,
                    r.accepted,
                    r.served,
                    r.declined,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("JO-IR", "rehabilitation", 0, 3, 0, 0),
                ("JO-MN", "child_protection", 5, 0, 0, 0),
                ("JO-MN", "rehabilitation", 4, 0, 2, 1),
            ]
        );
        assert_ne!(out[0].name_en, "JO-IR", "the catalog names it");
    }
}
