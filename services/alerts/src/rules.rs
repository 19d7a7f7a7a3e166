//! Trigger rules: the pre-agreed, versioned, reviewed Early Action Protocol
//! as data, and the pure functions that decide whether an alert or an
//! indicator reading meets one. No IO here: the handler supplies the poverty
//! shares and the earlier readings.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};
use oasiscap::v1dot2::{Certainty, Info, Severity as CapSeverity, Urgency};
use serde::{Deserialize, Serialize};
use sumud_shared::areas::{AreaCatalog, Level};
use sumud_shared::events::crisis::{
    CrisisDefinition, Hazard, Response, ResponseOverrides, Severity,
};
use sumud_shared::money::Money;

const DEFAULT_RULES: &str = include_str!("../data/trigger_rules.json");

/// A reviewed set of rules; its `version` is recorded on every crisis a rule
/// of it causes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleBook {
    /// Version of the whole set.
    pub version: String,
    /// Who reviewed it.
    pub reviewed_by: Vec<String>,
    /// When it was approved.
    pub approved_on: NaiveDate,
    /// Rules, in priority order: the first that matches an alert acts.
    pub rules: Vec<Rule>,
}

/// Whether a rule may act alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The crisis waits as `proposed` for an operator's signed approval.
    Propose,
    /// Pre-approved: the crisis is declared (four-eyes still applies above
    /// the control service's threshold, so a rule's budget should stay under it).
    Declare,
}

/// One rule.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Stable id.
    pub id: String,
    /// Bumped on every change.
    pub version: u32,
    /// What the rule says, for people.
    pub description: String,
    /// Propose or declare.
    pub mode: Mode,
    /// The condition.
    pub when: Condition,
    /// The crisis it produces.
    pub then: Action,
}

/// What must be observed.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    /// A CAP hazard alert.
    Cap(CapCondition),
    /// An indicator rising over a window.
    Indicator(IndicatorCondition),
}

/// A CAP alert condition; an `info` block must meet all of it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CapCondition {
    /// Values of an `eventCode` named `sumud:hazard` that match.
    pub hazard_codes: Vec<String>,
    /// Words that match in the free-text `event` (any language, case-insensitive).
    pub event_keywords: Vec<String>,
    /// Lowest CAP severity (`Minor` … `Extreme`).
    pub min_severity: String,
    /// Accepted CAP certainties.
    pub certainty: Vec<String>,
    /// Accepted CAP urgencies; empty accepts any.
    pub urgency: Vec<String>,
    /// Welfare score under which a household counts as poor.
    pub poverty_threshold: f64,
    /// An area qualifies when more than this share of its registered
    /// households is poor; 0 accepts every area with households.
    pub min_poor_share: f64,
}

/// An indicator condition.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IndicatorCondition {
    /// Indicator name, e.g. `food_price_index`.
    pub indicator: String,
    /// Rise, in percent, that triggers.
    pub min_change_pct: f64,
    /// Compared with the latest reading at least this many days earlier.
    pub window_days: u32,
    /// Area level the rule applies to.
    pub level: AreaLevel,
}

/// Which areas an indicator rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AreaLevel {
    /// Governorates only.
    Governorate,
    /// Districts only.
    District,
    /// Both.
    Any,
}

/// The crisis a rule produces.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    /// Kind of shock.
    pub hazard: Hazard,
    /// Fixed severity; when absent, the alert's.
    #[serde(default)]
    pub severity: Option<Severity>,
    /// Playbook id.
    pub playbook: String,
    /// Budget cap, minor units.
    pub budget_minor: i64,
    /// ISO 4217 currency.
    pub currency: String,
    /// Length of the response.
    pub duration_days: u32,
    /// Crisis title (the areas are appended).
    pub title: String,
}

impl RuleBook {
    /// The shipped rule set.
    pub fn default_book() -> RuleBook {
        RuleBook::from_json(DEFAULT_RULES).expect("the shipped trigger rules are valid")
    }

    /// Loads and checks a rule set: unique ids, known playbooks, sane numbers.
    pub fn from_json(text: &str) -> Result<RuleBook, String> {
        let book: RuleBook = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let playbooks = sumud_shared::playbook::PlaybookBook::default_book();
        let mut seen = std::collections::HashSet::new();
        for r in &book.rules {
            if !seen.insert(r.id.as_str()) {
                return Err(format!("rule id {} appears twice", r.id));
            }
            if playbooks.get(&r.then.playbook).is_none() {
                return Err(format!(
                    "rule {} names unknown playbook {}",
                    r.id, r.then.playbook
                ));
            }
            if r.then.budget_minor <= 0 || r.then.duration_days == 0 {
                return Err(format!(
                    "rule {} needs a positive budget and duration",
                    r.id
                ));
            }
            if let Condition::Cap(c) = &r.when {
                severity_rank(&c.min_severity)
                    .ok_or_else(|| format!("rule {}: unknown severity {}", r.id, c.min_severity))?;
            }
        }
        Ok(book)
    }

