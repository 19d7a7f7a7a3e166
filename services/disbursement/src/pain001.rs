//! ISO 20022 `pain.001.001.09` (CustomerCreditTransferInitiation) export, for
//! providers that take files instead of events: one payment-information block
//! per execution date, one credit transfer per instruction attempt, the
//! instruction id as end-to-end id (hyphens dropped: the field holds 35
//! characters), the beneficiary pseudonym as creditor name and the account
//! token as creditor account. Written with `quick-xml`.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;
use sumud_shared::money::{minor_unit_exponent, Money};

use crate::db::InstructionRow;

/// The pain.001 namespace.
pub const NAMESPACE: &str = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09";

/// Who pays, as named in the file.
#[derive(Debug, Clone)]
pub struct Debtor {
    /// Name of the paying institution.
    pub name: String,
    /// The crisis account's identifier.
    pub account: String,
}

struct Xml {
    w: Writer<Vec<u8>>,
}

impl Xml {
    fn open(&mut self, name: &str) {
        self.w
            .write_event(Event::Start(BytesStart::new(name)))
            .expect("writing to memory");
    }
    fn close(&mut self, name: &str) {
        self.w
            .write_event(Event::End(BytesEnd::new(name)))
            .expect("writing to memory");
    }
    fn leaf(&mut self, name: &str, text: &str) {
        self.open(name);
        self.w
            .write_event(Event::Text(BytesText::new(text)))
            .expect("writing to memory");
        self.close(name);
    }
    fn amount(&mut self, minor: i64, currency: &str) {
        let mut start = BytesStart::new("InstdAmt");
        start.push_attribute(("Ccy", currency));
        self.w
            .write_event(Event::Start(start))
            .expect("writing to memory");
        self.w
            .write_event(Event::Text(BytesText::new(&decimal(minor, currency))))
            .expect("writing to memory");
        self.close("InstdAmt");
    }
    fn other_id(&mut self, wrapper: &str, id: &str) {
        self.open(wrapper);
        self.open("Othr");
        self.leaf("Id", id);
        self.close("Othr");
        self.close(wrapper);
    }
}

