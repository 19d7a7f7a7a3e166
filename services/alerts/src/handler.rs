//! The alerts service's consumer-loop handler. Each message is one
//! transaction: the alert (or reading) is recorded, the rule decision made,
//! and the signed command queued in the outbox together, so that an alert is
//! acted on exactly once however often it is delivered.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, FixedOffset, Utc};
use oasiscap::v1dot2::{Alert, MessageType, Status};
use serde_json::json;
use sumud_control::signing::Jwk;
use sumud_shared::areas::AreaCatalog;
use sumud_shared::db::{Store, Tx};
use sumud_shared::deadletter::Reason;
use sumud_shared::envelope::Rejection;
use sumud_shared::events::alert::{ALERT_CAP, INDICATOR_READING};
use sumud_shared::events::control::{CommandKind, CrisisScope};
use sumud_shared::events::crisis::Severity;
use sumud_shared::kafka::consumer::{Handler, Incoming, Verdict};
use sumud_shared::outbox;
use sumud_shared::{Error, Result};
use tokio::sync::Notify;
use tracing::info;

use crate::cap;
use crate::command::{self, Draft};
use crate::db::{self, AlertRecord};
use crate::footprint::{self, AreaIndex};
use crate::rules::{self, CapCondition, Condition, Mode, Rule, RuleBook};
use crate::senders::{SenderBook, TrustedSender};

mod reading;

/// The outcome recorded for an alert its sender may not send.
const UNTRUSTED: &str = "untrusted_sender";

/// Turns alerts and readings into commands.
pub struct AlertsHandler {
    store: Store,
    rules: RuleBook,
    senders: SenderBook,
    key: Jwk,
    index: AreaIndex,
    control_topic: String,
    wake: Arc<Notify>,
}

/// What the rules made of an alert.
struct Decision {
    outcome: &'static str,
    rule: Option<(String, i32)>,
    draft: Option<Draft>,
    /// Recorded, then dead-lettered with this.
    refusal: Option<Rejection>,
}

impl Decision {
    fn nothing(outcome: &'static str) -> Decision {
        Decision {
            outcome,
            rule: None,
            draft: None,
            refusal: None,
        }
    }
}

fn reject(reason: Reason, detail: impl Into<String>) -> Verdict {
    Verdict::Reject(Rejection::new(reason, detail))
}

fn utc(t: oasiscap::DateTime) -> DateTime<Utc> {
    DateTime::<FixedOffset>::from(t).with_timezone(&Utc)
}

impl AlertsHandler {
    /// A handler acting by `rules`, signing with `key`, queueing commands for
    /// `control_topic` in the `alerts` outbox.
    pub fn new(
        store: Store,
        rules: RuleBook,
        senders: SenderBook,
        key: Jwk,
        control_topic: String,
        wake: Arc<Notify>,
    ) -> Self {
        AlertsHandler {
            store,
            rules,
            senders,
            key,
            index: AreaIndex::new(AreaCatalog::default_catalog()),
            control_topic,
            wake,
        }
    }