    /// A rule by id.
    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }
}

fn severity_rank(s: &str) -> Option<u8> {
    match s {
        "Minor" => Some(1),
        "Moderate" => Some(2),
        "Severe" => Some(3),
        "Extreme" => Some(4),
        _ => None,
    }
}

fn cap_severity_rank(s: CapSeverity) -> u8 {
    match s {
        CapSeverity::Minor => 1,
        CapSeverity::Moderate => 2,
        CapSeverity::Severe => 3,
        CapSeverity::Extreme => 4,
        CapSeverity::Unknown => 0,
    }
}

/// Our severity scale from CAP's (an `Unknown` never reaches here: no rule
/// accepts it).
pub fn severity_of(s: CapSeverity) -> Severity {
    match s {
        CapSeverity::Extreme => Severity::Extreme,
        CapSeverity::Severe => Severity::Severe,
        CapSeverity::Moderate => Severity::Moderate,
        _ => Severity::Minor,
    }
}

fn name_of<T: std::fmt::Debug>(v: T) -> String {
    format!("{v:?}")
}

/// Whether one CAP `info` block meets a CAP condition (areas aside).
pub fn info_matches(c: &CapCondition, info: &Info) -> bool {
    let by_code = info
        .event_codes
        .get_all("sumud:hazard")
        .any(|v| c.hazard_codes.iter().any(|h| h.eq_ignore_ascii_case(v)));
    let event = info.event.to_lowercase();
    let by_word = c
        .event_keywords
        .iter()
        .any(|k| event.contains(&k.to_lowercase()));
    let severe =
        severity_rank(&c.min_severity).is_some_and(|min| cap_severity_rank(info.severity) >= min);
    let certain = c
        .certainty
        .iter()
        .any(|x| *x == name_of::<Certainty>(info.certainty));
    let urgent = c.urgency.is_empty()
        || c.urgency
            .iter()
            .any(|x| *x == name_of::<Urgency>(info.urgency));
    (by_code || by_word) && severe && certain && urgent
}

/// Keeps the areas whose poor share exceeds the rule's minimum (and that
/// have registered households at all).
pub fn qualifying_areas(c: &CapCondition, shares: &BTreeMap<String, (i64, f64)>) -> Vec<String> {
    shares
        .iter()
        .filter(|(_, (households, share))| {
            *households > 0 && (c.min_poor_share <= 0.0 || *share > c.min_poor_share)
        })
        .map(|(a, _)| a.clone())
        .collect()
}

/// Whether an area is watched by an indicator rule of this level.
pub fn level_matches(level: AreaLevel, area: &str, catalog: &AreaCatalog) -> bool {
    matches!(
        (level, catalog.get(area).map(|a| a.level)),
        (AreaLevel::Any, Some(_))
            | (AreaLevel::Governorate, Some(Level::Governorate))
            | (AreaLevel::District, Some(Level::District))
    )
}

/// The percentage rise from `baseline` to `value`, if the baseline allows one.
pub fn change_pct(baseline: f64, value: f64) -> Option<f64> {
    (baseline.abs() > f64::EPSILON).then(|| (value - baseline) / baseline.abs() * 100.0)
}

