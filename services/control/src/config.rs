//! Settings of the control service, from the environment.

use std::collections::BTreeMap;

use sumud_shared::{Error, Result};

/// Four-eyes, currency and command-freshness settings.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// Budgets in [`ControlConfig::currency`] above this (minor units) need
    /// approval (`SUMUD_FOUR_EYES_THRESHOLD_MINOR`).
    pub four_eyes_threshold_minor: i64,
    /// The currency the deployment pays in (`SUMUD_CURRENCY`, default JOD).
    pub currency: String,
    /// Further currencies it pays in, each with its own four-eyes threshold
    /// in its own minor units (`SUMUD_OTHER_CURRENCIES`, e.g.
    /// `USD=140000000,EUR=130000000`): a minor unit of one currency is never
    /// compared with another's. A budget in any other currency is refused.
    pub other_currencies: BTreeMap<String, i64>,
    /// Distinct approvers needed (`SUMUD_FOUR_EYES_APPROVALS`).
    pub four_eyes_approvals: usize,
    /// Oldest accepted command, seconds (`SUMUD_COMMAND_MAX_AGE_SECS`).
    pub max_command_age_secs: i64,
    /// Accepted clock skew for commands from the future, seconds.
    pub max_clock_skew_secs: i64,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            four_eyes_threshold_minor: 100_000_000,
            currency: "JOD".into(),
            other_currencies: BTreeMap::new(),
            four_eyes_approvals: 1,
            max_command_age_secs: 900,
            max_clock_skew_secs: 300,
        }
    }
}

impl ControlConfig {
    /// Reads the settings, defaulting what is unset.
    pub fn from_env() -> Result<Self> {
        let mut c = ControlConfig::default();
        let get = |k: &str| std::env::var(k).ok();
        let bad = |k: &str| Error::Config(format!("{k} must be a whole number"));
        if let Some(v) = get("SUMUD_FOUR_EYES_THRESHOLD_MINOR") {
            c.four_eyes_threshold_minor = v
                .parse()
                .map_err(|_| bad("SUMUD_FOUR_EYES_THRESHOLD_MINOR"))?;
        }
        if let Some(v) = get("SUMUD_FOUR_EYES_APPROVALS") {
            c.four_eyes_approvals = v.parse().map_err(|_| bad("SUMUD_FOUR_EYES_APPROVALS"))?;
        }
        if let Some(v) = get("SUMUD_COMMAND_MAX_AGE_SECS") {
            c.max_command_age_secs = v.parse().map_err(|_| bad("SUMUD_COMMAND_MAX_AGE_SECS"))?;
        }
        if let Some(v) = get("SUMUD_CURRENCY") {
            c.currency = v;
        }
        if let Some(v) = get("SUMUD_OTHER_CURRENCIES") {
            c.other_currencies = parse_thresholds(&v)?;
        }
        for code in std::iter::once(&c.currency).chain(c.other_currencies.keys()) {
            sumud_shared::money::check_currency(code).map_err(|e| {
                Error::Config(format!("SUMUD_CURRENCY / SUMUD_OTHER_CURRENCIES: {e}"))
            })?;
        }
        Ok(c)
    }

    /// The four-eyes threshold of budgets in `currency`, in its minor
    /// units; `None` if the deployment does not pay in it.
    pub fn threshold(&self, currency: &str) -> Option<i64> {
        if currency == self.currency {
            Some(self.four_eyes_threshold_minor)
        } else {
            self.other_currencies.get(currency).copied()
        }
    }

    /// The currencies the deployment pays in, its own first.
    pub fn currencies(&self) -> Vec<&str> {
        std::iter::once(self.currency.as_str())
            .chain(self.other_currencies.keys().map(String::as_str))
            .collect()
    }
}

/// `USD=140000000,EUR=130000000` as currency → threshold.
fn parse_thresholds(text: &str) -> Result<BTreeMap<String, i64>> {
    let bad = || {
        Error::Config(format!(
            "SUMUD_OTHER_CURRENCIES must read like USD=140000000,EUR=130000000 (a four-eyes \
             threshold in each currency's minor units); got {text:?}"
        ))
    };
    text.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| {
            let (code, threshold) = pair.split_once('=').ok_or_else(bad)?;
            let threshold: i64 = threshold.trim().parse().map_err(|_| bad())?;
            Ok((code.trim().to_owned(), threshold))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_currency_has_its_own_threshold_and_others_are_not_paid() {
        let c = ControlConfig {
            other_currencies: parse_thresholds("USD=140000000, EUR=130000000").unwrap(),
            ..ControlConfig::default()
        };
        assert_eq!(c.threshold("JOD"), Some(100_000_000));
        assert_eq!(c.threshold("USD"), Some(140_000_000));
        assert_eq!(c.threshold("GBP"), None);
        assert_eq!(c.currencies(), vec!["JOD", "EUR", "USD"]);
        assert!(parse_thresholds("USD").is_err());
        assert!(parse_thresholds("USD=lots").is_err());
    }
}
