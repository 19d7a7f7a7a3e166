//! `sumud alerts send|list` and `sumud simulate`: publishing early-warning
//! input the way an alerting authority would, reading what the alerts
//! service made of it, and asking "what if" without publishing anything.

use std::collections::BTreeSet;
use std::path::Path;
use std::str::FromStr;

use anyhow::Context;
use chrono::{Duration, Utc};
use serde_json::Value;
use sumud_alerts::footprint::{self, AreaIndex};
use sumud_eligibility::simulate::{self, Simulation};
use sumud_shared::areas::AreaCatalog;
use sumud_shared::config::Settings;
use sumud_shared::db::Store;
use sumud_shared::envelope::Envelope;
use sumud_shared::events::alert::{CapAlertJson, ALERT_CAP, CAP_XML};
use sumud_shared::events::crisis::CrisisDefinition;
use sumud_shared::kafka::producer::EventProducer;
use sumud_shared::money::Money;
use sumud_shared::playbook::PlaybookBook;

use crate::crisis_cmd::DefinitionArgs;

/// Publishes a CAP document (XML, or the JSON form) on the alerts topic,
/// signed with `key` when the sender is listed with one.
pub async fn send(settings: &Settings, file: &Path, key: Option<&Path>) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let trimmed = text.trim_start();
    let (event, sender) = if trimmed.starts_with('{') {
        let json: CapAlertJson = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a CAP alert in JSON form", file.display()))?;
        let sender = json.sender.clone();
        let data = serde_json::to_value(&json)?;
        (
            Envelope::new("urn:sumud:cli", ALERT_CAP, None, data),
            sender,
        )
    } else {
        let alert = sumud_alerts::cap::parse(&text).map_err(|r| {
            anyhow::anyhow!("{} is not a valid CAP alert: {}", file.display(), r.detail)
        })?;
        let mut e = Envelope::new("urn:sumud:cli", ALERT_CAP, None, Value::String(text));
        e.datacontenttype = CAP_XML.into();
        (e, alert.sender.to_string())
    };
    let mut value = serde_json::to_value(&event)?;
    if let Some(path) = key {
        let key = crate::crisis_cmd::read_key(path)?;
        sumud_alerts::senders::sign_event(&mut value, &key).map_err(anyhow::Error::msg)?;
    }
    let producer = EventProducer::new(settings)?;
    producer
        .send_raw(
            &settings.topics.alerts,
            Some(sender.as_bytes()),
            &serde_json::to_vec(&value)?,
            None,
        )
        .await?;
    Ok(event.id)
}

/// sent, sender, identifier, status/type, outcome, areas, crisis.
/// Prints the most recent alerts and what was done about each.
pub async fn list(settings: &Settings, limit: i64, json: bool) -> anyhow::Result<()> {
    let store = Store::connect_with(
        &settings.database_url,
        2,
        std::time::Duration::from_secs(10),
        settings.db_timeouts,
    )
    .await?;
    let alerts = sumud_alerts::db::recent(&store, limit)
        .await
        .context("cannot read alerts.alerts; has the alerts service run against this database?")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&alerts)?);
        return Ok(());
    }
    println!(
        "{:<16} {:<20} {:<22} {:<16} {:<18} {:<16} areas",
        "sent (UTC)", "sender", "identifier", "status/type", "outcome", "crisis"
    );
    for a in alerts {
        println!(
            "{:<16} {:<20} {:<22} {:<16} {:<18} {:<16} {}",
            a.sent.format("%Y-%m-%d %H:%M"),
            a.sender,
            a.identifier,
            a.kind,
            a.outcome,
            a.crisis_id.unwrap_or_else(|| "-".into()),
            a.areas.join(",")
        );
    }
    Ok(())
}

/// Where a scenario's hazard lies.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FootprintArgs {
    /// A CAP document (XML): its areas, polygons and circles become the footprint.
    #[arg(long)]
    pub cap: Option<std::path::PathBuf>,
    /// A polygon as in CAP: "lat,lon lat,lon … lat,lon", first point repeated last.
    #[arg(long)]
    pub polygon: Option<String>,
}

