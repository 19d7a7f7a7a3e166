//! `sumud registry generate|import`: make a synthetic registry, or publish a
//! CSV of households to the registry topic.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use sumud_shared::areas::AreaCatalog;
use sumud_shared::config::Settings;
use sumud_shared::envelope::Envelope;
use sumud_shared::events::household::{Household, HOUSEHOLD_UPSERTED};
use sumud_shared::kafka::producer::EventProducer;
use sumud_shared::synthetic;

use crate::registry_csv::CsvRow;

/// The source attribute of events the CLI publishes for the registry.
pub const SOURCE: &str = "urn:sumud:cli:registry";

/// The event for one household. The id is derived from (household, version),
/// so publishing the same record twice is recognisable as a replay.
pub fn upsert_event(h: Household) -> Envelope<Household> {
    let mut e = Envelope::new(SOURCE, HOUSEHOLD_UPSERTED, Some(h.household_id.clone()), h);
    let name = format!("{}:{}", e.data.household_id, e.data.version);
    e.id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes()).to_string();
    e
}

/// A progress bar in the house style.
pub fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {what:<12} [{{bar:40}}] {{human_pos}}/{{human_len}} ({{per_sec}}, eta {{eta}})"
        ))
        .expect("template is valid")
        .progress_chars("=> "),
    );
    bar
}

/// Writes `n` synthetic households as CSV to `out` (or stdout for `-`).
pub fn generate_csv(n: u64, seed: u64, out: &Path) -> anyhow::Result<()> {
    let sink: Box<dyn Write> = if out.as_os_str() == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(
            std::fs::File::create(out)
                .with_context(|| format!("cannot create {}", out.display()))?,
        )
    };
    let mut w = csv::Writer::from_writer(std::io::BufWriter::new(sink));
    let catalog = AreaCatalog::default_catalog();
    for i in 0..n {
        w.serialize(CsvRow::from_household(&synthetic::household(
            catalog, seed, i,
        )))?;
    }
    w.flush()?;
    Ok(())
}

/// Publishes `n` synthetic households straight to the registry topic.
pub async fn publish_synthetic(
    settings: &Settings,
    n: u64,
    seed: u64,
    quiet: bool,
) -> anyhow::Result<u64> {
    let producer = EventProducer::new(settings)?;
    let catalog = AreaCatalog::default_catalog();
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        progress(n, "publishing")
    };
    let messages = (0..n).map(|i| {
        let h = synthetic::household(catalog, seed, i);
        (h.household_id.clone(), upsert_event(h).to_bytes())
    });
    let sent = producer
        .send_many(&settings.topics.registry, messages, 20_000, || bar.inc(1))
        .await?;
    bar.finish();
    Ok(sent)
}

/// Publishes every valid row of a CSV file; reports invalid rows by line and
/// fails at the end if there were any (the valid ones are still published).
pub async fn import_csv(settings: &Settings, file: &Path) -> anyhow::Result<u64> {
    let lines = count_lines(file)?;
    let mut reader =
        csv::Reader::from_path(file).with_context(|| format!("cannot open {}", file.display()))?;
    let mut rows = Vec::new();
    let mut bad = 0u64;
    for (i, row) in reader.deserialize::<CsvRow>().enumerate() {
        let line = i + 2;
        match row
            .map_err(|e| e.to_string())
            .and_then(CsvRow::into_household)
        {
            Ok(h) => rows.push((h.household_id.clone(), upsert_event(h).to_bytes())),
            Err(e) => {
                bad += 1;
                eprintln!("{}:{line}: skipped: {e}", file.display());
            }
        }
    }
    let producer = EventProducer::new(settings)?;
    let bar = progress(lines.saturating_sub(1).saturating_sub(bad), "importing");
    let sent = producer
        .send_many(&settings.topics.registry, rows, 20_000, || bar.inc(1))
        .await?;
    bar.finish();
    if bad > 0 {
        bail!("{sent} households published, {bad} rows skipped: fix the rows listed above and import them again");
    }
    Ok(sent)
}

fn count_lines(file: &Path) -> anyhow::Result<u64> {
    let text = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    Ok(text.iter().filter(|b| **b == b'\n').count() as u64)
}
