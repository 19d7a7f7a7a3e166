//! `sumud explain`: everything behind a household's payments in a crisis,
//! from either end — the household (`--crisis --household`) or a payment
//! (`--instruction REF`, where an auditor starts). It names the authority
//! (the trigger rule and alert, or the signed commands and who approved),
//! the rules (playbook), the registry record, the decision and its reason,
//! and every instruction with its status history; `--json` gives the same
//! as one document.

use serde::Serialize;
use sumud_control::db::authority::{self, AuditRow};
use sumud_control::decided::{self, Decided};
use sumud_disbursement::db::history::{self, InstructionHistory};
use sumud_eligibility::explain::Eligibility;
use sumud_shared::db::Store;
use sumud_shared::money::Money;

/// On whose authority the crisis pays.
#[derive(Debug, Serialize)]
pub struct Authority {
    /// Who put the definition in force (proposer, approvers, rescoper).
    pub decided: Option<Decided>,
    /// The rule and the alert or readings behind an automatic declaration.
    pub trigger: Option<serde_json::Value>,
    /// Every signed command applied to the crisis, oldest first.
    pub commands: Vec<AuditRow>,
}

/// The whole explanation.
#[derive(Debug, Serialize)]
pub struct Explanation {
    /// Crisis id.
    pub crisis_id: String,
    /// Household id.
    pub household_id: String,
    /// The instruction asked about, when explain started from a payment.
    pub instruction: Option<String>,
    /// Authority; `None` when control's records are not in this database.
    pub authority: Option<Authority>,
    /// Decisions and what the rules say.
    pub eligibility: Eligibility,
    /// Instructions with their histories (only the one asked about, when
    /// asked by instruction); `None` when payments are not recorded here.
    pub instructions: Option<Vec<InstructionHistory>>,
}

/// What to explain.
pub enum Subject {
    /// A household in a crisis.
    Household {
        /// Crisis id.
        crisis: String,
        /// Household id.
        household: String,
    },
    /// One payment instruction, by its reference.
    Instruction(String),
}

/// Gathers the explanation from the pipeline's database.
pub async fn explanation(store: &Store, subject: Subject) -> anyhow::Result<Explanation> {
    anyhow::ensure!(
        store.has_table("eligibility", "crises").await?,
        "eligibility's records are not in this database: point DATABASE_URL at the pipeline's \
         database (sqlite://.sumud/sumud.db for the embedded default of `sumud up`)"
    );
    let payments = store.has_table("disbursement", "instructions").await?;
    let (crisis_id, household_id, asked, one) = match subject {
        Subject::Household { crisis, household } => (crisis, household, None, None),
        Subject::Instruction(reference) => {
            // The pain.001 EndToEndId is the reference without hyphens.
            let reference = uuid::Uuid::parse_str(&reference)
                .map(|u| u.hyphenated().to_string())
                .unwrap_or(reference);
            let row = if payments {
                history::instruction(store, &reference).await?
            } else {
                None
            };
            let Some(row) = row else {
                anyhow::bail!(
                    "no payment instruction {reference} is recorded: check the reference (the EndToEndId of a pain.001 export, the instruction_id of a disbursement event)"
                );
            };
            (
                row.crisis_id.clone(),
                row.household_id.clone(),
                Some(reference),
                Some(row),
            )
        }
    };
    let authority = if store.has_table("control", "audit").await? {
        let commands = authority::audit(store, &crisis_id).await?;
        let entries: Vec<decided::Entry<'_>> = commands
            .iter()
            .map(|c| {
                (
                    c.kind.as_str(),
                    c.principal.as_str(),
                    c.revision,
                    c.outcome.as_str(),
                )
            })
            .collect();
        let decided = decided::decided(&entries);
        Some(Authority {
            decided,
            trigger: authority::trigger(store, &crisis_id).await?,
            commands,
        })
    } else {
        None
    };
    let eligibility =
        sumud_eligibility::explain::eligibility(store, &crisis_id, &household_id).await?;
    let instructions = if payments {
        let rows = match one {
            Some(row) => vec![row],
            None => history::instructions_of(store, &crisis_id, &household_id).await?,
        };
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(history::history(store, row).await?);
        }
        Some(out)
    } else {
        None
    };
    Ok(Explanation {
        crisis_id,
        household_id,
        instruction: asked,
        authority,
        eligibility,
        instructions,
    })
}

impl Explanation {
    /// The explanation in plain language.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(reference) = &self.instruction {
            out.push(format!(
                "Instruction {reference} pays household {} in crisis {}.",
                self.household_id, self.crisis_id
            ));
        }
        out.extend(self.eligibility.lines());
        match &self.authority {
            None => out.push(
                "Control's records are not in this database: the authority cannot be shown.".into(),
            ),
            Some(a) => authority_lines(a, &mut out),
        }
        match &self.instructions {
            None => out.push("Payments are not recorded in this database.".into()),
            Some(list) if list.is_empty() => out.push(format!(
                "No payment instruction for household {} in crisis {}.",
                self.household_id, self.crisis_id
            )),
            Some(list) => {
                for i in list {
                    instruction_lines(i, &mut out);
                }
            }
        }
        out
    }
}

