//! Publishes instruction attempts to `sumud.payments.instructions.v1`. The
//! instructions table is its own transactional outbox: the row is written in
//! the transaction that reserves its amount, and every new attempt bumps its
//! change counter. Keyed by beneficiary reference, so one household's
//! instructions stay in order on one partition.

use sumud_shared::db::Conn;
use sumud_shared::envelope::Envelope;
use sumud_shared::events::household::Channel;
use sumud_shared::events::payment::{Instruction, INSTRUCTION_ISSUED};
use sumud_shared::outbox::{self, TableOutbox};
use sumud_shared::Result;

use crate::db::{self, InstructionRow};

/// The instruction publisher.
pub struct Instructions {
    /// Destination topic.
    pub topic: String,
}

/// The event of one attempt; its id is (instruction, attempt), so a
/// republished attempt is recognisably the same message.
pub fn instruction_event(row: &InstructionRow) -> Envelope<Instruction> {
    let data = Instruction {
        reference_id: row.instruction_id.clone(),
        attempt: row.attempt as u32,
        crisis_id: row.crisis_id.clone(),
        crisis_revision: row.crisis_revision,
        beneficiary_ref: row.beneficiary_ref.clone(),
        payee_fa: format!("{}@{}", row.account_token, row.provider),
        amount: row.amount_minor,
        currency_code: row.currency.clone(),
        channel: Channel::parse(&row.channel).unwrap_or(Channel::EWallet),
        provider: row.provider.clone(),
        tranche: row.tranche as u32,
        scheduled_timestamp: row.scheduled_at,
        purpose: "crisis-cash-transfer".into(),
        note: if row.part == 0 {
            format!("{} tranche {}", row.crisis_id, row.tranche)
        } else {
            format!(
                "{} tranche {} top-up {} (revision {})",
                row.crisis_id, row.tranche, row.part, row.crisis_revision
            )
        },
    };
    let mut e = Envelope::new(
        "urn:sumud:disbursement",
        INSTRUCTION_ISSUED,
        Some(row.instruction_id.clone()),
        data,
    );
    e.id = format!("{}#{}", row.instruction_id, row.attempt);
    e
}

impl TableOutbox for Instructions {
    type Row = InstructionRow;

    const PIPELINED: bool = true;

    fn lock_key(&self) -> i64 {
        0x5355_4d55_4449_5331 // "SUMUDIS1"
    }

    async fn fetch(&self, conn: &mut Conn, limit: i64) -> Result<Vec<InstructionRow>> {
        db::unpublished(conn, limit).await
    }

    fn change_seq(&self, row: &InstructionRow) -> i64 {
        row.change_seq
    }

    async fn fetch_after(
        &self,
        conn: &mut Conn,
        after: i64,
        limit: i64,
    ) -> Result<Vec<InstructionRow>> {
        db::unpublished_after(conn, after, limit).await
    }

    async fn mark_seqs(&self, conn: &mut Conn, seqs: &[i64]) -> Result<()> {
        db::mark_published_seqs(conn, seqs).await
    }

    fn message(&self, row: &InstructionRow) -> (String, String, Vec<u8>) {
        (
            self.topic.clone(),
            row.beneficiary_ref.clone(),
            instruction_event(row).to_bytes(),
        )
    }

    async fn traceparents(
        &self,
        conn: &mut Conn,
        rows: &[InstructionRow],
    ) -> Result<Vec<Option<String>>> {
        // The trace of the crisis event stored with the crisis.
        outbox::crisis_traceparents(conn, "disbursement", rows, |r| r.crisis_id.as_str()).await
    }

    async fn mark(&self, conn: &mut Conn, rows: &[InstructionRow]) -> Result<()> {
        let ids: Vec<String> = rows.iter().map(|r| r.instruction_id.clone()).collect();
        let seqs: Vec<i64> = rows.iter().map(|r| r.change_seq).collect();
        db::mark_published(conn, &ids, &seqs).await
    }
}
