//! Operator commands, judged purely: who may register or revoke an operator
//! key (an admin), and whether the key named is well formed. What the
//! database already holds (an id used before, the last admin) is the
//! handler's to check in the same transaction that writes.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sumud_shared::deadletter::Reason;
use sumud_shared::envelope::Rejection;
use sumud_shared::events::control::{CommandClaims, CommandKind};

use crate::db::NewOperator;
use crate::lifecycle::Role;

/// What an accepted operator command changes.
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    /// Register this key.
    Add(NewOperator<'a>),
    /// Revoke the key with this id.
    Revoke(&'a str),
}

const ROLES: [&str; 4] = ["declare", "approve", "close", "admin"];

fn refuse(reason: Reason, detail: impl Into<String>) -> Rejection {
    Rejection::new(reason, detail)
}

/// Judges an `operator.*` command signed by a key holding `roles`.
pub fn judge<'a>(claims: &'a CommandClaims, roles: &[Role]) -> Result<Change<'a>, Rejection> {
    if !roles.contains(&Role::Admin) {
        return Err(refuse(
            Reason::WrongRole,
            format!("{} needs the Admin role", claims.cmd.as_str()),
        ));
    }
    if !claims.crisis_id.is_empty() {
        return Err(refuse(
            Reason::InvalidCommand,
            "an operator command names no crisis",
        ));
    }
    let Some(op) = &claims.operator else {
        return Err(refuse(
            Reason::InvalidCommand,
            format!("{} needs an operator", claims.cmd.as_str()),
        ));
    };
    let id_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    if !id_ok(&op.kid) {
        return Err(refuse(
            Reason::InvalidCommand,
            "a key id is 1–64 letters, digits, '.', '_' or '-'",
        ));
    }
    match claims.cmd {
        CommandKind::OperatorRevoke => Ok(Change::Revoke(&op.kid)),
        CommandKind::OperatorAdd => {
            if op.principal.trim().is_empty() || op.principal.len() > 200 {
                return Err(refuse(
                    Reason::InvalidCommand,
                    "an operator key needs a principal (at most 200 bytes)",
                ));
            }
            if op.roles.is_empty() || op.roles.iter().any(|r| !ROLES.contains(&r.as_str())) {
                return Err(refuse(
                    Reason::InvalidCommand,
                    format!("roles must be some of {}", ROLES.join(", ")),
                ));
            }
            let point = URL_SAFE_NO_PAD
                .decode(&op.x)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .and_then(|b| ed25519_dalek::VerifyingKey::from_bytes(&b).ok());
            if point.is_none() {
                return Err(refuse(
                    Reason::InvalidCommand,
                    "x is not an Ed25519 public key (32 bytes, base64url)",
                ));
            }
            Ok(Change::Add(NewOperator {
                key_id: &op.kid,
                principal: &op.principal,
                public_key: &op.x,
                roles: &op.roles,
            }))
        }
        other => Err(refuse(
            Reason::InvalidCommand,
            format!("{} is not an operator command", other.as_str()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sumud_shared::events::control::OperatorGrant;
    use sumud_shared::jws::Jwk;

    fn add(x: &str, roles: &[&str]) -> CommandClaims {
        CommandClaims {
            jti: "j".into(),
            iat: 0,
            cmd: CommandKind::OperatorAdd,
            crisis_id: String::new(),
            body: None,
            note: None,
            trigger: None,
            approves: None,
            scope: None,
            operator: Some(OperatorGrant {
                kid: "carol-1".into(),
                principal: "carol".into(),
                x: x.into(),
                roles: roles.iter().map(|r| r.to_string()).collect(),
            }),
            propose: false,
        }
    }

    #[test]
    fn only_an_admin_manages_operators() {
        let x = Jwk::generate("k").x;
        let cmd = add(&x, &["approve"]);
        let r = judge(&cmd, &[Role::Declare, Role::Approve, Role::Close]);
        assert_eq!(r.unwrap_err().reason, Reason::WrongRole);
        assert!(matches!(judge(&cmd, &[Role::Admin]), Ok(Change::Add(_))));
    }

    #[test]
    fn a_malformed_key_or_role_is_refused() {
        let x = Jwk::generate("k").x;
        for bad in [
            add("not-a-key", &["approve"]),
            add(&x, &["root"]),
            add(&x, &[]),
        ] {
            assert_eq!(
                judge(&bad, &[Role::Admin]).unwrap_err().reason,
                Reason::InvalidCommand
            );
        }
        let mut on_crisis = add(&x, &["approve"]);
        on_crisis.crisis_id = "FL-1".into();
        assert_eq!(
            judge(&on_crisis, &[Role::Admin]).unwrap_err().reason,
            Reason::InvalidCommand
        );
    }
}
