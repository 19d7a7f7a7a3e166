//! The instruction event: what one payment attempt looks like on
//! `sumud.payments.instructions.v1` (`schemas/payment.instruction.v1.json`).
//! [`instruction_event`] builds it through serde; [`Renderer`] writes the
//! same bytes fast for the hundreds of thousands a pass publishes, and a
//! unit test holds the two equal byte for byte. The relay that publishes
//! them is `publisher.rs`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sumud_shared::envelope::{Envelope, SPEC_VERSION};
use sumud_shared::events::household::Channel;
use sumud_shared::events::payment::{Instruction, INSTRUCTION_ISSUED};

use crate::db::InstructionRow;

/// The event source of instructions.
const SOURCE: &str = "urn:sumud:disbursement";

/// Purpose code of every instruction (G2P `purpose`).
const PURPOSE: &str = "crisis-cash-transfer";

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
        purpose: PURPOSE.into(),
        note: note(row),
    };
    let mut e = Envelope::new(
        SOURCE,
        INSTRUCTION_ISSUED,
        Some(row.instruction_id.clone()),
        data,
    );
    e.id = format!("{}#{}", row.instruction_id, row.attempt);
    e
}

/// The statement note (G2P `note`).
fn note(row: &InstructionRow) -> String {
    let mut note = String::new();
    write_note(&mut note, row);
    note
}

/// [`note`] into a buffer the caller reuses.
fn write_note(out: &mut String, row: &InstructionRow) {
    use std::fmt::Write;
    let _ = if row.part == 0 {
        write!(out, "{} tranche {}", row.crisis_id, row.tranche)
    } else {
        write!(
            out,
            "{} tranche {} top-up {} (revision {})",
            row.crisis_id, row.tranche, row.part, row.crisis_revision
        )
    };
}

/// Renders the messages of many attempts: the bytes [`instruction_event`]
/// serializes to. A pass renders hundreds of thousands, so the envelope's
/// runs that are the same in every message of a pass (its constant
/// attributes and the event time, with their keys) are serialized once, by
/// serde_json; each message writes its own values and the keys of `data`
/// between them, each through serde_json (its escaping and number
/// formatting), into one buffer, composing its id, payee and note in a
/// reused one. A unit test holds the renderings equal byte for byte.
pub struct Renderer {
    /// From the opening brace to the `id` value.
    head: Vec<u8>,
    /// From after `id` to the `subject` value (`time` is in here).
    after_id: Vec<u8>,
    /// From after `subject` to the `reference_id` value.
    after_subject: Vec<u8>,
    /// After `purpose` up to the `note` value.
    purpose_to_note: Vec<u8>,
    /// The last `scheduled_at` seen, as written (tranches share it).
    scheduled: Option<(DateTime<Utc>, Vec<u8>)>,
    /// Reused for the values composed per message (id, payee, note).
    scratch: String,
}

impl Renderer {
    /// A renderer whose events are stamped `time`.
    pub fn new(time: DateTime<Utc>) -> Self {
        let mut head = b"{".to_vec();
        key(&mut head, "specversion", false);
        value(&mut head, SPEC_VERSION);
        key(&mut head, "id", true);
        let mut after_id = Vec::new();
        let time = rfc3339(time);
        for (k, v) in [
            ("source", SOURCE),
            ("type", INSTRUCTION_ISSUED),
            ("time", time.as_str()),
        ] {
            key(&mut after_id, k, true);
            value(&mut after_id, v);
        }
        key(&mut after_id, "subject", true);
        let mut after_subject = Vec::new();
        key(&mut after_subject, "datacontenttype", true);
        value(&mut after_subject, "application/json");
        key(&mut after_subject, "dataschema", true);
        value(
            &mut after_subject,
            sumud_shared::schema::schema_uri(INSTRUCTION_ISSUED),
        );
        key(&mut after_subject, "data", true);
        after_subject.push(b'{');
        key(&mut after_subject, "reference_id", false);
        let mut purpose_to_note = Vec::new();
        key(&mut purpose_to_note, "purpose", true);
        value(&mut purpose_to_note, PURPOSE);
        key(&mut purpose_to_note, "note", true);
        Renderer {
            head,
            after_id,
            after_subject,
            purpose_to_note,
            scheduled: None,
            scratch: String::new(),
        }
    }

