//! Who may report on an instruction: the provider that holds it, registered
//! and not revoked, and — when it registered a key — only with a valid JWS
//! of the very report it sends. Pure: the handler looks the provider up and
//! asks here; a refusal is dead-lettered with its code and changes nothing.

use sumud_shared::deadletter::Reason;
use sumud_shared::envelope::Rejection;
use sumud_shared::events::payment::StatusReport;

use crate::db::Provider;

/// Whether `report`, about an instruction held by `holder`, may act, given
/// what the registry says of the reporting provider.
pub fn may_report(
    holder: &str,
    registered: Option<&Provider>,
    report: &StatusReport,
) -> Result<(), Rejection> {
    // Under the documented ACLs every provider writes the one status
    // topic: only the holder may move its instruction.
    if report.provider != holder {
        return Err(Rejection::new(
            Reason::WrongProvider,
            format!(
                "{} is held by another provider; a report from {:?} changes nothing",
                report.reference_id, report.provider
            ),
        ));
    }
    let Some(p) = registered else {
        return Err(Rejection::new(
            Reason::UnknownProvider,
            format!(
                "provider {:?} is not registered (sumud providers add)",
                report.provider
            ),
        ));
    };
    if p.revoked {
        return Err(Rejection::new(
            Reason::RevokedKey,
            format!("provider {:?} was revoked", p.provider_id),
        ));
    }
    let (Some(kid), Some(x)) = (&p.kid, &p.public_x) else {
        // Registered without a key: bound to the instruction it holds only.
        return Ok(());
    };
    let jws = report.signature.as_deref().unwrap_or_default();
    let named = sumud_shared::jws::key_id(jws, "the report")?;
    if &named != kid {
        return Err(Rejection::new(
            Reason::UnknownKey,
            format!(
                "the report is signed with key {named:?}, not provider {:?}'s registered key",
                p.provider_id
            ),
        ));
    }
    let signed: StatusReport = sumud_shared::jws::verify(jws, x, Reason::BadSignature)?;
    if signed != report.unsigned() {
        return Err(Rejection::new(
            Reason::BadSignature,
            "the signed report differs from the report sent",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use sumud_shared::events::payment::PaymentStatus;
    use sumud_shared::jws::Jwk;

    fn report(provider: &str) -> StatusReport {
        StatusReport {
            reference_id: "ref-00000001".into(),
            attempt: 1,
            provider: provider.into(),
            status: PaymentStatus::Succeeded,
            reason_code: None,
            provider_ref: Some("P-1".into()),
            timestamp: Utc::now(),
            signature: None,
        }
    }

    fn keyed(key: &Jwk) -> Provider {
        Provider {
            provider_id: "wallet-a".into(),
            kid: Some(key.kid.clone()),
            public_x: Some(key.x.clone()),
            revoked: false,
        }
    }

    fn signed(mut r: StatusReport, key: &Jwk) -> StatusReport {
        r.signature = Some(sumud_shared::jws::sign(&r.unsigned(), key).unwrap());
        r
    }

    fn refused(r: Result<(), Rejection>) -> Reason {
        r.unwrap_err().reason
    }

    #[test]
    fn a_keyed_provider_is_heard_only_with_a_valid_signature_of_the_report() {
        let key = Jwk::generate("wallet-a-1");
        let p = keyed(&key);
        assert!(may_report("wallet-a", Some(&p), &signed(report("wallet-a"), &key)).is_ok());
        assert_eq!(
            refused(may_report("wallet-a", Some(&p), &report("wallet-a"))),
            Reason::Unsigned
        );
        let other = Jwk::generate("wallet-a-1");
        assert_eq!(
            refused(may_report(
                "wallet-a",
                Some(&p),
                &signed(report("wallet-a"), &other)
            )),
            Reason::BadSignature
        );
        let mut altered = signed(report("wallet-a"), &key);
        altered.provider_ref = Some("P-2".into());
        assert_eq!(
            refused(may_report("wallet-a", Some(&p), &altered)),
            Reason::BadSignature
        );
        let stranger = Jwk::generate("someone-else");
        assert_eq!(
            refused(may_report(
                "wallet-a",
                Some(&p),
                &signed(report("wallet-a"), &stranger)
            )),
            Reason::UnknownKey
        );
    }

    /// A report signed by a third-party JOSE library (PyJWT 2.15.1 with
    /// `cryptography`, the worked example of docs/contracts.md, "Signing a
    /// status report"), not by this code: a stranger's provider that follows
    /// the contract is heard.
    #[test]
    fn a_report_signed_by_pyjwt_as_the_contract_shows_is_heard() {
        let data = r#"{"reference_id": "b002d21e-af6e-5865-99d5-60a47de78ea8", "attempt": 1,
            "provider": "wallet-a", "status": "succeeded", "provider_ref": "TX-20261206-0001",
            "timestamp": "2026-12-06T10:00:00Z",
            "signature": "eyJhbGciOiJFZERTQSIsImtpZCI6IndhbGxldC1hLTEiLCJ0eXAiOiJKV1QifQ.eyJyZWZlcmVuY2VfaWQiOiJiMDAyZDIxZS1hZjZlLTU4NjUtOTlkNS02MGE0N2RlNzhlYTgiLCJhdHRlbXB0IjoxLCJwcm92aWRlciI6IndhbGxldC1hIiwic3RhdHVzIjoic3VjY2VlZGVkIiwicHJvdmlkZXJfcmVmIjoiVFgtMjAyNjEyMDYtMDAwMSIsInRpbWVzdGFtcCI6IjIwMjYtMTItMDZUMTA6MDA6MDBaIn0.sskNXvYBN_TBaaoyXeerWgwfL3JhlGrhzDyMgAJvNBA7sbLhy3P2mmcNmTSLWNXpG849IM1JBwHt2W-4YPtcAg"}"#;
        let report: StatusReport = serde_json::from_str(data).unwrap();
        let p = Provider {
            provider_id: "wallet-a".into(),
            kid: Some("wallet-a-1".into()),
            public_x: Some("Z9pqn2BJLDPeT_dWQNU73-SnFGFq1YAOFGXiptdnaF4".into()),
            revoked: false,
        };
        assert!(may_report("wallet-a", Some(&p), &report).is_ok());
        let mut changed = report.clone();
        changed.attempt = 2;
        assert_eq!(
            refused(may_report("wallet-a", Some(&p), &changed)),
            Reason::BadSignature
        );
    }

    #[test]
    fn only_the_registered_holder_may_report() {
        let key = Jwk::generate("wallet-a-1");
        let p = keyed(&key);
        let from_b = signed(report("wallet-b"), &key);
        assert_eq!(
            refused(may_report("wallet-a", Some(&p), &from_b)),
            Reason::WrongProvider
        );
        assert_eq!(
            refused(may_report("wallet-a", None, &report("wallet-a"))),
            Reason::UnknownProvider
        );
        let revoked = Provider { revoked: true, ..p };
        assert_eq!(
            refused(may_report(
                "wallet-a",
                Some(&revoked),
                &signed(report("wallet-a"), &key)
            )),
            Reason::RevokedKey
        );
        let keyless = Provider {
            kid: None,
            public_x: None,
            revoked: false,
            provider_id: "wallet-a".into(),
        };
        assert!(may_report("wallet-a", Some(&keyless), &report("wallet-a")).is_ok());
    }
}
