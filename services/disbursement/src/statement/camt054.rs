//! ISO 20022 camt.054 (BankToCustomerDebitCreditNotification, any
//! version; written against camt.054.001.08): the bookings on the crisis
//! account. Read per `Ntfctn/Ntry`:
//! - status `Sts/Cd` (or `Sts` as older versions write it): `BOOK` is a
//!   booking, `PDNG` and `INFO` are not final;
//! - `RvslInd` true: a reversal of an earlier payment;
//! - `CdtDbtInd`: a debit is a payout; a credit that is no reversal (the
//!   account being funded) is not a payment and is skipped;
//! - each `NtryDtls/TxDtls` is one payment: `Refs/EndToEndId` is our
//!   reference, `Refs/AcctSvcrRef` (else the entry's `AcctSvcrRef`) the
//!   provider's; its amount is `TxDtls/Amt`, else `AmtDtls/TxAmt/Amt`, else
//!   the entry's `Amt` when the entry holds that one transaction;
//! - `BookgDt/DtTm` (or `Dt`) is when it was booked.

use super::xml::Element;
use super::{amount, Entry, EntryStatus, Format, Statement, StatementError};

const F: Format = Format::Camt054;

/// The entries of a `BkToCstmrDbtCdtNtfctn` element.
pub(super) fn parse(message: &Element) -> Result<Statement, StatementError> {
    let mut entries = Vec::new();
    for (n, notification) in message.all("Ntfctn").enumerate() {
        for (e, ntry) in notification.all("Ntry").enumerate() {
            let place = format!("Ntfctn {} Ntry {}", n + 1, e + 1);
            read_entry(ntry, &place, &mut entries)?;
        }
    }
    Ok(Statement { format: F, entries })
}