    /// The message of one attempt: (key, payload).
    pub fn render(&mut self, row: &InstructionRow) -> (String, Vec<u8>) {
        use std::fmt::Write;
        let out = &mut Vec::with_capacity(896);
        out.extend_from_slice(&self.head);
        self.scratch.clear();
        let _ = write!(self.scratch, "{}#{}", row.instruction_id, row.attempt);
        value(out, self.scratch.as_str());
        out.extend_from_slice(&self.after_id);
        value(out, &row.instruction_id);
        out.extend_from_slice(&self.after_subject);
        value(out, &row.instruction_id);
        key(out, "attempt", true);
        value(out, row.attempt as u32);
        key(out, "crisis_id", true);
        value(out, &row.crisis_id);
        key(out, "crisis_revision", true);
        value(out, row.crisis_revision);
        key(out, "beneficiary_ref", true);
        value(out, &row.beneficiary_ref);
        key(out, "payee_fa", true);
        self.scratch.clear();
        let _ = write!(self.scratch, "{}@{}", row.account_token, row.provider);
        value(out, self.scratch.as_str());
        key(out, "amount", true);
        value(out, row.amount_minor);
        key(out, "currency_code", true);
        value(out, &row.currency);
        key(out, "channel", true);
        value(
            out,
            Channel::parse(&row.channel).unwrap_or(Channel::EWallet),
        );
        key(out, "provider", true);
        value(out, &row.provider);
        key(out, "tranche", true);
        value(out, row.tranche as u32);
        key(out, "scheduled_timestamp", true);
        match &self.scheduled {
            Some((at, text)) if *at == row.scheduled_at => out.extend_from_slice(text),
            _ => {
                let mut text = Vec::new();
                value(&mut text, rfc3339(row.scheduled_at));
                out.extend_from_slice(&text);
                self.scheduled = Some((row.scheduled_at, text));
            }
        }
        out.extend_from_slice(&self.purpose_to_note);
        self.scratch.clear();
        write_note(&mut self.scratch, row);
        value(out, self.scratch.as_str());
        out.extend_from_slice(b"}}");
        (row.beneficiary_ref.clone(), std::mem::take(out))
    }
}

/// `"name":`, after a comma unless it is the object's first member. Keys
/// here are constants: they never need escaping, but go through serde_json
/// all the same, once per pass for the constant runs.
fn key(out: &mut Vec<u8>, name: &str, comma: bool) {
    if comma {
        out.push(b',');
    }
    value(out, name);
    out.push(b':');
}

/// A value as serde_json writes it.
fn value(out: &mut Vec<u8>, v: impl Serialize) {
    serde_json::to_writer(out, &v).expect("a string or a number always serializes");
}

/// A time as chrono's serde writes it (RFC 3339, UTC as `Z`).
fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(part: i32) -> InstructionRow {
        InstructionRow {
            instruction_id: crate::instruction::part_id("FL-1", "HH-7", "vertical", 2, part as u32),
            attempt: 3,
            crisis_id: "FL-1".into(),
            crisis_revision: 4,
            beneficiary_ref: crate::instruction::beneficiary_ref("s", "HH-7"),
            account_token: "tok \"quoted\" \\ é".into(),
            amount_minor: 112_500,
            currency: "JOD".into(),
            channel: "bank".into(),
            provider: "bank-a".into(),
            tranche: 2,
            part,
            scheduled_at: DateTime::parse_from_rfc3339("2026-12-01T08:00:00.123456Z")
                .unwrap()
                .with_timezone(&Utc),
        }
    }

    #[test]
    fn the_fast_rendering_is_the_event_byte_for_byte() {
        for part in [0, 2] {
            let r = row(part);
            let mut event = instruction_event(&r);
            let time = event.time;
            let (key, payload) = Renderer::new(time).render(&r);
            assert_eq!(key, r.beneficiary_ref);
            event.time = time;
            assert_eq!(
                String::from_utf8(payload).unwrap(),
                String::from_utf8(event.to_bytes()).unwrap()
            );
        }
    }

    #[test]
    fn the_fast_rendering_escapes_every_value_as_serde_does() {
        let time = Utc::now();
        let mut renderer = Renderer::new(time);
        let odd = "\u{0}\u{1f}\t\n\r\"\\/ é ✓ 𝄞 \u{7f}";
        for (i, channel) in ["bank", "e_wallet", "cash_pickup", "unknown"]
            .into_iter()
            .enumerate()
        {
            let mut r = row(i as i32);
            r.channel = channel.into();
            r.crisis_id = format!("FL-{odd}");
            r.provider = format!("prov{odd}");
            r.beneficiary_ref = format!("ben{odd}");
            r.currency = odd.into();
            r.amount_minor = [i64::MIN, -1, 0, i64::MAX][i];
            r.crisis_revision = [i32::MIN, 0, 1, i32::MAX][i];
            // The same scheduled time twice, then a new one: the cache.
            if i >= 2 {
                r.scheduled_at += chrono::Duration::seconds(1);
            }
            let mut event = instruction_event(&r);
            event.time = time;
            let (_, payload) = renderer.render(&r);
            assert_eq!(
                String::from_utf8(payload).unwrap(),
                String::from_utf8(event.to_bytes()).unwrap()
            );
        }
    }

    #[test]
    fn a_rendered_instruction_decodes_to_the_same_instruction() {
        let r = row(1);
        let (_, payload) = Renderer::new(Utc::now()).render(&r);
        let decoded: Envelope<Instruction> = serde_json::from_slice(&payload).unwrap();
        assert_eq!(decoded.data, instruction_event(&r).data);
        assert_eq!(decoded.id, format!("{}#3", r.instruction_id));
    }
}