fn authority_lines(a: &Authority, out: &mut Vec<String>) {
    if let Some(t) = &a.trigger {
        out.push(trigger_sentence(t));
    }
    if let Some(d) = &a.decided {
        out.push(d.sentence());
    }
    if !a.commands.is_empty() {
        out.push("Signed commands:".into());
    }
    for c in &a.commands {
        out.push(format!(
            "  {} {} {} by {} (key {}): {}, revision {}{}",
            c.at.format("%Y-%m-%d %H:%M:%S"),
            c.kind,
            c.command_id,
            c.principal,
            c.key_id,
            c.outcome,
            c.revision,
            c.note
                .as_deref()
                .map(|n| format!(" — {n}"))
                .unwrap_or_default()
        ));
    }
}

/// One sentence for the trigger the alerts service recorded.
fn trigger_sentence(t: &serde_json::Value) -> String {
    let s = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "?".into(),
        other => other.to_string(),
    };
    let rule = &t["rule"];
    let rule = format!(
        "rule {} v{} of rule book {} ({})",
        s(&rule["id"]),
        s(&rule["version"]),
        s(&rule["rule_book"]),
        s(&rule["mode"])
    );
    match t["kind"].as_str() {
        Some("cap_alert") => {
            let a = &t["alert"];
            format!(
                "Triggered by CAP alert {} from {}, sent {}, under {rule}.",
                s(&a["identifier"]),
                s(&a["sender"]),
                s(&a["sent"])
            )
        }
        Some("indicator") => {
            let readings: Vec<String> = t["readings"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    format!(
                        "{} {} {} = {} ({})",
                        s(&r["source"]),
                        s(&r["indicator"]),
                        s(&r["area"]),
                        s(&r["value"]),
                        s(&r["period_end"])
                    )
                })
                .collect();
            format!(
                "Triggered by indicator readings {} under {rule}.",
                readings.join(", ")
            )
        }
        _ => format!("Triggered by {t}."),
    }
}

fn instruction_lines(h: &InstructionHistory, out: &mut Vec<String>) {
    let i = &h.instruction;
    let amount = Money {
        minor: i.amount_minor,
        currency: i.currency.clone(),
    };
    out.push(format!(
        "Instruction {}: {} tranche {}{}, {} via {} ({}), crisis revision {}, attempt {}, {}{}{}; due {}, final status due by {}.",
        i.instruction_id,
        i.kind,
        i.tranche,
        if i.part > 0 { format!(" top-up {}", i.part) } else { String::new() },
        amount.display(),
        i.provider,
        i.channel,
        i.crisis_revision,
        i.attempt,
        i.status,
        i.reason_code.as_deref().map(|r| format!(" ({r})")).unwrap_or_default(),
        i.provider_ref.as_deref().map(|r| format!(", provider reference {r}")).unwrap_or_default(),
        i.scheduled_at.format("%Y-%m-%d"),
        i.deadline_at.format("%Y-%m-%d %H:%M"),
    ));
    for s in &h.statuses {
        out.push(format!(
            "  {} {} reported attempt {} {}{}{}",
            s.at.format("%Y-%m-%d %H:%M:%S"),
            s.provider,
            s.attempt,
            s.status,
            s.reason_code
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default(),
            match (s.applied, s.note.as_deref()) {
                (true, _) => String::new(),
                (false, Some(n)) => format!(" — not applied: {n}"),
                (false, None) => " — not applied".into(),
            }
        ));
    }
    for x in &h.incidents {
        out.push(format!(
            "  Incident {}: {} on attempt {}{}; {}",
            x.incident_id,
            x.kind,
            x.attempt,
            x.provider_ref
                .as_deref()
                .map(|r| format!(", provider reference {r}"))
                .unwrap_or_default(),
            match (&x.resolved_by, &x.resolution) {
                (Some(by), Some(how)) => format!("resolved by {by}: {how}"),
                _ => "open".into(),
            }
        ));
    }
    for t in &h.tasks {
        let when = |at: &chrono::DateTime<chrono::Utc>| at.format("%Y-%m-%d %H:%M").to_string();
        let standing = match (t.state.as_str(), &t.outcome) {
            ("resolved", Some(outcome)) => {
                let what = match outcome.as_str() {
                    "details_corrected" => format!(
                        "details corrected; re-issued as attempt {} via {}",
                        t.reissued_attempt.unwrap_or_default(),
                        t.corrected_provider.as_deref().unwrap_or("?")
                    ),
                    "ineligible" => {
                        "found ineligible; no later tranche of this household in this crisis is instructed"
                            .to_owned()
                    }
                    other => other.replace('_', " "),
                };
                format!(
                    "resolved {} by {}: {what}{}",
                    t.resolved_at.as_ref().map(when).unwrap_or_default(),
                    t.resolved_by.as_deref().unwrap_or("?"),
                    t.note
                        .as_deref()
                        .filter(|n| !n.is_empty())
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default()
                )
            }
            ("assigned", _) => format!("assigned to {}", t.assigned_to.as_deref().unwrap_or("?")),
            _ => "open".into(),
        };
        out.push(format!(
            "  Verification task {} raised {} for attempt {} ({}): {standing}.",
            t.task_id,
            when(&t.created_at),
            t.attempt,
            t.reason_code
        ));
    }
}
