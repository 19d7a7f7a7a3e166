//! Settings of the dashboard, from the environment (the shared ones — Kafka,
//! PostgreSQL, topics, group prefix — come from `sumud_shared::config`).

use std::net::SocketAddr;
use std::time::Duration;

use sumud_shared::{Error, Result};

/// Where the dashboard listens and how often it refreshes.
#[derive(Debug, Clone, Copy)]
pub struct DashboardConfig {
    /// Address of the page, the JSON API and the event stream
    /// (`SUMUD_DASHBOARD_ADDR`, default `127.0.0.1:8080`; tests use port 0).
    pub addr: SocketAddr,
    /// How often a fresh snapshot is computed and pushed to connected pages
    /// (`SUMUD_DASHBOARD_REFRESH_MS`, default 1000). One computation serves
    /// every open page, so this bounds the database load, not the viewers.
    pub refresh: Duration,
    /// How often consumer lag is read from Kafka (one offset fetch per
    /// consumer group and one watermark query per partition), independent of
    /// `refresh` because it is the costlier read.
    pub lag_refresh: Duration,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            refresh: Duration::from_millis(1000),
            lag_refresh: Duration::from_secs(5),
        }
    }
}

impl DashboardConfig {
    /// Reads the settings, defaulting what is unset.
    pub fn from_env() -> Result<Self> {
        Self::from_vars(std::env::vars())
    }

    /// Reads the settings from any list of variables (testable without
    /// touching the process environment).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self> {
        let mut c = DashboardConfig::default();
        for (k, v) in vars {
            match k.as_str() {
                "SUMUD_DASHBOARD_ADDR" => {
                    c.addr = v.parse().map_err(|_| {
                        Error::Config(format!(
                            "SUMUD_DASHBOARD_ADDR={v:?} is not a socket address like 0.0.0.0:8080"
                        ))
                    })?;
                }
                "SUMUD_DASHBOARD_REFRESH_MS" => {
                    let ms: u64 = v.parse().ok().filter(|ms| *ms >= 100).ok_or_else(|| {
                        Error::Config(format!(
                            "SUMUD_DASHBOARD_REFRESH_MS={v:?} must be a whole number of milliseconds, at least 100"
                        ))
                    })?;
                    c.refresh = Duration::from_millis(ms);
                }
                _ => {}
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn unset_variables_keep_the_defaults() {
        let c = DashboardConfig::from_vars(vars(&[])).unwrap();
        assert_eq!(c.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.refresh, Duration::from_secs(1));
    }

    #[test]
    fn address_and_refresh_are_read_and_checked() {
        let c = DashboardConfig::from_vars(vars(&[
            ("SUMUD_DASHBOARD_ADDR", "0.0.0.0:9000"),
            ("SUMUD_DASHBOARD_REFRESH_MS", "250"),
        ]))
        .unwrap();
        assert_eq!(c.addr.port(), 9000);
        assert_eq!(c.refresh, Duration::from_millis(250));
        let e =
            DashboardConfig::from_vars(vars(&[("SUMUD_DASHBOARD_REFRESH_MS", "5")])).unwrap_err();
        assert!(e.to_string().contains("SUMUD_DASHBOARD_REFRESH_MS"));
        let e =
            DashboardConfig::from_vars(vars(&[("SUMUD_DASHBOARD_ADDR", "nowhere")])).unwrap_err();
        assert!(e.to_string().contains("SUMUD_DASHBOARD_ADDR"));
    }
}
