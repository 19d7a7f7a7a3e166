//! The control service's consumer-loop handler: verify, check for replay,
//! run the state machine, and commit the crisis, the audit entry, the replay
//! guard and the outbox event in one transaction.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sumud_shared::areas::AreaCatalog;
use sumud_shared::db::{Store, Tx};
use sumud_shared::deadletter::Reason;
use sumud_shared::envelope::{Envelope, Rejection};
use sumud_shared::events::control::{
    CommandClaims, CommandKind, SignedCommand, CONTROL_COMMAND, OPERATORS_SUBJECT,
};
use sumud_shared::events::crisis::CrisisEvent;
use sumud_shared::kafka::consumer::{Handler, Incoming, Verdict};
use sumud_shared::outbox::{self, Pending};
use sumud_shared::playbook::PlaybookBook;
use sumud_shared::schema::SchemaRegistry;
use sumud_shared::{Error, Result};
use tokio::sync::Notify;
use tracing::info;

use crate::config::ControlConfig;
use crate::db::{self, AuditEntry};
use crate::lifecycle::{self, Policy, Role};
use crate::operators;
use crate::signing;

/// Applies signed commands.
pub struct ControlHandler {
    store: Store,
    config: ControlConfig,
    crisis_topic: String,
    wake: Arc<Notify>,
}

impl ControlHandler {
    /// A handler writing to `store` and publishing to `crisis_topic` through the outbox.
    pub fn new(
        store: Store,
        config: ControlConfig,
        crisis_topic: String,
        wake: Arc<Notify>,
    ) -> Self {
        ControlHandler {
            store,
            config,
            crisis_topic,
            wake,
        }
    }

    /// Whether `m` carries `kid`'s command `id`, already applied from its
    /// very position (key and id read from the JWS unverified, see
    /// `signing::claimed_command_id`: only a verified command is recorded
    /// as applied).
    async fn is_redelivery(&self, m: &Incoming, kid: &str, id: &str) -> Result<bool> {
        db::applied_from(&self.store, &position(m), kid, id).await
    }

    async fn one(&self, m: &Incoming, now: DateTime<Utc>) -> Result<Verdict> {
        // A redelivery of a message already applied (the group re-reads after
        // a crash or a broker restart) is acknowledged before any check that
        // time can change (expiry, revocation) could turn it into a dead letter.
        let signed: SignedCommand = match m.envelope.typed() {
            Ok(s) => s,
            Err(r) => return Ok(Verdict::Reject(r)),
        };
        // Key and command id, read once, unverified: they only find what
        // was recorded under a verified signature.
        let kid = signing::key_id(&signed.jws);
        if let (Ok(kid), Some(id)) = (&kid, signing::claimed_command_id(&signed.jws)) {
            if self.is_redelivery(m, kid, &id).await? {
                info!(topic = %m.topic, partition = m.partition, offset = m.offset, "Command redelivered; already applied.");
                return Ok(Verdict::Done);
            }
            if let Some(v) = self.judged_before(m, kid, &id).await? {
                return Ok(v);
            }
        }
        let kid = match kid {
            Ok(k) => k,
            Err(r) => return Ok(Verdict::Reject(r)),
        };
        let Some(key) = db::operator_key(&self.store, &kid).await? else {
            return Ok(reject(
                Reason::UnknownKey,
                format!("key {kid:?} is not registered"),
            ));
        };
        if key.revoked_at.is_some() {
            return Ok(reject(
                Reason::RevokedKey,
                format!("key {kid:?} was revoked"),
            ));
        }
        let claims = match signing::verify(&signed.jws, &key.public_key) {
            Ok(c) => c,
            Err(r) => return Ok(Verdict::Reject(r)),
        };
        let verdict = self.judge(m, &claims, &key, now).await?;
        if let Verdict::Reject(r) = &verdict {
            // Judged once: a refused command is kept so that it can never
            // take effect later (an approval refused while nothing was
            // pending, replayed once something is). Not kept: replays (the
            // id already took effect) and a wrong Kafka key (the key is not
            // signed: a copy of an operator's command on another partition
            // must not veto the original).
            // Nor a command that already took effect (a late copy refused
            // as expired is a replay, not a refusal of the command).
            if !matches!(r.reason, Reason::Replayed | Reason::KeyMismatch)
                && !db::was_applied(&self.store, &key.key_id, &claims.jti).await?
            {
                let refusal = db::Refusal {
                    claims: &claims,
                    principal: &key.principal,
                    key_id: &key.key_id,
                    rejection: r,
                };
                db::record_refusal(&self.store, &refusal, &position(m)).await?;
            }
        }
        Ok(verdict)
    }