    async fn alert(&self, m: &Incoming, now: DateTime<Utc>) -> Result<Verdict> {
        let decoded = match cap::decode(&m.envelope) {
            Ok(d) => d,
            Err(r) => return Ok(Verdict::Reject(r)),
        };
        let a = &decoded.alert;
        let catalog = AreaCatalog::default_catalog();
        let mut footprints = Vec::with_capacity(a.info.len());
        for info in &a.info {
            match footprint::resolve(&info.areas, catalog, &self.index) {
                Ok(f) => footprints.push(f),
                Err(r) => return Ok(Verdict::Reject(r)),
            }
        }
        let anywhere_ours = footprints.iter().any(|f| !f.is_empty());
        let trusted = self.senders.get(&a.sender);
        let mut tx = self.store.begin().await?;
        match db::alert_seen(&mut tx, &a.sender, &a.identifier).await? {
            Some((_, outcome)) if outcome == UNTRUSTED && trusted.is_some() => {
                // Recorded while its sender was not trusted; judged afresh
                // now that it is (a dead letter replayed after review).
                db::forget_untrusted(&mut tx, &a.sender, &a.identifier).await?;
            }
            Some((sent, outcome)) if sent == utc(a.sent) => {
                // A redelivery: an untrusted one is dead-lettered again (the
                // first letter may not have gone out before a crash).
                return Ok(if outcome == UNTRUSTED {
                    self.untrusted(a)
                } else {
                    Verdict::Done
                });
            }
            Some(_) => {
                return Ok(reject(
                    Reason::Replayed,
                    format!(
                        "{} already sent an alert with identifier {} at another time; CAP identifiers are unique per sender",
                        a.sender, a.identifier
                    ),
                ))
            }
            None => {}
        }
        let Some(trusted) = trusted else {
            // Recorded (an auditor sees who tried), never acted on.
            let decision = Decision::nothing(UNTRUSTED);
            self.record(&mut tx, &decoded, &BTreeSet::new(), &decision, None)
                .await?;
            tx.commit().await?;
            info!(sender = %a.sender, alert = %a.identifier, "Alert from an untrusted sender recorded; not acted on.");
            return Ok(self.untrusted(a));
        };
        // A keyed sender's alert must be signed: a forgery is dead-lettered
        // and not recorded, so it cannot take the real alert's identifier.
        if let Err(r) = trusted.check_signature(&m.raw, &m.envelope.data) {
            return Ok(Verdict::Reject(r));
        }
        // The sender speaks for its own areas only.
        let footprints: Vec<BTreeSet<String>> = footprints
            .into_iter()
            .map(|f| f.into_iter().filter(|c| trusted.covers(c)).collect())
            .collect();
        let ours: BTreeSet<String> = footprints.iter().flatten().cloned().collect();
        // Expiry is judged only for an alert not seen before: a redelivery
        // of one already applied may arrive after it expired, and is a
        // duplicate, not news.
        let acts = matches!(a.message_type, MessageType::Alert | MessageType::Update);
        if acts
            && !ours.is_empty()
            && !a.info.is_empty()
            && a.info
                .iter()
                .all(|i| i.expires.is_some_and(|e| utc(e) < now))
        {
            return Ok(reject(
                Reason::Expired,
                format!(
                    "alert {} from {} expired before it arrived",
                    a.identifier, a.sender
                ),
            ));
        }
        let beyond_remit = anywhere_ours && ours.is_empty();
        let decision = self
            .decide(&mut tx, trusted, a, &footprints, (&ours, beyond_remit), now)
            .await?;
        let actual = a.status == Status::Actual;
        let mut command = None;
        if let Some(d) = &decision.draft {
            command = Some(serde_json::to_value(d.claims()).expect("serialises"));
            if actual {
                let row = d.sign(
                    &self.key,
                    &self.control_topic,
                    sumud_shared::telemetry::continuing(m.traceparent.as_deref()),
                )?;
                outbox::enqueue_tx(&mut tx, "alerts", vec![row]).await?;
            }
        }
        self.record(&mut tx, &decoded, &ours, &decision, command)
            .await?;
        tx.commit().await?;
        if actual && decision.draft.is_some() {
            self.wake.notify_one();
        }
        info!(
            sender = %a.sender, alert = %a.identifier, status = ?a.status, msg_type = ?a.message_type,
            areas = ours.len(), outcome = decision.outcome,
            crisis = decision.draft.as_ref().map(|d| d.crisis_id.as_str()).unwrap_or("-"),
            "Alert recorded."
        );
        Ok(match decision.refusal {
            Some(r) => Verdict::Reject(r),
            None => Verdict::Done,
        })
    }

    fn untrusted(&self, a: &Alert) -> Verdict {
        reject(
            Reason::UntrustedSender,
            format!(
                "{} is not on the trusted-sender list (version {}); its alert {} was recorded and not acted on",
                a.sender, self.senders.version, a.identifier
            ),
        )
    }

    /// Records the alert and what was made of it.
    async fn record(
        &self,
        tx: &mut Tx,
        decoded: &cap::Decoded,
        ours: &BTreeSet<String>,
        decision: &Decision,
        command: Option<serde_json::Value>,
    ) -> Result<()> {
        let a = &decoded.alert;
        let actual = a.status == Status::Actual;
        let outcome = if actual || decision.draft.is_none() {
            decision.outcome
        } else {
            "dry_run"
        };
        let refs: Vec<String> = a
            .references
            .iter()
            .flat_map(|r| r.iter())
            .map(|r| r.to_string())
            .collect();
        db::insert_alert(
            tx,
            &AlertRecord {
                sender: &a.sender,
                identifier: &a.identifier,
                sent: utc(a.sent),
                status: &format!("{:?}", a.status),
                msg_type: &format!("{:?}", a.message_type),
                refs,
                events: a.info.iter().map(|i| i.event.clone()).collect(),
                areas: ours.iter().cloned().collect(),
                outcome,
                rule: decision.rule.as_ref().map(|(id, v)| (id.as_str(), *v)),
                crisis_id: decision
                    .draft
                    .as_ref()
                    .filter(|_| actual)
                    .map(|d| d.crisis_id.as_str()),
                command,
                document: &decoded.document,
            },
        )
        .await
    }

