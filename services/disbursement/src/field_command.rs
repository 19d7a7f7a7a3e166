//! A field team's signed command on the tasks topic, judged once: who may
//! write it (a registered, unrevoked field key, whose signature verifies),
//! that it concerns the task it is keyed by, that it is fresh and not a
//! replay, and then what it does — the same assignment or resolution
//! `sumud tasks` makes, recorded as made by the key's principal.
//!
//! The order of the checks, like control's for operator commands (the
//! opening is `sumud_shared::signed`'s, which partner records and referral
//! answers share): the signature first (a message nobody can attribute changes nothing and is
//! not recorded), then the same message read again (acknowledged without
//! effect, before expiry or revocation: it was judged when it was fresh),
//! then replay, key binding, revocation and age; every refusal after the
//! signature verified (but `replayed` and `key_mismatch`) is recorded, so
//! the command can never take effect later.

use chrono::Utc;
use sumud_shared::db::Store;
use sumud_shared::deadletter::Reason;
use sumud_shared::events::task::{SignedTaskCommand, TaskClaims, TaskCommandKind};
use sumud_shared::jws;
use sumud_shared::kafka::consumer::{Incoming, Verdict};
use sumud_shared::signed::{self, reject, Kind};
use sumud_shared::Result;
use tracing::{info, warn};

use crate::db::{self, Answer, Judged, Position};
use crate::field_task::{Destination, Outcome, Resolution};
use crate::grievance::{Channel as GrievanceChannel, Kind as GrievanceKind};

/// What a verified command asks for, checked for shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Assign the task to this worker or team.
    Assign(String),
    /// Resolve it so, with a note.
    Resolve(Resolution, String),
    /// File a grievance of this kind (the claims' `grievance`).
    FileGrievance(GrievanceKind),
}

/// The claims' request as an [`Action`], or why it is malformed
/// (`invalid_command`). Pure.
pub fn action(c: &TaskClaims) -> Result<Action, String> {
    match c.cmd {
        TaskCommandKind::FileGrievance => {
            let g = c
                .grievance
                .as_ref()
                .ok_or("grievance.file needs grievance {crisis_id, household_id, kind}")?;
            let kind = GrievanceKind::parse(&g.kind).ok_or_else(|| {
                format!(
                    "unknown grievance kind {:?}: not_included, wrong_amount or not_received",
                    g.kind
                )
            })?;
            Ok(Action::FileGrievance(kind))
        }
        TaskCommandKind::Assign => match c.assign_to.as_deref().map(str::trim) {
            Some(to) if !to.is_empty() && to.len() <= 128 => Ok(Action::Assign(to.to_owned())),
            _ => Err(
                "task.assign needs assign_to: the field worker or team (1 to 128 characters)"
                    .into(),
            ),
        },
        TaskCommandKind::Resolve => {
            let outcome = c.outcome.as_deref().and_then(Outcome::parse).ok_or(
                "task.resolve needs outcome: details_corrected, ineligible or unreachable",
            )?;
            let note = c.note.clone().unwrap_or_default();
            let resolution = match outcome {
                Outcome::DetailsCorrected => {
                    let d = c.destination.as_ref().ok_or(
                        "details_corrected needs destination {channel, provider, account_token}",
                    )?;
                    Resolution::DetailsCorrected(Destination::parse(
                        &d.channel,
                        &d.provider,
                        &d.account_token,
                    )?)
                }
                Outcome::Ineligible => Resolution::Ineligible,
                Outcome::Unreachable => Resolution::Unreachable,
            };
            if c.destination.is_some() && outcome != Outcome::DetailsCorrected {
                return Err(format!(
                    "a destination goes only with details_corrected, not {outcome}"
                ));
            }
            Ok(Action::Resolve(resolution, note))
        }
    }
}

/// The settings a judgement needs.
pub struct Judge<'a> {
    /// The record of truth.
    pub store: &'a Store,
    /// The tasks topic (where task events are announced).
    pub topic: &'a str,
    /// Oldest accepted `iat`, seconds.
    pub max_age_secs: i64,
    /// Deadline of a re-issued payment, seconds.
    pub deadline_secs: i64,
}

