//! A realistic synthetic social registry for demos, tests and benchmarks:
//! households spread across areas like the population, plausible welfare
//! scores (poorer in the rural south and east), vulnerability flags,
//! programme enrolments and payment destinations. Deterministic per seed.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::areas::{Area, AreaCatalog};
use crate::events::household::{Channel, Household, PaymentDestination, VulnerabilityFlag};

/// The regular cash programme most poor households are enrolled in
/// (Jordan's National Aid Fund, in the default data).
pub const REGULAR_PROGRAMME: &str = "NAF-CASH";

/// Governorates whose households are, on average, poorer in the synthetic
/// registry: a crude stand-in for the real welfare geography.
const POORER: [&str; 5] = ["JO-MN", "JO-MA", "JO-AT", "JO-KA", "JO-AJ"];

/// The payment providers the synthetic registry pays through: what the
/// provider simulator serves and a demo or test registers.
pub const PROVIDERS: [&str; 4] = ["wallet-a", "wallet-b", "bank-a", "post-office"];

/// Generates household `index` (0-based) of a registry made with `seed`.
/// Each household depends only on (seed, index), so a registry of a million
/// can be produced in parallel or streamed.
pub fn household(catalog: &AreaCatalog, seed: u64, index: u64) -> Household {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index);
    let governorate = pick(&mut rng, catalog.governorates().collect());
    let district = pick(&mut rng, catalog.districts_of(&governorate.code).collect());
    let locality = rng.random_range(1..=20);
    let members = 1 + (0..9).filter(|_| rng.random_bool(0.45)).count() as i32;
    let spread: f64 = (0..3).map(|_| rng.random::<f64>()).sum::<f64>() - 1.5;
    let base = if POORER.contains(&governorate.code.as_str()) {
        38.0
    } else {
        52.0
    };
    let welfare_score = ((base + 30.0 * spread) * 10.0).round().clamp(0.0, 1000.0) / 10.0;
    let mut flags = Vec::new();
    for (flag, p) in [
        (VulnerabilityFlag::FemaleHeaded, 0.15),
        (VulnerabilityFlag::Disability, 0.10),
        (VulnerabilityFlag::Elderly, 0.20),
        (VulnerabilityFlag::YoungChildren, 0.35),
        (VulnerabilityFlag::ChronicIllness, 0.12),
    ] {
        if rng.random_bool(p) {
            flags.push(flag);
        }
    }
    let mut programmes = Vec::new();
    if welfare_score < 30.0 && rng.random_bool(0.7) {
        programmes.push(REGULAR_PROGRAMME.to_owned());
    }
    let roll: f64 = rng.random();
    // The providers of PROVIDERS, in that order.
    let (channel, provider) = if roll < 0.35 {
        (Channel::EWallet, "wallet-a")
    } else if roll < 0.55 {
        (Channel::EWallet, "wallet-b")
    } else if roll < 0.80 {
        (Channel::Bank, "bank-a")
    } else {
        (Channel::CashPickup, "post-office")
    };
    let household_id = format!("HH-{seed:x}-{index:08}");
    let personal = BTreeMap::from([
        ("head_name".to_owned(), format!("Synthetic Person {index}")),
        (
            "national_id".to_owned(),
            format!("9{:09}", rng.random_range(0..1_000_000_000u64)),
        ),
        (
            "phone".to_owned(),
            format!("+9627{:08}", rng.random_range(0..100_000_000u64)),
        ),
    ]);
    Household {
        household_id,
        version: 1,
        area_code: format!("{}-{locality:03}", district.code),
        members,
        welfare_score,
        flags,
        programmes,
        payment: PaymentDestination {
            channel,
            provider: provider.to_owned(),
            account_token: format!("tok_{:016x}", rng.random::<u64>()),
        },
        personal: Some(personal),
    }
}

/// Picks an area weighted by its population share.
fn pick<'a>(rng: &mut StdRng, areas: Vec<&'a Area>) -> &'a Area {
    let total: f64 = areas.iter().map(|a| a.population_share).sum();
    let mut x = rng.random::<f64>() * total;
    for a in &areas {
        x -= a.population_share;
        if x <= 0.0 {
            return a;
        }
    }
    areas[areas.len() - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_and_index_give_the_same_household() {
        let c = AreaCatalog::default_catalog();
        assert_eq!(household(c, 7, 42), household(c, 7, 42));
        assert_ne!(household(c, 7, 42), household(c, 8, 42));
    }

    #[test]
    fn households_are_valid_and_spread_like_the_population() {
        let c = AreaCatalog::default_catalog();
        let n = 20_000;
        let mut amman = 0;
        for i in 0..n {
            let h = household(c, 1, i);
            assert!(
                c.resolve(&h.area_code).is_some(),
                "{} resolves",
                h.area_code
            );
            assert!((1..=10).contains(&h.members));
            assert!((0.0..=100.0).contains(&h.welfare_score));
            if h.area_code.starts_with("JO-AM-") {
                amman += 1;
            }
        }
        let share = amman as f64 / n as f64;
        let expected = c.get("JO-AM").unwrap().population_share;
        assert!(
            (share - expected).abs() < 0.02,
            "Amman share {share} vs {expected}"
        );
    }
}
