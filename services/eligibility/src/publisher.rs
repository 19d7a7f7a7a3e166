//! Publishes decisions to `sumud.entitlements.v1` and referrals to
//! `sumud.referrals.v1`. Both tables are their own outbox (see
//! `sumud_shared::outbox::TableOutbox`): every change bumps `change_seq`,
//! and rows whose published mark lags are published in change order,
//! marked only after the broker acknowledged. Each decision continues the
//! trace of the crisis event stored with its crisis.

use sumud_shared::db::Conn;
use sumud_shared::envelope::Envelope;
use sumud_shared::events::entitlement::{
    EntitlementDecision, EntitlementStatus, ExpansionKind, ENTITLEMENT_DECIDED,
};
use sumud_shared::money::Money;
use sumud_shared::outbox::{self, TableOutbox};
use sumud_shared::Result;

use crate::db::{self, EntitlementRow, Unpublished};

/// The decision publisher.
pub struct Decisions {
    /// Destination topic.
    pub topic: String,
}

/// Converts a stored row into its event (id = entitlement id @ change).
pub fn decision(row: &EntitlementRow) -> Envelope<EntitlementDecision> {
    let data = EntitlementDecision {
        entitlement_id: row.entitlement_id.clone(),
        crisis_id: row.crisis_id.clone(),
        crisis_revision: row.crisis_revision,
        household_id: row.household_id.clone(),
        kind: if row.kind == "vertical" {
            ExpansionKind::Vertical
        } else {
            ExpansionKind::Horizontal
        },
        status: match row.status.as_str() {
            "entitled" => EntitlementStatus::Entitled,
            "waitlisted" => EntitlementStatus::Waitlisted,
            _ => EntitlementStatus::Cancelled,
        },
        amount_per_tranche: Money {
            minor: row.amount_minor,
            currency: row.currency.clone(),
        },
        tranches: row.tranches as u32,
        interval_days: row.interval_days as u32,
        reason: row.reason.clone(),
        playbook: row.playbook.clone(),
        registry_version: row.registry_version,
    };
    let mut e = Envelope::new(
        "urn:sumud:eligibility",
        ENTITLEMENT_DECIDED,
        Some(row.household_id.clone()),
        data,
    );
    e.id = format!("{}@{}", row.entitlement_id, row.change_seq);
    e
}

impl TableOutbox for Decisions {
    type Row = EntitlementRow;

    fn lock_key(&self) -> i64 {
        0x5355_4d55_4445_4c31 // "SUMUDEL1"
    }

    async fn fetch(&self, conn: &mut Conn, limit: i64) -> Result<Vec<EntitlementRow>> {
        db::unpublished(conn, limit).await
    }

    fn message(&self, row: &EntitlementRow) -> (String, String, Vec<u8>) {
        (
            self.topic.clone(),
            row.household_id.clone(),
            decision(row).to_bytes(),
        )
    }

    async fn traceparents(
        &self,
        conn: &mut Conn,
        rows: &[EntitlementRow],
    ) -> Result<Vec<Option<String>>> {
        // The trace of the crisis event stored with the crisis.
        outbox::crisis_traceparents(conn, "eligibility", rows, |r| r.crisis_id.as_str()).await
    }

    async fn mark(&self, conn: &mut Conn, rows: &[EntitlementRow]) -> Result<()> {
        let ids: Vec<String> = rows.iter().map(|r| r.entitlement_id.clone()).collect();
        let seqs: Vec<i64> = rows.iter().map(|r| r.change_seq).collect();
        db::mark_published(conn, &ids, &seqs).await
    }
}

/// The referral publisher.
pub struct Referrals {
    /// Destination topic.
    pub topic: String,
}

impl TableOutbox for Referrals {
    type Row = Unpublished;

    fn lock_key(&self) -> i64 {
        0x5355_4d55_4452_4631 // "SUMUDRF1"
    }

    async fn fetch(&self, conn: &mut Conn, limit: i64) -> Result<Vec<Unpublished>> {
        db::unpublished_referrals(conn, limit).await
    }

    fn message(&self, row: &Unpublished) -> (String, String, Vec<u8>) {
        (
            self.topic.clone(),
            row.referral.referral_id.clone(),
            row.event().to_bytes(),
        )
    }

    async fn mark(&self, conn: &mut Conn, rows: &[Unpublished]) -> Result<()> {
        let ids: Vec<String> = rows
            .iter()
            .map(|r| r.referral.referral_id.clone())
            .collect();
        let seqs: Vec<i64> = rows.iter().map(|r| r.change_seq).collect();
        db::mark_referrals_published(conn, &ids, &seqs).await
    }
}