    /// The verdict on a command already judged and refused: the same
    /// rejection again for a redelivery from the same position (its dead
    /// letter may not have gone out before a crash), `replayed` from any
    /// other. The key and id are read unverified: a refusal is recorded
    /// only under a key whose signature verified, so a forgery naming that
    /// key and id is refused either way, and one naming another key finds
    /// nothing here.
    async fn judged_before(&self, m: &Incoming, kid: &str, id: &str) -> Result<Option<Verdict>> {
        let Some((at, reason, detail)) = db::refusal_of(&self.store, kid, id).await? else {
            return Ok(None);
        };
        if at == position(m) {
            let reason = serde_json::from_value(serde_json::Value::String(reason))
                .unwrap_or(Reason::InvalidCommand);
            return Ok(Some(reject(reason, detail)));
        }
        Ok(Some(reject(
            Reason::Replayed,
            format!(
                "command {id} was refused at {}/{}/{} ({reason}); a command is judged once",
                at.topic, at.partition, at.offset
            ),
        )))
    }

    /// Judges a command whose signature verified.
    async fn judge(
        &self,
        m: &Incoming,
        claims: &CommandClaims,
        key: &db::OperatorKey,
        now: DateTime<Utc>,
    ) -> Result<Verdict> {
        // The key is the subject (the crisis, or `operators`): every
        // command on one subject shares a partition, so they are judged one
        // at a time and in order.
        if m.key.as_deref() != Some(claims.subject().as_bytes()) {
            return Ok(reject(
                Reason::KeyMismatch,
                format!(
                    "a {} command must be keyed by {:?}",
                    claims.cmd.as_str(),
                    claims.subject()
                ),
            ));
        }
        let age = now.timestamp().saturating_sub(claims.iat);
        if age > self.config.max_command_age_secs || age < -self.config.max_clock_skew_secs {
            return Ok(reject(
                Reason::Expired,
                format!(
                    "issued {age} s ago; commands are valid for {} s",
                    self.config.max_command_age_secs
                ),
            ));
        }
        if let Some(body) = &claims.body {
            if let Err(r) = lifecycle::validate(
                body,
                AreaCatalog::default_catalog(),
                PlaybookBook::default_book(),
            ) {
                return Ok(Verdict::Reject(r));
            }
            if self.config.threshold(&body.budget.currency).is_none() {
                return Ok(reject(
                    Reason::InvalidCommand,
                    format!(
                        "this deployment pays in {}; a budget in {} is not accepted \
                         (SUMUD_CURRENCY, SUMUD_OTHER_CURRENCIES)",
                        self.config.currencies().join(", "),
                        body.budget.currency
                    ),
                ));
            }
        }
        if claims.cmd.is_operator() {
            return self.transact_operator(m, claims, key).await;
        }
        if claims.crisis_id.is_empty() || claims.crisis_id == OPERATORS_SUBJECT {
            return Ok(reject(
                Reason::InvalidCommand,
                format!(
                    "{} needs a crisis id (other than the reserved {OPERATORS_SUBJECT:?})",
                    claims.cmd.as_str()
                ),
            ));
        }
        self.transact(m, claims, key, now).await
    }

    /// The verdict on a command id that already took effect: nothing for a
    /// redelivery from the very position it took effect from, `replayed`
    /// from anywhere else.
    async fn took_effect(
        &self,
        tx: &mut Tx,
        claims: &CommandClaims,
        key: &db::OperatorKey,
        at: &db::SourcePosition,
    ) -> Result<Option<Verdict>> {
        Ok(
            match db::command_seen(tx, &key.key_id, &claims.jti).await? {
                Some(Some(from)) if &from == at => Some(Verdict::Done),
                Some(from) => {
                    let from = from.map_or_else(
                        || "an earlier message".to_owned(),
                        |f| format!("{}/{}/{}", f.topic, f.partition, f.offset),
                    );
                    Some(reject(
                        Reason::Replayed,
                        format!("command {} was already applied from {from}", claims.jti),
                    ))
                }
                None => None,
            },
        )
    }