/// The crisis definition a rule produces over `areas`, starting on `starts_on`.
pub fn definition(
    rule: &Rule,
    severity: Severity,
    mut areas: Vec<String>,
    starts_on: NaiveDate,
) -> CrisisDefinition {
    areas.sort();
    areas.dedup();
    let a = &rule.then;
    CrisisDefinition {
        title: format!("{} — {}", a.title, areas.join(", ")),
        hazard: a.hazard,
        severity: a.severity.unwrap_or(severity),
        areas,
        response: Response {
            playbook: a.playbook.clone(),
            overrides: ResponseOverrides::default(),
        },
        budget: Money {
            minor: a.budget_minor,
            currency: a.currency.clone(),
        },
        starts_on,
        ends_on: starts_on + Duration::days(i64::from(a.duration_days)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(xml_info: &str) -> Info {
        let doc = format!(
            r#"<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>t</identifier><sender>s</sender>
            <sent>2026-11-29T06:00:00+03:00</sent><status>Actual</status><msgType>Alert</msgType><scope>Public</scope>
            {xml_info}</alert>"#
        );
        let alert: oasiscap::Alert = doc.parse().unwrap();
        alert.into_latest().info.remove(0)
    }

    fn flood_rule() -> Rule {
        RuleBook::default_book()
            .get("flood-severe-poor-areas")
            .unwrap()
            .clone()
    }

    fn cap(rule: &Rule) -> &CapCondition {
        match &rule.when {
            Condition::Cap(c) => c,
            Condition::Indicator(_) => unreachable!(),
        }
    }

    #[test]
    fn the_shipped_rule_book_loads() {
        let b = RuleBook::default_book();
        assert!(b.rules.len() >= 3);
        assert!(b.get("food-price-spike").is_some());
    }

    #[test]
    fn a_severe_likely_flood_matches_in_arabic_as_in_english() {
        let r = flood_rule();
        let ar = info("<info><language>ar-JO</language><category>Met</category><event>سيول مفاجئة</event><urgency>Immediate</urgency><severity>Severe</severity><certainty>Likely</certainty></info>");
        let en = info("<info><category>Met</category><event>Flash Flood</event><urgency>Expected</urgency><severity>Extreme</severity><certainty>Observed</certainty></info>");
        assert!(info_matches(cap(&r), &ar));
        assert!(info_matches(cap(&r), &en));
    }

    #[test]
    fn moderate_possible_or_unrelated_alerts_do_not_match() {
        let r = flood_rule();
        let moderate = info("<info><category>Met</category><event>Flood</event><urgency>Immediate</urgency><severity>Moderate</severity><certainty>Likely</certainty></info>");
        let possible = info("<info><category>Met</category><event>Flood</event><urgency>Immediate</urgency><severity>Severe</severity><certainty>Possible</certainty></info>");
        let fire = info("<info><category>Fire</category><event>Wildfire</event><urgency>Immediate</urgency><severity>Extreme</severity><certainty>Observed</certainty></info>");
        let unknown = info("<info><category>Met</category><event>Flood</event><urgency>Immediate</urgency><severity>Unknown</severity><certainty>Likely</certainty></info>");
        for i in [moderate, possible, fire, unknown] {
            assert!(!info_matches(cap(&r), &i), "{}", i.event);
        }
    }

    #[test]
    fn an_event_code_matches_without_keywords() {
        let r = flood_rule();
        let coded = info("<info><category>Met</category><event>Hydrological warning</event><urgency>Immediate</urgency><severity>Severe</severity><certainty>Likely</certainty><eventCode><valueName>sumud:hazard</valueName><value>flood</value></eventCode></info>");
        assert!(info_matches(cap(&r), &coded));
    }

    #[test]
    fn only_areas_above_the_poor_share_qualify() {
        let r = flood_rule();
        let shares = BTreeMap::from([
            ("JO-MN-01".to_string(), (100, 0.35)),
            ("JO-MN-02".to_string(), (100, 0.20)),
            ("JO-MN-03".to_string(), (0, 0.0)),
        ]);
        assert_eq!(qualifying_areas(cap(&r), &shares), vec!["JO-MN-01"]);
    }

    #[test]
    fn price_rises_are_percentages_of_the_baseline() {
        assert_eq!(change_pct(100.0, 115.0), Some(15.0));
        assert!(change_pct(0.0, 5.0).is_none());
        assert!(change_pct(120.0, 100.0).unwrap() < 0.0);
    }

    #[test]
    fn a_rule_definition_covers_its_areas_for_its_duration() {
        let r = flood_rule();
        let d = definition(
            &r,
            Severity::Severe,
            vec!["JO-MN-02".into(), "JO-MN-01".into(), "JO-MN-01".into()],
            "2026-12-01".parse().unwrap(),
        );
        assert_eq!(d.areas, vec!["JO-MN-01", "JO-MN-02"]);
        assert_eq!(d.ends_on, "2027-03-01".parse::<NaiveDate>().unwrap());
        assert_eq!(d.budget.minor, 50_000_000);
    }

    #[test]
    fn a_rule_book_with_an_unknown_playbook_is_refused() {
        let bad = DEFAULT_RULES.replace("price-shock-topup", "no-such-playbook");
        assert!(RuleBook::from_json(&bad)
            .unwrap_err()
            .contains("unknown playbook"));
    }
}