    /// Applies the rules: a new alert may declare or propose; an update
    /// amends the crisis its reference caused; a cancel closes it.
    async fn decide(
        &self,
        conn: &mut Tx,
        trusted: &TrustedSender,
        a: &Alert,
        footprints: &[BTreeSet<String>],
        (ours, beyond_remit): (&BTreeSet<String>, bool),
        now: DateTime<Utc>,
    ) -> Result<Decision> {
        let refs: Vec<(String, String)> = a
            .references
            .iter()
            .flat_map(|r| r.iter())
            .map(|r| (r.sender.to_string(), r.identifier.to_string()))
            .collect();
        // An Update or Cancel acts only on what its own sender's alert
        // caused; one naming another sender's alert is refused.
        let (own, foreign): (Vec<_>, Vec<_>) =
            refs.into_iter().partition(|r| r.0 == a.sender.as_str());
        let earlier = if own.is_empty() {
            None
        } else {
            db::crisis_of_references(conn, &own).await?
        };
        let changes = matches!(a.message_type, MessageType::Update | MessageType::Cancel);
        if changes && earlier.is_none() && !foreign.is_empty() {
            if let Some((crisis_id, _)) = db::crisis_of_references(conn, &foreign).await? {
                return Ok(Decision {
                    refusal: Some(Rejection::new(
                        Reason::UntrustedSender,
                        format!(
                            "{} may not change crisis {crisis_id}: an Update or Cancel acts only when it \
                             comes from the sender of the alert it references",
                            a.sender
                        ),
                    )),
                    ..Decision::nothing(UNTRUSTED)
                });
            }
        }
        let cause = [a.sender.as_str(), a.identifier.as_str()];
        match (a.message_type, earlier) {
            (MessageType::Cancel, Some((crisis_id, rule_id))) => {
                let rule = self.rules.get(&rule_id);
                Ok(Decision {
                    refusal: None,
                    outcome: "cancelled",
                    rule: rule.map(|r| (r.id.clone(), r.version as i32)),
                    draft: Some(Draft {
                        kind: CommandKind::Close,
                        jti: command::command_id(CommandKind::Close, &cause),
                        crisis_id,
                        body: None,
                        scope: None,
                        note: Some(format!(
                            "CAP Cancel {} from {}: {}",
                            a.identifier,
                            a.sender,
                            a.note.as_deref().unwrap_or("no note")
                        )),
                        trigger: self.alert_trigger(a, rule, &BTreeMap::new()),
                        propose: false,
                    }),
                })
            }
            (MessageType::Cancel, None) => Ok(Decision::nothing("nothing_to_cancel")),
            (MessageType::Update, Some((crisis_id, rule_id))) => {
                let Some(rule) = self.rules.get(&rule_id) else {
                    return Ok(Decision::nothing("rule_withdrawn"));
                };
                if !trusted.may_trigger(&rule.id) {
                    return Ok(Decision::nothing("rule_not_permitted"));
                }
                let Some((severity, areas, shares)) =
                    self.evaluate(conn, rule, a, footprints).await?
                else {
                    return Ok(Decision {
                        refusal: None,
                        outcome: "update_below_rule",
                        rule: Some((rule.id.clone(), rule.version as i32)),
                        draft: None,
                    });
                };
                // An alert speaks only for what an alert knows: where, how
                // severe, when. The budget and response are the operators'
                // (a raise two of them approved must survive an Update), so
                // the command is a rescope, never an amendment.
                let def = rules::definition(rule, severity, areas, now.date_naive());
                Ok(Decision {
                    refusal: None,
                    outcome: "amended",
                    rule: Some((rule.id.clone(), rule.version as i32)),
                    draft: Some(Draft {
                        kind: CommandKind::Rescope,
                        jti: command::command_id(CommandKind::Rescope, &cause),
                        crisis_id,
                        body: None,
                        scope: Some(CrisisScope {
                            areas: def.areas,
                            severity: def.severity,
                            starts_on: def.starts_on,
                            ends_on: def.ends_on,
                        }),
                        note: Some(format!("CAP Update {} from {}", a.identifier, a.sender)),
                        trigger: self.alert_trigger(a, Some(rule), &shares),
                        propose: false,
                    }),
                })
            }
            (MessageType::Alert | MessageType::Update, _) => {
                if beyond_remit {
                    return Ok(Decision::nothing("outside_sender_areas"));
                }
                if ours.is_empty() {
                    return Ok(Decision::nothing("not_our_area"));
                }
                for rule in self
                    .rules
                    .rules
                    .iter()
                    .filter(|r| trusted.may_trigger(&r.id))
                {
                    let Some((severity, areas, shares)) =
                        self.evaluate(conn, rule, a, footprints).await?
                    else {
                        continue;
                    };
                    let propose = rule.mode == Mode::Propose;
                    return Ok(Decision {
                        refusal: None,
                        outcome: if propose { "proposed" } else { "declared" },
                        rule: Some((rule.id.clone(), rule.version as i32)),
                        draft: Some(Draft {
                            kind: CommandKind::Declare,
                            jti: command::command_id(CommandKind::Declare, &cause),
                            crisis_id: command::crisis_id(&cause),
                            body: Some(rules::definition(rule, severity, areas, now.date_naive())),
                            scope: None,
                            note: Some(format!(
                                "Rule {} v{} on CAP alert {} from {}",
                                rule.id, rule.version, a.identifier, a.sender
                            )),
                            trigger: self.alert_trigger(a, Some(rule), &shares),
                            propose,
                        }),
                    });
                }
                Ok(Decision::nothing("no_rule_met"))
            }
            (MessageType::Ack | MessageType::Error, _) => Ok(Decision::nothing("ignored")),
        }
    }