impl FootprintArgs {
    /// The area codes of the footprint, if one was given.
    pub fn areas(&self) -> anyhow::Result<Option<Vec<String>>> {
        let catalog = AreaCatalog::default_catalog();
        let index = AreaIndex::new(catalog);
        let mut areas = BTreeSet::new();
        if let Some(path) = &self.cap {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let alert = sumud_alerts::cap::parse(&text)
                .map_err(|r| anyhow::anyhow!("{}: {}", path.display(), r.detail))?;
            for info in &alert.info {
                areas.extend(
                    footprint::resolve(&info.areas, catalog, &index)
                        .map_err(|r| anyhow::anyhow!("{}: {}", path.display(), r.detail))?,
                );
            }
        }
        if let Some(text) = &self.polygon {
            let polygon = oasiscap::geo::Polygon::from_str(text)
                .map_err(|e| anyhow::anyhow!("--polygon: {e}"))?;
            let area = oasiscap::v1dot2::Area {
                description: "scenario".into(),
                polygons: vec![polygon],
                circles: Vec::new(),
                geocode: Default::default(),
                altitude: None,
                ceiling: None,
            };
            areas.extend(
                footprint::resolve(&[area], catalog, &index)
                    .map_err(|r| anyhow::anyhow!("--polygon: {}", r.detail))?,
            );
        }
        if self.cap.is_none() && self.polygon.is_none() {
            return Ok(None);
        }
        anyhow::ensure!(
            !areas.is_empty(),
            "the footprint does not touch any of our areas"
        );
        Ok(Some(areas.into_iter().collect()))
    }
}

/// Builds the scenario's definition: what was typed, the footprint's areas,
/// and defaults that make a quick question quick (today, 90 days, the
/// playbook's first hazard).
pub fn scenario(
    mut args: DefinitionArgs,
    place: &FootprintArgs,
) -> anyhow::Result<CrisisDefinition> {
    if let Some(areas) = place.areas()? {
        let mut all = args.areas.take().unwrap_or_default();
        all.extend(areas);
        args.areas = Some(all);
    }
    let playbook = args
        .playbook
        .clone()
        .context("--playbook is required (see shared/data/playbooks.json)")?;
    let hazard = PlaybookBook::default_book()
        .get(&playbook)
        .and_then(|p| p.hazards.first().copied())
        .with_context(|| format!("unknown playbook {playbook}"))?;
    let today = Utc::now().date_naive();
    let base = CrisisDefinition {
        title: "Scenario".into(),
        hazard,
        severity: sumud_shared::events::crisis::Severity::Severe,
        areas: Vec::new(),
        response: sumud_shared::events::crisis::Response {
            playbook,
            overrides: Default::default(),
        },
        budget: Money {
            minor: 0,
            currency: "JOD".into(),
        },
        starts_on: today,
        ends_on: today + Duration::days(90),
    };
    let def = args.build(Some(base))?;
    anyhow::ensure!(!def.areas.is_empty(), "give --areas, --cap or --polygon");
    anyhow::ensure!(def.budget.minor > 0, "--budget is required");
    Ok(def)
}

/// Runs the simulation and prints it (or its JSON).
pub async fn simulate(
    settings: &Settings,
    def: &CrisisDefinition,
    json: bool,
) -> anyhow::Result<Simulation> {
    let store = sumud_shared::db::Store::connect_with(
        &settings.database_url,
        2,
        std::time::Duration::from_secs(10),
        settings.db_timeouts,
    )
    .await?;
    store.migrate(&sumud_registry::db::MIGRATIONS).await?;
    store.migrate(&sumud_eligibility::db::MIGRATIONS).await?;
    let s = simulate::simulate(&store, def).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print(&s);
    }
    Ok(s)
}

fn money(minor: i64, currency: &str) -> String {
    Money {
        minor,
        currency: currency.into(),
    }
    .display()
}

fn print(s: &Simulation) {
    let cur = &s.definition.budget.currency;
    println!(
        "Scenario: {} ({:?}, {:?}) over {} — playbook {}, {} tranche(s) every {} days; nothing was published.",
        s.definition.title,
        s.definition.hazard,
        s.definition.severity,
        s.definition.areas.join(", "),
        s.definition.response.playbook,
        s.tranches,
        s.interval_days
    );
    println!(
        "\n{:<8} {:<10} {:<10} {:>9} {:>10} {:>16} {:>16}",
        "gov.", "district", "type", "covered", "waitlisted", "per tranche", "waitlist/tr."
    );
    for l in &s.lines {
        println!(
            "{:<8} {:<10} {:<10} {:>9} {:>10} {:>16} {:>16}",
            l.governorate,
            l.district,
            l.kind,
            l.entitled,
            l.waitlisted,
            money(l.entitled_per_tranche_minor, cur),
            money(l.waitlisted_per_tranche_minor, cur)
        );
    }
    println!(
        "\nCovered: {} households, {} per tranche, {} over {} tranche(s), of a budget of {} ({:.1}% used).",
        s.entitled,
        money(s.per_tranche_minor, cur),
        money(s.committed_minor, cur),
        s.tranches,
        money(s.budget_minor, cur),
        100.0 * s.committed_minor as f64 / s.budget_minor.max(1) as f64
    );
    println!(
        "Waitlisted: {} households; covering them too would cost {} more.",
        s.waitlisted,
        money(s.waitlist_cost_minor, cur)
    );
}
