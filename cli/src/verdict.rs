//! What control made of a command the CLI published: applied (the crisis's
//! state and revision after it) or refused (the dead-letter reason), read
//! from control's records of every judged command. `sumud crisis
//! declare|amend|approve|close` wait for it by default, so an operator
//! learns what happened, not only that a message left, and scripts can
//! tell the outcomes apart by exit code.

use std::time::{Duration, Instant};

use serde::Serialize;
use sumud_shared::db::Store;
use sumud_shared::on_store;

/// The CLI's exit codes, documented in docs/operations.md.
pub mod exit {
    /// Done: the command was applied (or the report is clean).
    pub const OK: i32 = 0;
    /// The command could not run, or no verdict came in time.
    pub const ERROR: i32 = 1;
    /// The command line was wrong (clap's own exit code).
    pub const USAGE: i32 = 2;
    /// Control refused the command, or reconcile found discrepancies.
    pub const REFUSED: i32 = 3;
}

/// Control's verdict on one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// It took effect.
    Applied {
        /// The crisis.
        crisis_id: String,
        /// Its revision after the command.
        revision: i32,
        /// Its state after the command (`proposed`, `active`, `closed`).
        state: String,
        /// What the command did, as the audit trail records it.
        outcome: String,
    },
    /// It was refused; it can never take effect later.
    Refused {
        /// The dead-letter reason code.
        reason: String,
        /// What was wrong.
        detail: String,
    },
}

impl Verdict {
    /// The exit code an operator's script sees.
    pub fn exit_code(&self) -> i32 {
        match self {
            Verdict::Applied { .. } => exit::OK,
            Verdict::Refused { .. } => exit::REFUSED,
        }
    }

    /// One line for the operator.
    pub fn line(&self, what: &str) -> String {
        match self {
            Verdict::Applied {
                crisis_id,
                revision,
                state,
                outcome,
            } => format!(
                "{what} applied: {crisis_id} is {state} at revision {revision} ({outcome})."
            ),
            Verdict::Refused { reason, detail } => {
                format!("{what} refused by control: {reason}: {detail}")
            }
        }
    }
}

/// Control's verdict on the command `command_id` signed with `key_id`, if
/// it has judged it. Command ids are the signer's: another key's command
/// under the same id (ids are on the topic for anyone to copy) is not this
/// one.
pub async fn verdict(
    store: &Store,
    key_id: &str,
    command_id: &str,
) -> anyhow::Result<Option<Verdict>> {
    const APPLIED: &str = "SELECT crisis_id, revision, to_state, outcome FROM control.audit \
                           WHERE command_id = $1 AND key_id = $2 ORDER BY seq DESC LIMIT 1";
    const REFUSED: &str = "SELECT reason, detail FROM control.rejected_commands \
                           WHERE command_id = $1 AND key_id = $2";
    let applied: Option<(String, i32, String, String)> = on_store!(store, pool => sqlx::query_as(APPLIED).bind(command_id).bind(key_id).fetch_optional(pool).await)?;
    if let Some((crisis_id, revision, state, outcome)) = applied {
        return Ok(Some(Verdict::Applied {
            crisis_id,
            revision,
            state,
            outcome,
        }));
    }
    let refused: Option<(String, String)> = on_store!(store, pool => sqlx::query_as(REFUSED).bind(command_id).bind(key_id).fetch_optional(pool).await)?;
    Ok(refused.map(|(reason, detail)| Verdict::Refused { reason, detail }))
}

/// Waits up to `within` for control's verdict on `key_id`'s command
/// `command_id`; an error that says what to check when none comes.
pub async fn wait(
    store: &Store,
    key_id: &str,
    command_id: &str,
    within: Duration,
) -> anyhow::Result<Verdict> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = verdict(store, key_id, command_id).await? {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "no verdict on command {command_id} within {} s: control may not be running \
                 (its /readyz), or it refused the command before its signature verified \
                 (unsigned, unknown_key, bad_signature, key_mismatch are not recorded): \
                 see `sumud deadletter list`",
                within.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_exits_3_and_names_its_reason() {
        let v = Verdict::Refused {
            reason: "wrong_role".into(),
            detail: "close needs the close role".into(),
        };
        assert_eq!(v.exit_code(), 3);
        assert_eq!(
            v.line("crisis.close FL-1"),
            "crisis.close FL-1 refused by control: wrong_role: close needs the close role"
        );
        let a = Verdict::Applied {
            crisis_id: "FL-1".into(),
            revision: 1,
            state: "active".into(),
            outcome: "declared".into(),
        };
        assert_eq!(a.exit_code(), 0);
    }
}
