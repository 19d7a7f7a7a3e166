//! Settings of the control service, from the environment.

use sumud_shared::{Error, Result};

/// Four-eyes and command-freshness settings.
#[derive(Debug, Clone, Copy)]
pub struct ControlConfig {
    /// Budgets above this (minor units) need approval (`SUMUD_FOUR_EYES_THRESHOLD_MINOR`).
    pub four_eyes_threshold_minor: i64,
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
        Ok(c)
    }
}