impl Judge<'_> {
    /// Judges one task command.
    pub async fn judge(&self, m: &Incoming) -> Result<Verdict> {
        let signed: SignedTaskCommand = match m.envelope.typed() {
            Ok(s) => s,
            Err(rej) => return Ok(Verdict::Reject(rej)),
        };
        let kind = Kind {
            label: "the task command",
            noun: "task command",
            keys: "field",
            list: "sumud tasks keys list",
        };
        let store = self.store;
        let opened = signed::open(
            m,
            &signed.jws,
            &kind,
            |c: &TaskClaims| c.jti.as_str(),
            |kid| async move { db::field_key(store, &kid).await },
            |kid, jti| async move {
                Ok(db::task_command_judged(store, &kid, &jti)
                    .await?
                    .map(|(p, refused)| {
                        let at = (p.source_topic, p.source_partition, p.source_offset);
                        (at, refused)
                    }))
            },
        )
        .await?;
        let (key, claims, at) = match opened {
            Ok(o) => (o.key, o.claims, o.at),
            Err(settled) => return Ok(settled),
        };
        let at = Position {
            source_topic: at.0,
            source_partition: at.1,
            source_offset: at.2,
        };
        let keyed = String::from_utf8_lossy(m.key.as_deref().unwrap_or_default());
        let bound = match (&claims.cmd, &claims.grievance) {
            (TaskCommandKind::FileGrievance, Some(g)) => g.household_id.clone(),
            _ => claims.task_id.to_string(),
        };
        if keyed != bound {
            return Ok(reject(
                Reason::KeyMismatch,
                format!(
                    "the Kafka key must be {bound} (the task id, or the household of a grievance), not {keyed:?}"
                ),
            ));
        }
        let judged = |refused| Judged {
            jti: &claims.jti,
            kid: &key.kid,
            principal: &key.principal,
            cmd: claims.cmd.as_str(),
            subject: &bound,
            at: at.clone(),
            refused,
        };
        let refusal = if key.revoked {
            Some((
                Reason::RevokedKey,
                format!("field key {} was revoked", key.kid),
            ))
        } else {
            jws::stale(claims.iat, Utc::now(), self.max_age_secs, "commands")
                .map(|why| (Reason::Expired, why))
        };
        let action = match (refusal, action(&claims)) {
            (Some(r), _) => Err(r),
            (None, Err(why)) => Err((Reason::InvalidCommand, why)),
            (None, Ok(a)) => Ok(a),
        };
        let action = match action {
            Ok(a) => a,
            Err((reason, why)) => {
                return self
                    .refuse(judged(Some((reason.code(), &why))), reason, &why)
                    .await
            }
        };
        // The change and the record of the command commit together: a
        // crash between them cannot apply it without recording it, nor
        // record it without applying it.
        let mut tx = self.store.begin().await?;
        db::record_task_command(&mut tx, &judged(None)).await?;
        let answer = match &action {
            Action::FileGrievance(kind) => {
                let g = claims.grievance.as_ref().expect("checked by action()");
                let complaint = db::Complaint {
                    crisis: &g.crisis_id,
                    household: &g.household_id,
                    kind: *kind,
                    channel: GrievanceChannel::Field,
                    filed_by: &key.principal,
                    instruction: g.instruction_id.as_deref(),
                    note: claims.note.as_deref().unwrap_or_default(),
                };
                match db::file_grievance_in(&mut tx, &complaint).await? {
                    db::Filed::New(_) => Answer::Changed { reissued: None },
                    db::Filed::AlreadyOpen(_) => Answer::Unchanged,
                    db::Filed::Refused(why) => {
                        drop(tx);
                        return self
                            .refuse(
                                judged(Some((Reason::InvalidCommand.code(), &why))),
                                Reason::InvalidCommand,
                                &why,
                            )
                            .await;
                    }
                }
            }
            Action::Assign(to) => db::assign_in(&mut tx, self.topic, claims.task_id, to).await?,
            Action::Resolve(resolution, note) => {
                db::resolve_in(
                    &mut tx,
                    self.topic,
                    claims.task_id,
                    &key.principal,
                    note,
                    resolution,
                    self.deadline_secs,
                )
                .await?
            }
        };
        match answer {
            Answer::Refused(why) => {
                drop(tx);
                self.refuse(
                    judged(Some((Reason::InvalidTransition.code(), &why))),
                    Reason::InvalidTransition,
                    &why,
                )
                .await
            }
            Answer::Changed { .. } | Answer::Unchanged => {
                tx.commit().await?;
                info!(
                    subject = %bound,
                    cmd = claims.cmd.as_str(),
                    principal = %key.principal,
                    changed = matches!(answer, Answer::Changed { .. }),
                    "Field command applied."
                );
                Ok(Verdict::Done)
            }
        }
    }

    /// Records a refusal, so the command never takes effect later, and
    /// dead-letters it.
    async fn refuse(&self, j: Judged<'_>, reason: Reason, why: &str) -> Result<Verdict> {
        let mut tx = self.store.begin().await?;
        db::record_task_command(&mut tx, &j).await?;
        tx.commit().await?;
        warn!(
            subject = j.subject,
            cmd = j.cmd,
            reason = reason.code(),
            "Field command refused."
        );
        Ok(reject(reason, why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sumud_shared::events::task::CorrectedDestination;

    fn claims(cmd: TaskCommandKind) -> TaskClaims {
        TaskClaims {
            jti: "c1".into(),
            iat: 0,
            cmd,
            task_id: 7,
            grievance: None,
            assign_to: None,
            outcome: None,
            destination: None,
            note: None,
        }
    }

    #[test]
    fn an_assignment_without_a_worker_is_malformed() {
        assert!(action(&claims(TaskCommandKind::Assign)).is_err());
        let mut c = claims(TaskCommandKind::Assign);
        c.assign_to = Some("  ".into());
        assert!(action(&c).is_err());
        c.assign_to = Some("team-irbid-1".into());
        assert_eq!(action(&c), Ok(Action::Assign("team-irbid-1".into())));
    }

    #[test]
    fn a_resolution_needs_a_known_outcome_and_a_destination_only_when_corrected() {
        let mut c = claims(TaskCommandKind::Resolve);
        assert!(action(&c).is_err());
        c.outcome = Some("paid".into());
        assert!(action(&c).is_err());
        c.outcome = Some("details_corrected".into());
        assert!(action(&c).is_err(), "no destination");
        let d = CorrectedDestination {
            channel: "e_wallet".into(),
            provider: "wallet-a".into(),
            account_token: "tok_abcdefgh12".into(),
        };
        c.destination = Some(d.clone());
        assert!(matches!(
            action(&c),
            Ok(Action::Resolve(Resolution::DetailsCorrected(_), _))
        ));
        c.destination = Some(CorrectedDestination {
            account_token: "0791234567".into(),
            ..d.clone()
        });
        assert!(action(&c).is_err(), "a phone number is not a token");
        c.outcome = Some("unreachable".into());
        c.destination = Some(d);
        assert!(action(&c).is_err(), "a destination with unreachable");
        c.destination = None;
        assert_eq!(
            action(&c),
            Ok(Action::Resolve(Resolution::Unreachable, String::new()))
        );
    }

    /// A command signed outside Sumud, by Node.js's own `crypto` (Ed25519,
    /// compact JWS built by hand as docs/field-teams.md shows), is heard
    /// with the key's public `x`, and a changed byte is not.
    #[test]
    fn a_command_signed_by_node_crypto_as_the_contract_shows_is_heard() {
        const X: &str = "3aimju3cJbkklyp6dvhEKdQh5iQPGNIeG5N9McEqdOs";
        const JWS: &str = "eyJhbGciOiJFZERTQSIsImtpZCI6ImZpZWxkLWFtbWFuLTEifQ.eyJqdGkiOiJub2RlLTdmM2EiLCJpYXQiOjE3OTY2Mzc2MDAsImNtZCI6InRhc2sucmVzb2x2ZSIsInRhc2tfaWQiOjE3LCJvdXRjb21lIjoiZGV0YWlsc19jb3JyZWN0ZWQiLCJkZXN0aW5hdGlvbiI6eyJjaGFubmVsIjoiZV93YWxsZXQiLCJwcm92aWRlciI6IndhbGxldC1hIiwiYWNjb3VudF90b2tlbiI6InRva19ub2RlX2NvcnJlY3RlZF8wMSJ9LCJub3RlIjoibmV3IHdhbGxldCBvcGVuZWQgYXQgdGhlIGFnZW50In0.KaW6SmPctU1gmvch-0K4nZu0I9HhHTkT704FEskyP0BUuK6aE9kAqGv8as9-ZX1AP9xET9ekID9n-LnI_LpHAg";
        assert_eq!(
            jws::key_id(JWS, "the task command").unwrap(),
            "field-amman-1"
        );
        let c: TaskClaims = jws::verify(JWS, X, Reason::InvalidCommand).unwrap();
        assert_eq!(
            (c.jti.as_str(), c.task_id, c.iat),
            ("node-7f3a", 17, 1_796_637_600)
        );
        let Ok(Action::Resolve(Resolution::DetailsCorrected(d), note)) = action(&c) else {
            panic!("a corrected destination: {c:?}");
        };
        assert_eq!(
            (d.provider.as_str(), d.account_token.as_str(), note.as_str()),
            (
                "wallet-a",
                "tok_node_corrected_01",
                "new wallet opened at the agent"
            )
        );
        let mut tampered = JWS.to_owned();
        tampered.replace_range(60..61, if &JWS[60..61] == "A" { "B" } else { "A" });
        assert!(jws::verify::<TaskClaims>(&tampered, X, Reason::InvalidCommand).is_err());
    }

    #[test]
    fn a_grievance_needs_its_complaint_of_a_known_kind() {
        let mut c = claims(TaskCommandKind::FileGrievance);
        assert!(action(&c).is_err(), "no grievance");
        let g = sumud_shared::events::task::FieldGrievance {
            crisis_id: "FL-1".into(),
            household_id: "HH-1".into(),
            kind: "late".into(),
            instruction_id: None,
        };
        c.grievance = Some(g.clone());
        assert!(action(&c).is_err(), "unknown kind");
        c.grievance = Some(sumud_shared::events::task::FieldGrievance {
            kind: "not_received".into(),
            ..g
        });
        assert_eq!(
            action(&c),
            Ok(Action::FileGrievance(GrievanceKind::NotReceived))
        );
    }
}
