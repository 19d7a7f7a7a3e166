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
    /// The status-inquiry window, seconds (`SUMUD_PAYMENT_INQUIRY_SECS`,
    /// default 3600): a payment whose outcome is unknown (a timeout) is
    /// asked again, with the same reference, no sooner than this, so a
    /// provider that did pay has time to say so first.
    pub inquiry_secs: i64,
    /// An instruction with no final status after this many seconds is flagged
    /// (`SUMUD_PAYMENT_DEADLINE_SECS`, default 172800).
    pub deadline_secs: i64,
    /// Secret for beneficiary pseudonyms (`SUMUD_PSEUDONYM_SECRET`).
    pub pseudonym_secret: String,
    /// How often the scheduler looks for due work, milliseconds.
    pub tick_ms: u64,
    /// Oldest accepted field-team command, seconds
    /// (`SUMUD_COMMAND_MAX_AGE_SECS`, default 900, as for operator
    /// commands): a signed command found later is `expired`.
    pub max_command_age_secs: i64,
}

/// The development secret of [`DisbursementConfig::default`]: published in
/// this repository, so a provider holding it could reverse every pseudonym
/// by enumerating household ids. [`DisbursementConfig::from_env`] refuses it.
pub const DEVELOPMENT_SECRET: &str = "sumud-default-pseudonym-secret-change-me";

/// The shortest pseudonym secret a deployment may use, in bytes.
pub const SECRET_MIN_BYTES: usize = 32;

impl Default for DisbursementConfig {
    fn default() -> Self {
        DisbursementConfig {
            day_seconds: 86_400.0,
            max_attempts: 3,
            retry_base_secs: 300,
            inquiry_secs: 3600,
            deadline_secs: 172_800,
            pseudonym_secret: DEVELOPMENT_SECRET.into(),
            tick_ms: 250,
            max_command_age_secs: 900,
        }
    }
}

/// Whether `secret` may key the pseudonyms of a deployment: not the
/// published development secret, and at least [`SECRET_MIN_BYTES`] long.
pub fn check_secret(secret: &str) -> Result<()> {
    if secret == DEVELOPMENT_SECRET || secret.len() < SECRET_MIN_BYTES {
        return Err(Error::Config(format!(
            "SUMUD_PSEUDONYM_SECRET must be a random secret of at least {SECRET_MIN_BYTES} bytes \
             (e.g. `openssl rand -base64 32`), set once per deployment: the development default \
             is public, and a provider holding it could reverse every beneficiary reference"
        )));
    }
    Ok(())
}

impl DisbursementConfig {
    /// Reads the settings, defaulting what is unset but the pseudonym
    /// secret, which must be set (see [`check_secret`]).
    pub fn from_env() -> Result<Self> {
        Self::from_env_or_secret(None)
    }

    /// [`DisbursementConfig::from_env`], with `generated` as the pseudonym
    /// secret when `SUMUD_PSEUDONYM_SECRET` is unset: what `sumud up` and
    /// `sumud demo` keep for their data directory.
    pub fn from_env_or_secret(generated: Option<String>) -> Result<Self> {
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
        if let Some(v) = num("SUMUD_PAYMENT_INQUIRY_SECS")? {
            c.inquiry_secs = v;
        }
        if let Some(v) = num("SUMUD_PAYMENT_DEADLINE_SECS")? {
            c.deadline_secs = v;
        }
        if let Some(v) = num("SUMUD_COMMAND_MAX_AGE_SECS")? {
            c.max_command_age_secs = v;
        }
        c.pseudonym_secret = match (std::env::var("SUMUD_PSEUDONYM_SECRET"), generated) {
            (Ok(v), _) => v,
            (Err(_), Some(g)) => g,
            (Err(_), None) => String::new(),
        };
        check_secret(&c.pseudonym_secret)?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_or_a_short_secret_is_refused() {
        assert!(check_secret(DEVELOPMENT_SECRET).is_err());
        assert!(check_secret("").is_err());
        assert!(check_secret(&"x".repeat(SECRET_MIN_BYTES - 1)).is_err());
        assert!(check_secret(&"x".repeat(SECRET_MIN_BYTES)).is_ok());
    }
}
