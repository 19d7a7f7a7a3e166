//! `sumud deadletter list|show|replay`: what the services set aside on
//! `sumud.deadletter.v1`, why, and — once the cause is fixed (an operator key
//! registered late, a missing area added) — putting the originals back on
//! their source topics, byte for byte, with their original keys. Replayed
//! messages go through the normal path again: the consumers are idempotent,
//! and a message that is still bad is dead-lettered again.

use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use sumud_shared::config::Settings;
use sumud_shared::deadletter::DeadLetter;
use sumud_shared::envelope::Envelope;
use sumud_shared::kafka::producer::EventProducer;

/// A dead letter and where it sits on the dead-letter topic.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stored {
    /// `partition:offset` on the dead-letter topic.
    pub at: String,
    /// When it was recorded.
    pub time: chrono::DateTime<chrono::Utc>,
    /// The record.
    pub letter: DeadLetter,
}

/// Which dead letters a command concerns.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Filter {
    /// Only this reason code (e.g. `unknown_key`).
    #[arg(long)]
    pub reason: Option<String>,
    /// Only those rejected by this service.
    #[arg(long)]
    pub service: Option<String>,
    /// Only these dead-letter positions (`partition:offset`, repeatable).
    #[arg(long = "at")]
    pub at: Vec<String>,
}

impl Filter {
    fn keeps(&self, s: &Stored) -> bool {
        self.reason
            .as_deref()
            .is_none_or(|r| r == s.letter.reason.code())
            && self
                .service
                .as_deref()
                .is_none_or(|v| v == s.letter.service)
            && (self.at.is_empty() || self.at.contains(&s.at))
    }
}

/// Reads every dead letter now on the topic (up to the current end).
pub fn read_all(settings: &Settings) -> anyhow::Result<Vec<Stored>> {
    let topic = &settings.topics.deadletter;
    let consumer = sumud_shared::kafka::Detached::<BaseConsumer>::new(
        sumud_shared::kafka::client_config(settings)
            .set(
                "group.id",
                format!("{}-deadletter-cli", settings.group_prefix),
            )
            .set("enable.auto.commit", "false")
            .create()?,
    );
    let meta = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    let mut ends = std::collections::HashMap::new();
    for p in meta
        .topics()
        .first()
        .map(|t| t.partitions())
        .unwrap_or_default()
    {
        let (low, high) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10))?;
        if high > low {
            tpl.add_partition_offset(topic, p.id(), Offset::Offset(low))?;
            ends.insert(p.id(), high);
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return Ok(out);
    }
    consumer.assign(&tpl)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !ends.is_empty() {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "reading {topic} took over a minute"
        );
        let Some(m) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let m = m?;
        if m.offset() + 1 >= ends.get(&m.partition()).copied().unwrap_or(0) {
            ends.remove(&m.partition());
        }
        let Some(payload) = m.payload() else { continue };
        let Ok(e) = serde_json::from_slice::<Envelope<DeadLetter>>(payload) else {
            continue;
        };
        out.push(Stored {
            at: format!("{}:{}", m.partition(), m.offset()),
            time: e.time,
            letter: e.data,
        });
    }
    out.sort_by_key(|s| s.time);
    Ok(out)
}

/// Prints the matching dead letters, one per line.
pub fn list(settings: &Settings, filter: &Filter, json: bool) -> anyhow::Result<usize> {
    let all = read_all(settings)?;
    if json {
        let kept: Vec<&Stored> = all.iter().filter(|s| filter.keeps(s)).collect();
        println!("{}", serde_json::to_string_pretty(&kept)?);
        return Ok(kept.len());
    }
    println!(
        "{:<10} {:<20} {:<13} {:<22} {:<32} detail",
        "at", "recorded (UTC)", "service", "reason", "source"
    );
    let mut n = 0;
    for s in all.iter().filter(|s| filter.keeps(s)) {
        let l = &s.letter;
        let mut detail = l.detail.clone();
        if detail.chars().count() > 80 {
            detail = detail.chars().take(77).collect::<String>() + "...";
        }
        println!(
            "{:<10} {:<20} {:<13} {:<22} {:<32} {detail}",
            s.at,
            s.time.format("%Y-%m-%d %H:%M:%S"),
            l.service,
            l.reason.code(),
            format!(
                "{}/{}@{}",
                l.source_topic, l.source_partition, l.source_offset
            ),
        );
        n += 1;
    }
    println!("{n} dead letter(s).");
    Ok(n)
}

/// Prints one dead letter in full, with its original decoded when it is text.
pub fn show(settings: &Settings, at: &str) -> anyhow::Result<()> {
    let s = read_all(settings)?
        .into_iter()
        .find(|s| s.at == at)
        .with_context(|| format!("no dead letter at {at}; see `sumud deadletter list`"))?;
    let mut record = serde_json::to_value(&s.letter)?;
    record["original_base64"] =
        serde_json::Value::String(format!("({} bytes, shown below)", s.letter.original_size));
    println!("{}", serde_json::to_string_pretty(&record)?);
    let original = base64::engine::general_purpose::STANDARD.decode(&s.letter.original_base64)?;
    match std::str::from_utf8(&original) {
        Ok(text) => println!("--- original{} ---\n{text}", truncated(&s.letter)),
        Err(_) => println!("--- original is binary ({} bytes) ---", original.len()),
    }
    Ok(())
}

fn truncated(l: &DeadLetter) -> &'static str {
    if l.original_truncated {
        " (truncated)"
    } else {
        ""
    }
}

/// Puts the originals of the matching dead letters back on their source
/// topics; returns how many were replayed. Truncated originals cannot be.
pub async fn replay(settings: &Settings, filter: &Filter, dry_run: bool) -> anyhow::Result<usize> {
    anyhow::ensure!(
        filter.reason.is_some() || !filter.at.is_empty(),
        "name what to replay with --reason and/or --at (replaying everything is rarely what a fix calls for)"
    );
    let chosen: Vec<Stored> = read_all(settings)?
        .into_iter()
        .filter(|s| filter.keeps(s))
        .collect();
    let producer = EventProducer::new(settings)?;
    let mut n = 0;
    for s in &chosen {
        let l = &s.letter;
        if l.original_truncated {
            println!(
                "skipped {}: the original was truncated when dead-lettered",
                s.at
            );
            continue;
        }
        let original = base64::engine::general_purpose::STANDARD.decode(&l.original_base64)?;
        println!(
            "{} {} → {} ({} bytes, reason was {})",
            if dry_run { "would replay" } else { "replaying" },
            s.at,
            l.source_topic,
            original.len(),
            l.reason.code()
        );
        if !dry_run {
            producer
                .send_raw(
                    &l.source_topic,
                    l.source_key.as_deref().map(str::as_bytes),
                    &original,
                    None,
                )
                .await?;
        }
        n += 1;
    }
    println!(
        "{n} message(s) {}.",
        if dry_run {
            "would be replayed"
        } else {
            "replayed"
        }
    );
    Ok(n)
}