    /// Applies an admin's `operator.add` or `operator.revoke`: the key
    /// change, its record in `control.operator_changes` and the replay guard
    /// in one transaction.
    async fn transact_operator(
        &self,
        m: &Incoming,
        claims: &CommandClaims,
        key: &db::OperatorKey,
    ) -> Result<Verdict> {
        let change = match operators::judge(claims, &key.roles) {
            Ok(c) => c,
            Err(r) => return Ok(Verdict::Reject(r)),
        };
        let mut tx = self.store.begin().await?;
        db::lock_keys(&mut tx).await?;
        let at = position(m);
        if let Some(v) = self.took_effect(&mut tx, claims, key, &at).await? {
            return Ok(v);
        }
        let by = db::ChangedBy {
            kind: claims.cmd.as_str(),
            principal: &key.principal,
            key_id: Some(&key.key_id),
            command_id: Some(&claims.jti),
            note: claims.note.as_deref(),
        };
        let subject = match change {
            operators::Change::Add(new) => {
                if !db::register_operator(&mut tx, new, by).await? {
                    return Ok(reject(
                        Reason::InvalidTransition,
                        format!(
                            "key id {} is already registered; a key id is never reused and a \
                             revoked key stays revoked: register the new key under a new id",
                            new.key_id
                        ),
                    ));
                }
                new.key_id
            }
            operators::Change::Revoke(kid) => {
                let target = db::operator_key(&self.store, kid).await?;
                let is_admin = target
                    .as_ref()
                    .is_some_and(|t| t.revoked_at.is_none() && t.roles.contains(&Role::Admin));
                if is_admin && db::active_admins(&mut tx).await? <= 1 {
                    return Ok(reject(
                        Reason::InvalidTransition,
                        format!("{kid} is the last active admin key; add another admin first"),
                    ));
                }
                if !db::revoke_operator_in(&mut tx, kid, by).await? {
                    return Ok(reject(
                        Reason::InvalidTransition,
                        format!("there is no active key {kid} to revoke"),
                    ));
                }
                kid
            }
        };
        db::record_applied(&mut tx, &applied(claims, key), &at).await?;
        tx.commit().await?;
        info!(command = claims.cmd.as_str(), key = subject, by = %key.principal, "Operator command applied.");
        Ok(Verdict::Done)
    }

