//! Settings of the disbursement service, from the environment.

use sumud_shared::{Error, Result};

/// Schedule, retry and privacy settings.
#[derive(Debug, Clone)]
pub struct DisbursementConfig {
    /// Length of a schedule "day" in seconds (`SUMUD_TRANCHE_DAY_SECONDS`,
    /// default 86400); demos and tests compress time with a small value.
    pub day_seconds: f64,
    /// Most attempts per instruction (`SUMUD_PAYMENT_MAX_ATTEMPTS`, default 3).
    pub max_attempts: u32,
    /// Backoff before the second attempt, seconds (`SUMUD_PAYMENT_RETRY_SECS`,
    /// default 300; doubles per attempt).
    pub retry_base_secs: i64,
    /// An instruction with no final status after this many seconds is flagged
    /// (`SUMUD_PAYMENT_DEADLINE_SECS`, default 172800).
    pub deadline_secs: i64,
    /// Secret for beneficiary pseudonyms (`SUMUD_PSEUDONYM_SECRET`).
    pub pseudonym_secret: String,
    /// How often the scheduler looks for due work, milliseconds.
    pub tick_ms: u64,
}

impl Default for DisbursementConfig {
    fn default() -> Self {
        DisbursementConfig {
            day_seconds: 86_400.0,
            max_attempts: 3,
            retry_base_secs: 300,
            deadline_secs: 172_800,
            pseudonym_secret: "sumud-default-pseudonym-secret-change-me".into(),
            tick_ms: 250,
        }
    }
}

impl DisbursementConfig {
    /// Reads the settings, defaulting what is unset.
    pub fn from_env() -> Result<Self> {
        let mut c = DisbursementConfig::default();
        let num = |k: &str| -> Result<Option<i64>> {
            std::env::var(k)
                .ok()
                .map(|v| {
                    v.parse::<i64>()
                        .map_err(|_| Error::Config(format!("{k} must be a whole number")))
                })
                .transpose()
        };
        if let Ok(v) = std::env::var("SUMUD_TRANCHE_DAY_SECONDS") {
            c.day_seconds = v.parse().map_err(|_| {
                Error::Config("SUMUD_TRANCHE_DAY_SECONDS must be a number of seconds".into())
            })?;
        }
        if let Some(v) = num("SUMUD_PAYMENT_MAX_ATTEMPTS")? {
            c.max_attempts = v.max(1) as u32;
        }
        if let Some(v) = num("SUMUD_PAYMENT_RETRY_SECS")? {
            c.retry_base_secs = v;
        }
        if let Some(v) = num("SUMUD_PAYMENT_DEADLINE_SECS")? {
            c.deadline_secs = v;
        }
        if let Ok(v) = std::env::var("SUMUD_PSEUDONYM_SECRET") {
            c.pseudonym_secret = v;
        }
        Ok(c)
    }
}
