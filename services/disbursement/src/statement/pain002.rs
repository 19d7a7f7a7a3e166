//! ISO 20022 pain.002 (CustomerPaymentStatusReport, any version; written
//! against pain.002.001.10): the provider's answer to a pain.001, per
//! transaction. Read per `TxInfAndSts` (under `OrgnlPmtInfAndSts`, or
//! directly under the report as some senders write it):
//! - `OrgnlEndToEndId` is our reference;
//! - `TxSts`: `ACSC` and `ACCC` are paid, `RJCT` rejected, any other code
//!   (`PDNG`, `ACSP`, `ACTC`, `ACCP`, `ACWC`, `RCVD`, …) not final;
//! - `OrgnlTxRef/Amt/InstdAmt` (with `Ccy`) is the amount, when present;
//! - `AcctSvcrRef` is the provider's reference, `AccptncDtTm` the time.
//!
//! A transaction without a status of its own takes its payment block's
//! `PmtInfSts`.

use super::xml::Element;
use super::{amount, Entry, EntryStatus, Format, Statement, StatementError};

const F: Format = Format::Pain002;

/// The entries of a `CstmrPmtStsRpt` element.
pub(super) fn parse(message: &Element) -> Result<Statement, StatementError> {
    let mut entries = Vec::new();
    for tx in message.all("TxInfAndSts") {
        entries.push(read(tx, None, entries.len() + 1)?);
    }
    for block in message.all("OrgnlPmtInfAndSts") {
        let block_status = block.text_at(&["PmtInfSts"]);
        for tx in block.all("TxInfAndSts") {
            entries.push(read(tx, block_status, entries.len() + 1)?);
        }
    }
    Ok(Statement { format: F, entries })
}

fn read(tx: &Element, inherited: Option<&str>, n: usize) -> Result<Entry, StatementError> {
    let invalid = |what: String| StatementError::invalid(F, format!("TxInfAndSts {n}: {what}"));
    let code = tx
        .text_at(&["TxSts"])
        .or(inherited)
        .ok_or_else(|| invalid("no TxSts".into()))?;
    let status = match code {
        "ACSC" | "ACCC" => EntryStatus::Paid,
        "RJCT" => EntryStatus::Rejected,
        _ => EntryStatus::Pending,
    };
    let amount = match tx.at(&["OrgnlTxRef", "Amt", "InstdAmt"]) {
        Some(a) => {
            let currency = a
                .attribute("Ccy")
                .ok_or_else(|| invalid("InstdAmt without Ccy".into()))?;
            Some(amount(F, &a.text, currency)?)
        }
        None => None,
    };
    Ok(Entry {
        reference: tx
            .text_at(&["OrgnlEndToEndId"])
            .unwrap_or_default()
            .to_owned(),
        amount,
        status,
        provider_ref: tx.text_at(&["AcctSvcrRef"]).map(str::to_owned),
        booked_at: tx.text_at(&["AccptncDtTm"]).map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::super::{parse, EntryStatus, Format};
    use sumud_shared::money::Money;

    const DOC: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.10">
  <CstmrPmtStsRpt>
    <GrpHdr><MsgId>R-1</MsgId><CreDtTm>2026-12-02T10:00:00</CreDtTm></GrpHdr>
    <OrgnlGrpInfAndSts><OrgnlMsgId>FL-1-bank-a</OrgnlMsgId><OrgnlMsgNmId>pain.001.001.09</OrgnlMsgNmId></OrgnlGrpInfAndSts>
    <OrgnlPmtInfAndSts>
      <OrgnlPmtInfId>FL-1-bank-a-1</OrgnlPmtInfId>
      <TxInfAndSts>
        <OrgnlEndToEndId>aaaa1111</OrgnlEndToEndId><TxSts>ACSC</TxSts>
        <AccptncDtTm>2026-12-01T09:00:00Z</AccptncDtTm><AcctSvcrRef>BANK-1</AcctSvcrRef>
        <OrgnlTxRef><Amt><InstdAmt Ccy="JOD">112.500</InstdAmt></Amt></OrgnlTxRef>
      </TxInfAndSts>
      <TxInfAndSts>
        <OrgnlEndToEndId>bbbb2222</OrgnlEndToEndId><TxSts>RJCT</TxSts>
        <StsRsnInf><Rsn><Cd>AC04</Cd></Rsn></StsRsnInf>
      </TxInfAndSts>
      <TxInfAndSts><OrgnlEndToEndId>cccc3333</OrgnlEndToEndId><TxSts>PDNG</TxSts></TxInfAndSts>
    </OrgnlPmtInfAndSts>
    <OrgnlPmtInfAndSts>
      <OrgnlPmtInfId>FL-1-bank-a-2</OrgnlPmtInfId><PmtInfSts>ACCC</PmtInfSts>
      <TxInfAndSts><OrgnlEndToEndId>dddd4444</OrgnlEndToEndId></TxInfAndSts>
    </OrgnlPmtInfAndSts>
  </CstmrPmtStsRpt>
</Document>"#;

    #[test]
    fn every_transaction_status_becomes_an_entry() {
        let s = parse(DOC.as_bytes()).unwrap();
        assert_eq!(s.format, Format::Pain002);
        let got: Vec<(&str, EntryStatus)> = s
            .entries
            .iter()
            .map(|e| (e.reference.as_str(), e.status))
            .collect();
        assert_eq!(
            got,
            vec![
                ("aaaa1111", EntryStatus::Paid),
                ("bbbb2222", EntryStatus::Rejected),
                ("cccc3333", EntryStatus::Pending),
                ("dddd4444", EntryStatus::Paid),
            ]
        );
        assert_eq!(
            s.entries[0].amount,
            Some(Money::new(112_500, "JOD").unwrap())
        );
        assert_eq!(s.entries[0].provider_ref.as_deref(), Some("BANK-1"));
        assert_eq!(s.entries[1].amount, None, "no OrgnlTxRef, no amount");
    }

    #[test]
    fn a_prefixed_report_reads_the_same() {
        let doc = r#"<p:Document xmlns:p="urn:iso:std:iso:20022:tech:xsd:pain.002.001.10">
  <p:CstmrPmtStsRpt><p:OrgnlPmtInfAndSts><p:TxInfAndSts>
    <p:OrgnlEndToEndId>aaaa1111</p:OrgnlEndToEndId><p:TxSts>ACSC</p:TxSts>
    <p:OrgnlTxRef><p:Amt><p:InstdAmt Ccy="JOD">112.5</p:InstdAmt></p:Amt></p:OrgnlTxRef>
  </p:TxInfAndSts></p:OrgnlPmtInfAndSts></p:CstmrPmtStsRpt></p:Document>"#;
        let s = parse(doc.as_bytes()).unwrap();
        assert_eq!(s.entries.len(), 1);
        assert_eq!(s.entries[0].status, EntryStatus::Paid);
        assert_eq!(
            s.entries[0].amount,
            Some(Money::new(112_500, "JOD").unwrap())
        );
    }

    #[test]
    fn a_transaction_without_any_status_is_refused() {
        let doc = DOC.replacen("<TxSts>ACSC</TxSts>", "", 1);
        let err = parse(doc.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("TxInfAndSts 1: no TxSts"), "{err}");
    }
}
