//! Indicator readings (`indicator.reading`): stored, compared with their
//! baseline, and turned into a signed declaration when a rule's rise is
//! reached, in one transaction as alerts are (see `handler.rs`).

use chrono::{DateTime, Utc};
use serde_json::json;
use sumud_shared::areas::AreaCatalog;
use sumud_shared::deadletter::Reason;
use sumud_shared::events::alert::IndicatorReading;
use sumud_shared::events::control::CommandKind;
use sumud_shared::events::crisis::Severity;
use sumud_shared::kafka::consumer::{Incoming, Verdict};
use sumud_shared::outbox;
use sumud_shared::Result;
use tracing::info;

use super::{reject, AlertsHandler};
use crate::command::{self, Draft};
use crate::db::{self, Stored};
use crate::rules::{self, Condition, Mode};

impl AlertsHandler {
    /// A socio-economic indicator reading: recorded once per source, area
    /// and period (a different value for the same is `replayed`, since a
    /// correction needs an operator), then every indicator rule it may
    /// trigger is evaluated against its baseline; a rule that fires queues a
    /// signed declaration in the same transaction.
    pub(super) async fn reading(&self, m: &Incoming, now: DateTime<Utc>) -> Result<Verdict> {
        let r: IndicatorReading = match m.envelope.typed() {
            Ok(r) => r,
            Err(r) => return Ok(Verdict::Reject(r)),
        };
        let catalog = AreaCatalog::default_catalog();
        if catalog.resolve(&r.area).is_none() {
            return Ok(reject(
                Reason::UnknownArea,
                format!("area code {:?} is not in the area hierarchy", r.area),
            ));
        }
        if !r.value.is_finite() {
            return Ok(reject(
                Reason::SchemaInvalid,
                "value is not a finite number",
            ));
        }
        // Readings from unknown sources, or for areas their source does
        // not speak for, are not even stored: they would feed baselines.
        let Some(trusted) = self.senders.get(&r.source).filter(|t| t.covers(&r.area)) else {
            return Ok(reject(
                Reason::UntrustedSender,
                format!(
                    "{} is not a trusted source of readings for {} (trusted-sender list version {})",
                    r.source, r.area, self.senders.version
                ),
            ));
        };
        let mut tx = self.store.begin().await?;
        match db::insert_reading(&mut tx, &r).await? {
            Stored::New => {}
            Stored::Same => return Ok(Verdict::Done),
            Stored::Conflict(before) => {
                return Ok(reject(
                    Reason::Replayed,
                    format!(
                        "{} for {} on {} from {} was recorded as {before}, not {}; a correction needs an operator",
                        r.indicator, r.area, r.period_end, r.source, r.value
                    ),
                ))
            }
        }
        let mut fired = Vec::new();
        for rule in &self.rules.rules {
            let Condition::Indicator(c) = &rule.when else {
                continue;
            };
            if !trusted.may_trigger(&rule.id) {
                continue;
            }
            if c.indicator != r.indicator || !rules::level_matches(c.level, &r.area, catalog) {
                continue;
            }
            let Some((base_day, base)) = db::baseline(&mut tx, &r, c.window_days).await? else {
                continue;
            };
            let Some(change) = rules::change_pct(base, r.value) else {
                continue;
            };
            if change < c.min_change_pct {
                continue;
            }
            let period = r.period_end.to_string();
            let cause = [rule.id.as_str(), r.area.as_str(), period.as_str()];
            let crisis_id = command::crisis_id(&cause);
            let version = rule.version as i32;
            if !db::claim_trigger(
                &mut tx,
                (&rule.id, version),
                &r.area,
                r.period_end,
                c.window_days,
                &crisis_id,
            )
            .await?
            {
                continue;
            }
            let draft = Draft {
                kind: CommandKind::Declare,
                jti: command::command_id(CommandKind::Declare, &cause),
                body: Some(rules::definition(
                    rule,
                    Severity::Moderate,
                    vec![r.area.clone()],
                    now.date_naive(),
                )),
                scope: None,
                note: Some(format!(
                    "Rule {} v{}: {} in {} rose {change:.1}% from {base} ({base_day}) to {} ({})",
                    rule.id, rule.version, r.indicator, r.area, r.value, r.period_end
                )),
                trigger: json!({
                    "kind": "indicator",
                    "rule": {"id": rule.id, "version": rule.version, "mode": rule.mode, "rule_book": self.rules.version},
                    "readings": [
                        {"source": r.source, "indicator": r.indicator, "area": r.area, "period_end": base_day, "value": base},
                        {"source": r.source, "indicator": r.indicator, "area": r.area, "period_end": r.period_end, "value": r.value},
                    ],
                    "change_pct": change,
                }),
                propose: rule.mode == Mode::Propose,
                crisis_id,
            };
            let row = draft.sign(
                &self.key,
                &self.control_topic,
                sumud_shared::telemetry::continuing(m.traceparent.as_deref()),
            )?;
            outbox::enqueue_tx(&mut tx, "alerts", vec![row]).await?;
            fired.push(draft.crisis_id);
        }
        tx.commit().await?;
        if !fired.is_empty() {
            self.wake.notify_one();
        }
        info!(indicator = %r.indicator, area = %r.area, period_end = %r.period_end, value = r.value, crises = ?fired, "Reading recorded.");
        Ok(Verdict::Done)
    }
}