    /// Whether a CAP rule is met by the alert's info blocks: the matching
    /// blocks' areas, filtered by the rule's poverty condition, and the
    /// highest matching severity.
    async fn evaluate(
        &self,
        conn: &mut Tx,
        rule: &Rule,
        a: &Alert,
        footprints: &[BTreeSet<String>],
    ) -> Result<Option<(Severity, Vec<String>, BTreeMap<String, (i64, f64)>)>> {
        let Condition::Cap(c) = &rule.when else {
            return Ok(None);
        };
        let matching: Vec<usize> = (0..a.info.len())
            .filter(|i| rules::info_matches(c, &a.info[*i]))
            .collect();
        let areas: Vec<String> = matching
            .iter()
            .flat_map(|i| footprints[*i].iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if areas.is_empty() {
            return Ok(None);
        }
        let shares = db::poor_shares(conn, &areas, c.poverty_threshold).await?;
        let qualifying = rules::qualifying_areas(c, &shares);
        if qualifying.is_empty() {
            return Ok(None);
        }
        let severity = matching
            .iter()
            .map(|i| rules::severity_of(a.info[*i].severity))
            .max()
            .unwrap_or(Severity::Severe);
        Ok(Some((severity, qualifying, shares)))
    }

    fn alert_trigger(
        &self,
        a: &Alert,
        rule: Option<&Rule>,
        shares: &BTreeMap<String, (i64, f64)>,
    ) -> serde_json::Value {
        let c: Option<&CapCondition> = rule.and_then(|r| match &r.when {
            Condition::Cap(c) => Some(c),
            Condition::Indicator(_) => None,
        });
        json!({
            "kind": "cap_alert",
            "rule": rule.map(|r| json!({"id": r.id, "version": r.version, "mode": r.mode, "rule_book": self.rules.version})),
            "alert": {
                "sender": a.sender.as_str(), "identifier": a.identifier.as_str(), "sent": a.sent.to_string(),
                "status": format!("{:?}", a.status), "msg_type": format!("{:?}", a.message_type),
                "events": a.info.iter().map(|i| json!({
                    "language": i.language.as_str(), "event": i.event,
                    "severity": format!("{:?}", i.severity), "certainty": format!("{:?}", i.certainty),
                    "urgency": format!("{:?}", i.urgency),
                    "onset": i.onset.map(|t| t.to_string()), "expires": i.expires.map(|t| t.to_string()),
                })).collect::<Vec<_>>(),
            },
            "poverty": c.map(|c| json!({
                "threshold": c.poverty_threshold, "min_share": c.min_poor_share,
                "areas": shares.iter().map(|(k, (n, s))| (k.clone(), json!({"households": n, "poor_share": s}))).collect::<serde_json::Map<_, _>>(),
            })),
        })
    }
}

impl Handler for AlertsHandler {
    fn event_types(&self) -> &[&str] {
        &[ALERT_CAP, INDICATOR_READING]
    }

    async fn handle(&self, batch: &[Incoming]) -> Result<Vec<Verdict>> {
        let now = Utc::now();
        let mut out = Vec::with_capacity(batch.len());
        for m in batch {
            let v = if m.envelope.event_type == ALERT_CAP {
                self.alert(m, now).await
            } else {
                self.reading(m, now).await
            };
            out.push(match v {
                Err(Error::Database(sqlx::Error::Database(e))) if e.is_unique_violation() => {
                    // The same alert delivered twice raced; the other copy won.
                    Verdict::Done
                }
                other => other?,
            });
        }
        Ok(out)
    }
}