/// A decimal amount in major units (no currency code), as ISO 20022 wants it.
fn decimal(minor: i64, currency: &str) -> String {
    let shown = Money {
        minor,
        currency: currency.to_owned(),
    }
    .display();
    shown
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn max35(s: &str) -> String {
    s.chars().filter(|c| *c != '-').take(35).collect()
}

/// The `EndToEndId` an instruction is sent as: its id without hyphens (the
/// field holds 35 characters). Statements quote it back (`statement.rs`).
pub fn end_to_end_id(instruction_id: &str) -> String {
    max35(instruction_id)
}

/// The pain.001 document for `rows` (one currency; callers group by it).
pub fn document(
    message_id: &str,
    created: DateTime<Utc>,
    debtor: &Debtor,
    rows: &[InstructionRow],
) -> String {
    let mut x = Xml {
        w: Writer::new_with_indent(Vec::new(), b' ', 2),
    };
    x.w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))
        .expect("writing to memory");
    let mut doc = BytesStart::new("Document");
    doc.push_attribute(("xmlns", NAMESPACE));
    x.w.write_event(Event::Start(doc))
        .expect("writing to memory");
    x.open("CstmrCdtTrfInitn");
    let currency = rows
        .first()
        .map(|r| r.currency.clone())
        .unwrap_or_else(|| "JOD".into());
    let total: i64 = rows.iter().map(|r| r.amount_minor).sum();
    x.open("GrpHdr");
    x.leaf("MsgId", &max35(message_id));
    x.leaf("CreDtTm", &created.format("%Y-%m-%dT%H:%M:%S").to_string());
    x.leaf("NbOfTxs", &rows.len().to_string());
    x.leaf("CtrlSum", &decimal(total, &currency));
    x.open("InitgPty");
    x.leaf("Nm", &debtor.name);
    x.close("InitgPty");
    x.close("GrpHdr");
    let mut by_date: BTreeMap<NaiveDate, Vec<&InstructionRow>> = BTreeMap::new();
    for r in rows {
        by_date
            .entry(r.scheduled_at.date_naive())
            .or_default()
            .push(r);
    }
    for (i, (date, group)) in by_date.iter().enumerate() {
        x.open("PmtInf");
        x.leaf("PmtInfId", &max35(&format!("{message_id}-{}", i + 1)));
        x.leaf("PmtMtd", "TRF");
        x.leaf("NbOfTxs", &group.len().to_string());
        x.leaf(
            "CtrlSum",
            &decimal(group.iter().map(|r| r.amount_minor).sum(), &currency),
        );
        x.open("ReqdExctnDt");
        x.leaf("Dt", &date.format("%Y-%m-%d").to_string());
        x.close("ReqdExctnDt");
        x.open("Dbtr");
        x.leaf("Nm", &debtor.name);
        x.close("Dbtr");
        x.open("DbtrAcct");
        x.other_id("Id", &debtor.account);
        x.close("DbtrAcct");
        x.open("DbtrAgt");
        x.other_id("FinInstnId", "NOTPROVIDED");
        x.close("DbtrAgt");
        for r in group {
            x.open("CdtTrfTxInf");
            x.open("PmtId");
            x.leaf(
                "InstrId",
                &max35(&format!(
                    "{}{}",
                    &r.instruction_id.replace('-', "")[..32],
                    r.attempt
                )),
            );
            x.leaf("EndToEndId", &end_to_end_id(&r.instruction_id));
            x.close("PmtId");
            x.open("Amt");
            x.amount(r.amount_minor, &r.currency);
            x.close("Amt");
            x.open("Cdtr");
            x.leaf("Nm", &r.beneficiary_ref);
            x.close("Cdtr");
            x.open("CdtrAcct");
            x.other_id("Id", &r.account_token);
            x.close("CdtrAcct");
            x.open("RmtInf");
            x.leaf("Ustrd", &format!("{} tranche {}", r.crisis_id, r.tranche));
            x.close("RmtInf");
            x.close("CdtTrfTxInf");
        }
        x.close("PmtInf");
    }
    x.close("CstmrCdtTrfInitn");
    x.close("Document");
    String::from_utf8(x.w.into_inner()).expect("quick-xml writes UTF-8")
}

/// Exponent check used by tests: amounts keep the currency's decimals.
pub fn decimals_of(currency: &str) -> u32 {
    minor_unit_exponent(currency)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sample rows for this module's and the XSD test's use.
    pub fn rows() -> Vec<InstructionRow> {
        (0..3)
            .map(|i| InstructionRow {
                instruction_id: crate::instruction::instruction_id(
                    "FL-1",
                    &format!("HH-{i}"),
                    "vertical",
                    1,
                ),
                attempt: 1,
                crisis_id: "FL-1".into(),
                crisis_revision: 1,
                beneficiary_ref: crate::instruction::beneficiary_ref("s", &format!("HH-{i}")),
                account_token: format!("tok_{i:04}"),
                amount_minor: 112_500 + i,
                currency: "JOD".into(),
                channel: "bank".into(),
                provider: "bank-a".into(),
                tranche: 1,
                part: 0,
                scheduled_at: DateTime::parse_from_rfc3339("2026-12-01T08:00:00Z")
                    .unwrap()
                    .with_timezone(&Utc),
            })
            .collect()
    }

    #[test]
    fn the_document_totals_and_identifies_every_transfer() {
        let debtor = Debtor {
            name: "Ministry of Social Development".into(),
            account: "CRISIS-FL-1".into(),
        };
        let xml = document("FL-1-bank-a-20261201", Utc::now(), &debtor, &rows());
        assert!(xml.contains(NAMESPACE));
        assert!(xml.contains("<NbOfTxs>3</NbOfTxs>"));
        assert!(xml.contains("<CtrlSum>337.503</CtrlSum>"));
        assert!(xml.contains(r#"<InstdAmt Ccy="JOD">112.500</InstdAmt>"#));
        assert_eq!(xml.matches("<EndToEndId>").count(), 3);
        assert!(!xml.contains("HH-"), "no household ids in the file");
        assert_eq!(decimals_of("JOD"), 3);
    }
}
