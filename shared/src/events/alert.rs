//! Early-warning input on `sumud.alerts.v1`: CAP 1.2 hazard alerts and
//! socio-economic indicator readings.
//!
//! A CAP alert travels either as the CAP XML document itself
//! (`datacontenttype: application/cap+xml`, `data` = the XML text) or as the
//! equivalent JSON object below (`datacontenttype: application/json`). The
//! JSON form mirrors CAP's element names one to one, so that a feed that
//! already speaks JSON does not have to render XML; the alerts service turns
//! it into the XML document and parses both forms with the same CAP library,
//! so the two can never be validated differently.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// CloudEvents type of a CAP hazard alert (XML or JSON form).
pub const ALERT_CAP: &str = "org.sumud.alert.cap";
/// CloudEvents type of one indicator reading.
pub const INDICATOR_READING: &str = "org.sumud.indicator.reading";
/// The `datacontenttype` of the XML form.
pub const CAP_XML: &str = "application/cap+xml";

/// A `valueName`/`value` pair (`eventCode`, `parameter`, `geocode`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamedValue {
    /// The scheme, e.g. `ISO3166-2` or `SAME`.
    pub value_name: String,
    /// The value in that scheme.
    pub value: String,
}

/// CAP `<area>` in JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CapAreaJson {
    /// `areaDesc`.
    pub area_desc: String,
    /// `polygon`: `"lat,lon lat,lon …"`, first point repeated last.
    #[serde(default)]
    pub polygon: Vec<String>,
    /// `circle`: `"lat,lon radius_km"`.
    #[serde(default)]
    pub circle: Vec<String>,
    /// `geocode`.
    #[serde(default)]
    pub geocode: Vec<NamedValue>,
}

/// CAP `<info>` in JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CapInfoJson {
    /// RFC 3066 language, e.g. `ar-JO`; CAP's default is `en-US`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// CAP categories (`Met`, `Geo`, `Health`, …).
    pub category: Vec<String>,
    /// Free-text event, e.g. `Flash flood`.
    pub event: String,
    /// `Immediate`, `Expected`, `Future`, `Past`, `Unknown`.
    pub urgency: String,
    /// `Extreme`, `Severe`, `Moderate`, `Minor`, `Unknown`.
    pub severity: String,
    /// `Observed`, `Likely`, `Possible`, `Unlikely`, `Unknown`.
    pub certainty: String,
    /// `eventCode` entries.
    #[serde(default)]
    pub event_code: Vec<NamedValue>,
    /// Expected onset, RFC 3339 with offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onset: Option<String>,
    /// Expiry, RFC 3339 with offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// Issuing authority's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_name: Option<String>,
    /// Headline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headline: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Affected areas.
    #[serde(default)]
    pub area: Vec<CapAreaJson>,
}

/// CAP `<alert>` in JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CapAlertJson {
    /// Unique per sender.
    pub identifier: String,
    /// The issuing authority.
    pub sender: String,
    /// RFC 3339 with offset.
    pub sent: String,
    /// `Actual`, `Exercise`, `System`, `Test`, `Draft`.
    pub status: String,
    /// `Alert`, `Update`, `Cancel`, `Ack`, `Error`.
    pub msg_type: String,
    /// `Public`, `Restricted`, `Private`.
    pub scope: String,
    /// Earlier alerts this one updates or cancels: `sender,identifier,sent …`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub references: Option<String>,
    /// Note (why a cancel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// One block per language or per event.
    #[serde(default)]
    pub info: Vec<CapInfoJson>,
}

/// One socio-economic indicator reading for one area and period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndicatorReading {
    /// Who measured it (e.g. `dos.gov.jo`, `wfp-mvam`).
    pub source: String,
    /// What was measured, e.g. `food_price_index`, `unemployment_rate`,
    /// `poverty_headcount_share`, `displaced_households`.
    pub indicator: String,
    /// Area code (governorate or district).
    pub area: String,
    /// Last day of the period the value describes.
    pub period_end: NaiveDate,
    /// The value, in `unit`.
    pub value: f64,
    /// Unit, e.g. `index`, `percent`, `households`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}