    async fn transact(
        &self,
        m: &Incoming,
        claims: &CommandClaims,
        key: &db::OperatorKey,
        _now: DateTime<Utc>,
    ) -> Result<Verdict> {
        let mut tx = self.store.begin().await?;
        let at = position(m);
        if let Some(v) = self.took_effect(&mut tx, claims, key, &at).await? {
            return Ok(v);
        }
        let current = db::crisis_for_update(&mut tx, &claims.crisis_id).await?;
        // The threshold of the currency the command's budget is in (a
        // minor unit of one currency is never compared with another's).
        let currency = claims
            .body
            .as_ref()
            .or(current.as_ref().map(|c| &c.definition))
            .map(|d| d.budget.currency.as_str());
        let policy = Policy {
            threshold_minor: currency
                .and_then(|c| self.config.threshold(c))
                .unwrap_or(self.config.four_eyes_threshold_minor),
            approvals_required: self.config.four_eyes_approvals,
        };
        let t = match lifecycle::apply(current.as_ref(), claims, &key.principal, &key.roles, policy)
        {
            Ok(t) => t,
            Err(r) => return Ok(Verdict::Reject(r)),
        };
        // A rescope's result is checked whole: a new severity or new areas
        // must still make a definition that pays something.
        if claims.cmd == CommandKind::Rescope {
            if let Err(r) = lifecycle::validate(
                &t.crisis.definition,
                AreaCatalog::default_catalog(),
                PlaybookBook::default_book(),
            ) {
                return Ok(Verdict::Reject(r));
            }
        }
        let trigger = if claims.cmd == CommandKind::Declare {
            claims.trigger.as_ref()
        } else {
            None
        };
        // The event this command would publish, checked against its
        // contract before anything is saved: what the signed claims carry
        // (an id, a title, overrides) is not schema-checked on the way in,
        // and an event downstream services must reject would leave control
        // holding a crisis no one else knows.
        let event = match t.event_type {
            Some(event_type) => {
                let data = CrisisEvent {
                    crisis_id: t.crisis.id.clone(),
                    state: t.crisis.state,
                    revision: t.crisis.revision,
                    definition: t.crisis.definition.clone(),
                    pending: t.crisis.pending.clone(),
                    proposal: t.crisis.proposal(),
                    superseded: t.superseded.clone(),
                    command_id: claims.jti.clone(),
                    signed_by: key.principal.clone(),
                    trigger: claims.trigger.clone(),
                };
                let value = serde_json::to_value(&data).expect("a crisis event serialises");
                if let Err(detail) = SchemaRegistry::global().validate_data(event_type, &value) {
                    return Ok(reject(
                        Reason::InvalidCommand,
                        format!("the crisis event it would publish breaks its contract: {detail}"),
                    ));
                }
                let mut event = Envelope::new(
                    "urn:sumud:control",
                    event_type,
                    Some(t.crisis.id.clone()),
                    data,
                );
                // Command ids are the signer's: the key keeps two keys'
                // commands under one id from sharing an event id.
                event.id = format!("{}:{}:{}", key.key_id, claims.jti, event_type);
                event.traceparent = sumud_shared::telemetry::continuing(m.traceparent.as_deref());
                // The attributes too (a long key id and command id make an
                // id past the CloudEvents limit), for the same reason.
                let whole = serde_json::to_value(&event).expect("an envelope serialises");
                if let Err(detail) = SchemaRegistry::global().validate_envelope(&whole) {
                    return Ok(reject(
                        Reason::InvalidCommand,
                        format!("the crisis event it would publish breaks its contract: {detail}"),
                    ));
                }
                Some(event)
            }
            None => None,
        };
        if !db::save_crisis(&mut tx, &t.crisis, trigger, current.is_none()).await? {
            return Ok(reject(
                Reason::InvalidTransition,
                format!(
                    "crisis {} was declared by another command at the same moment; the first declaration stands",
                    t.crisis.id
                ),
            ));
        }
        db::record(
            &mut tx,
            &AuditEntry {
                applied: applied(claims, key),
                revision: t.crisis.revision,
                from_state: t.from.map(|s| s.as_str()),
                to_state: t.crisis.state.as_str(),
                outcome: t.outcome,
                note: claims.note.as_deref(),
            },
            &at,
        )
        .await?;
        if let Some(event) = event {
            outbox::enqueue_tx(
                &mut tx,
                "control",
                vec![Pending::event(&self.crisis_topic, &t.crisis.id, &event)],
            )
            .await?;
        }
        tx.commit().await?;
        self.wake.notify_one();
        info!(crisis = %t.crisis.id, command = claims.cmd.as_str(), outcome = t.outcome, revision = t.crisis.revision, "Command applied.");
        Ok(Verdict::Done)
    }
}

/// The replay-guard record of a command signed with `key`.
fn applied<'a>(claims: &'a CommandClaims, key: &'a db::OperatorKey) -> db::Applied<'a> {
    db::Applied {
        command_id: &claims.jti,
        kind: claims.cmd.as_str(),
        subject: claims.subject(),
        principal: &key.principal,
        key_id: &key.key_id,
        issued_at: DateTime::from_timestamp(claims.iat, 0).unwrap_or_default(),
    }
}

fn position(m: &Incoming) -> db::SourcePosition {
    db::SourcePosition {
        topic: m.topic.clone(),
        partition: m.partition,
        offset: m.offset,
    }
}

fn reject(reason: Reason, detail: impl Into<String>) -> Verdict {
    Verdict::Reject(Rejection::new(reason, detail))
}

impl Handler for ControlHandler {
    fn event_types(&self) -> &[&str] {
        &[CONTROL_COMMAND]
    }

    async fn handle(&self, batch: &[Incoming]) -> Result<Vec<Verdict>> {
        let now = Utc::now();
        let mut out = Vec::with_capacity(batch.len());
        for m in batch {
            out.push(match self.one(m, now).await {
                Err(Error::Database(sqlx::Error::Database(e))) if e.is_unique_violation() => {
                    // Two deliveries of the same command raced; the other one
                    // won. The same message (a rebalance overlap) is no replay.
                    let claimed = m.envelope.typed::<SignedCommand>().ok().and_then(|s| {
                        Some((
                            signing::key_id(&s.jws).ok()?,
                            signing::claimed_command_id(&s.jws)?,
                        ))
                    });
                    let redelivered = match claimed {
                        Some((kid, id)) => self.is_redelivery(m, &kid, &id).await?,
                        None => false,
                    };
                    if redelivered {
                        Verdict::Done
                    } else {
                        reject(Reason::Replayed, "command was applied concurrently")
                    }
                }
                other => other?,
            });
        }
        Ok(out)
    }
}