fn read_entry(ntry: &Element, place: &str, out: &mut Vec<Entry>) -> Result<(), StatementError> {
    let invalid = |what: String| StatementError::invalid(F, format!("{place}: {what}"));
    let code = ntry
        .text_at(&["Sts", "Cd"])
        .or_else(|| ntry.text_at(&["Sts", "Prtry"]))
        .or_else(|| ntry.text_at(&["Sts"]))
        .ok_or_else(|| invalid("no status (Sts/Cd)".into()))?;
    let reversal = match ntry.text_at(&["RvslInd"]) {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(other) => return Err(invalid(format!("RvslInd {other:?} is not a boolean"))),
    };
    let debit = match ntry.text_at(&["CdtDbtInd"]) {
        Some("DBIT") => true,
        Some("CRDT") => false,
        other => return Err(invalid(format!("CdtDbtInd {other:?}: DBIT or CRDT"))),
    };
    let status = match code {
        "BOOK" if reversal => EntryStatus::Reversed,
        "BOOK" => EntryStatus::Paid,
        "PDNG" | "INFO" | "FUTR" => EntryStatus::Pending,
        other => return Err(invalid(format!("status {other:?}: BOOK, PDNG or INFO"))),
    };
    if !debit && !reversal {
        // Money into the account (its funding), not a payout.
        return Ok(());
    }
    let booked_at = ntry
        .text_at(&["BookgDt", "DtTm"])
        .or_else(|| ntry.text_at(&["BookgDt", "Dt"]))
        .map(str::to_owned);
    let entry_ref = ntry.text_at(&["AcctSvcrRef"]);
    let details: Vec<&Element> = ntry.all("NtryDtls").flat_map(|d| d.all("TxDtls")).collect();
    if details.is_empty() {
        return Err(invalid(
            "no NtryDtls/TxDtls: the payment's EndToEndId is needed to match it".into(),
        ));
    }
    let single = details.len() == 1;
    for (t, tx) in details.into_iter().enumerate() {
        let amt = tx
            .at(&["Amt"])
            .or_else(|| tx.at(&["AmtDtls", "TxAmt", "Amt"]))
            .or_else(|| if single { ntry.at(&["Amt"]) } else { None })
            .ok_or_else(|| invalid(format!("TxDtls {}: no amount", t + 1)))?;
        let currency = amt
            .attribute("Ccy")
            .ok_or_else(|| invalid(format!("TxDtls {}: amount without Ccy", t + 1)))?;
        out.push(Entry {
            reference: tx
                .text_at(&["Refs", "EndToEndId"])
                .unwrap_or_default()
                .to_owned(),
            amount: Some(amount(F, &amt.text, currency)?),
            status,
            provider_ref: tx
                .text_at(&["Refs", "AcctSvcrRef"])
                .or(entry_ref)
                .map(str::to_owned),
            booked_at: booked_at.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{parse, Entry, EntryStatus, Format};
    use sumud_shared::money::Money;

    /// A notification written as a bank would: a booked payout, its
    /// reversal, a pending one, a batch booking of two, and the account's
    /// funding (a credit, skipped).
    const DOC: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.08">
  <BkToCstmrDbtCdtNtfctn>
    <GrpHdr><MsgId>N-1</MsgId><CreDtTm>2026-12-02T10:00:00</CreDtTm></GrpHdr>
    <Ntfctn>
      <Id>N-1-1</Id>
      <Acct><Id><Othr><Id>CRISIS-FL-1</Id></Othr></Id></Acct>
      <Ntry>
        <Amt Ccy="JOD">112.500</Amt><CdtDbtInd>DBIT</CdtDbtInd>
        <Sts><Cd>BOOK</Cd></Sts><BookgDt><DtTm>2026-12-01T09:00:00Z</DtTm></BookgDt>
        <AcctSvcrRef>BANK-1</AcctSvcrRef>
        <NtryDtls><TxDtls><Refs><EndToEndId>aaaa1111</EndToEndId></Refs></TxDtls></NtryDtls>
      </Ntry>
      <Ntry>
        <Amt Ccy="JOD">112.500</Amt><CdtDbtInd>CRDT</CdtDbtInd><RvslInd>true</RvslInd>
        <Sts><Cd>BOOK</Cd></Sts><BookgDt><Dt>2026-12-02</Dt></BookgDt>
        <NtryDtls><TxDtls><Refs><AcctSvcrRef>BANK-1R</AcctSvcrRef><EndToEndId>aaaa1111</EndToEndId></Refs></TxDtls></NtryDtls>
      </Ntry>
      <Ntry>
        <Amt Ccy="JOD">50</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts><Cd>PDNG</Cd></Sts>
        <NtryDtls><TxDtls><Refs><EndToEndId>bbbb2222</EndToEndId></Refs></TxDtls></NtryDtls>
      </Ntry>
      <Ntry>
        <Amt Ccy="JOD">30.000</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>
        <NtryDtls>
          <TxDtls><Refs><EndToEndId>cccc3333</EndToEndId></Refs><Amt Ccy="JOD">10.000</Amt></TxDtls>
          <TxDtls><Refs><EndToEndId>dddd4444</EndToEndId></Refs>
            <AmtDtls><TxAmt><Amt Ccy="JOD">20</Amt></TxAmt></AmtDtls></TxDtls>
        </NtryDtls>
      </Ntry>
      <Ntry>
        <Amt Ccy="JOD">1000000</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>
        <NtryDtls><TxDtls><Refs><EndToEndId>FUNDING</EndToEndId></Refs></TxDtls></NtryDtls>
      </Ntry>
    </Ntfctn>
  </BkToCstmrDbtCdtNtfctn>
</Document>"#;

    fn jod(minor: i64) -> Option<Money> {
        Some(Money::new(minor, "JOD").unwrap())
    }

    #[test]
    fn bookings_reversals_and_batch_details_become_one_entry_per_payment() {
        let s = parse(DOC.as_bytes()).unwrap();
        assert_eq!(s.format, Format::Camt054);
        let got: Vec<(&str, Option<Money>, EntryStatus, Option<&str>)> = s
            .entries
            .iter()
            .map(|e: &Entry| {
                (
                    e.reference.as_str(),
                    e.amount.clone(),
                    e.status,
                    e.provider_ref.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("aaaa1111", jod(112_500), EntryStatus::Paid, Some("BANK-1")),
                (
                    "aaaa1111",
                    jod(112_500),
                    EntryStatus::Reversed,
                    Some("BANK-1R")
                ),
                ("bbbb2222", jod(50_000), EntryStatus::Pending, None),
                ("cccc3333", jod(10_000), EntryStatus::Paid, None),
                ("dddd4444", jod(20_000), EntryStatus::Paid, None),
            ]
        );
        assert_eq!(
            s.entries[0].booked_at.as_deref(),
            Some("2026-12-01T09:00:00Z")
        );
        assert_eq!(s.entries[1].booked_at.as_deref(), Some("2026-12-02"));
    }

    #[test]
    fn an_entry_without_status_or_with_too_many_decimals_is_refused() {
        let no_status = DOC.replacen("<Sts><Cd>BOOK</Cd></Sts>", "", 1);
        let err = parse(no_status.as_bytes()).unwrap_err().to_string();
        assert!(
            err.contains("Ntfctn 1 Ntry 1") && err.contains("status"),
            "{err}"
        );
        let decimals = DOC.replacen("112.500", "112.5001", 1);
        assert!(parse(decimals.as_bytes()).is_err());
    }

    #[test]
    fn a_batch_booking_without_per_transaction_amounts_is_refused() {
        let doc = DOC.replacen(r#"<Amt Ccy="JOD">10.000</Amt>"#, "", 1);
        let err = parse(doc.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("TxDtls 1: no amount"), "{err}");
    }
}
