//! The CSV layout of a household file (`sumud registry import|generate`).
//! Lists (flags, programmes) are `;`-separated inside one column.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sumud_shared::events::household::{Channel, Household, PaymentDestination, VulnerabilityFlag};

/// One CSV row. Columns are named in the header line; order does not matter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CsvRow {
    /// Registry id.
    pub household_id: String,
    /// Record version (defaults to 1 when empty).
    #[serde(default)]
    pub version: Option<i64>,
    /// District or locality code.
    pub area_code: String,
    /// Number of members.
    pub members: i32,
    /// Proxy-means-test score, 0–100.
    pub welfare_score: f64,
    /// `;`-separated vulnerability flags.
    #[serde(default)]
    pub flags: String,
    /// `;`-separated programme codes.
    #[serde(default)]
    pub programmes: String,
    /// `e_wallet`, `bank` or `cash_pickup`.
    pub channel: String,
    /// Payment provider name.
    pub provider: String,
    /// Provider account token.
    pub account_token: String,
    /// Head of household's name (personal; stays in the registry).
    #[serde(default)]
    pub head_name: String,
    /// National id (personal; stays in the registry).
    #[serde(default)]
    pub national_id: String,
    /// Phone (personal; stays in the registry).
    #[serde(default)]
    pub phone: String,
}

fn split(s: &str) -> impl Iterator<Item = &str> {
    s.split(';').map(str::trim).filter(|x| !x.is_empty())
}

impl CsvRow {
    /// Converts to the event type; errors name the offending column.
    pub fn into_household(self) -> Result<Household, String> {
        let flags = split(&self.flags)
            .map(|f| {
                serde_json::from_value::<VulnerabilityFlag>(f.into())
                    .map_err(|_| format!("flags: unknown flag {f:?}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let channel = Channel::parse(&self.channel).ok_or_else(|| {
            format!(
                "channel: {:?} is not e_wallet, bank or cash_pickup",
                self.channel
            )
        })?;
        let personal: BTreeMap<String, String> = [
            ("head_name", self.head_name),
            ("national_id", self.national_id),
            ("phone", self.phone),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Ok(Household {
            household_id: self.household_id,
            version: self.version.unwrap_or(1),
            area_code: self.area_code,
            members: self.members,
            welfare_score: self.welfare_score,
            flags,
            programmes: split(&self.programmes).map(str::to_owned).collect(),
            payment: PaymentDestination {
                channel,
                provider: self.provider,
                account_token: self.account_token,
            },
            personal: (!personal.is_empty()).then_some(personal),
        })
    }

    /// The row for a household.
    pub fn from_household(h: &Household) -> Self {
        let personal = |k: &str| {
            h.personal
                .as_ref()
                .and_then(|p| p.get(k).cloned())
                .unwrap_or_default()
        };
        CsvRow {
            household_id: h.household_id.clone(),
            version: Some(h.version),
            area_code: h.area_code.clone(),
            members: h.members,
            welfare_score: h.welfare_score,
            flags: h
                .flags
                .iter()
                .map(|f| f.as_str())
                .collect::<Vec<_>>()
                .join(";"),
            programmes: h.programmes.join(";"),
            channel: h.payment.channel.as_str().to_owned(),
            provider: h.payment.provider.clone(),
            account_token: h.payment.account_token.clone(),
            head_name: personal("head_name"),
            national_id: personal("national_id"),
            phone: personal("phone"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sumud_shared::areas::AreaCatalog;
    use sumud_shared::synthetic;

    #[test]
    fn a_household_survives_a_csv_round_trip() {
        let h = synthetic::household(AreaCatalog::default_catalog(), 3, 11);
        let mut w = csv::Writer::from_writer(Vec::new());
        w.serialize(CsvRow::from_household(&h)).unwrap();
        let bytes = w.into_inner().unwrap();
        let mut r = csv::Reader::from_reader(bytes.as_slice());
        let row: CsvRow = r.deserialize().next().unwrap().unwrap();
        assert_eq!(row.into_household().unwrap(), h);
    }

    #[test]
    fn a_bad_channel_names_the_column() {
        let h = synthetic::household(AreaCatalog::default_catalog(), 3, 12);
        let mut row = CsvRow::from_household(&h);
        row.channel = "pigeon".into();
        assert!(row.into_household().unwrap_err().starts_with("channel"));
    }
}
