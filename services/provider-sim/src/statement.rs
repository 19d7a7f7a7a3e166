//! The simulated provider's own statement of account, written from its
//! ledger as a provider's back office would: ISO 20022 camt.054.001.08
//! (bookings: what it paid), pain.002.001.10 (a status per transaction:
//! paid or rejected) and the CSV of docs/contracts.md. Rows are passed in,
//! so a test can plant discrepancies in what the provider claims before
//! the statement is written. The provider refers to a payment by the
//! `EndToEndId` it was sent (the reference without hyphens) in XML and by
//! the reference as the instruction event carried it in CSV.

use chrono::{DateTime, Utc};
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;
use sumud_shared::db::Store;
use sumud_shared::money::minor_unit_exponent;
use sumud_shared::{on_store, Result};

/// One attempt in the ledger, as a statement needs it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LedgerRow {
    /// The instruction's reference.
    pub reference_id: String,
    /// The attempt.
    pub attempt: i32,
    /// The provider name it was addressed to.
    pub provider: String,
    /// The amount instructed, minor units.
    pub amount_minor: i64,
    /// What the simulator did (`paid`, `rejected_retryable`,
    /// `rejected_permanent`, `silence`, `already_paid`).
    pub outcome: String,
    /// Whether this attempt paid.
    pub paid: bool,
}

/// What a statement says about itself.
#[derive(Debug, Clone)]
pub struct Header {
    /// Message id.
    pub message_id: String,
    /// The account paid from (the crisis account of the pain.001 export).
    pub account: String,
    /// Currency of every amount (the ledger keeps none).
    pub currency: String,
    /// When it was written; also the booking time of its entries.
    pub created: DateTime<Utc>,
}

/// The ledger's rows, by reference and attempt; only `provider`'s when one
/// is named.
pub async fn ledger(store: &Store, provider: Option<&str>) -> Result<Vec<LedgerRow>> {
    const SQL: &str = "SELECT reference_id, attempt, provider, amount_minor, outcome, paid \
         FROM provider_sim.ledger WHERE ($1 IS NULL OR provider = $1) ORDER BY reference_id, attempt";
    Ok(on_store!(store, pool => sqlx::query_as(SQL).bind(provider).fetch_all(pool).await?))
}

/// The provider's reference of the payment of `reference` by `attempt`, as
/// its status reports give it.
pub fn provider_ref(reference: &str, attempt: i32) -> String {
    // By characters, not bytes: a reference id from outside need not be
    // ASCII, nor eight long.
    let prefix: String = reference.chars().take(8).collect();
    format!("SIM-{prefix}-{attempt}")
}

/// What the statement lists for a row: paid, rejected, or nothing (no
/// answer given, or answered with an earlier attempt's payment).
fn listed(row: &LedgerRow) -> Option<bool> {
    if row.paid {
        Some(true)
    } else if row.outcome.starts_with("rejected") {
        Some(false)
    } else {
        None
    }
}

fn end_to_end_id(reference: &str) -> String {
    reference.chars().filter(|c| *c != '-').take(35).collect()
}

/// `minor` in major units with the currency's decimals, as ISO 20022 writes amounts.
fn decimal(minor: i64, currency: &str) -> String {
    let exp = minor_unit_exponent(currency);
    if exp == 0 {
        return minor.to_string();
    }
    let unit = 10_i64.pow(exp);
    let sign = if minor < 0 { "-" } else { "" };
    let (whole, frac) = (minor.abs() / unit, minor.abs() % unit);
    format!("{sign}{whole}.{frac:0width$}", width = exp as usize)
}

struct Xml(Writer<Vec<u8>>);

impl Xml {
    fn new(namespace: &str) -> Self {
        let mut x = Xml(Writer::new_with_indent(Vec::new(), b' ', 2));
        x.event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)));
        let mut doc = BytesStart::new("Document");
        doc.push_attribute(("xmlns", namespace));
        x.event(Event::Start(doc));
        x
    }
    fn event(&mut self, e: Event) {
        self.0.write_event(e).expect("writing to memory");
    }
    fn open(&mut self, name: &str) {
        self.event(Event::Start(BytesStart::new(name)));
    }
    fn close(&mut self, name: &str) {
        self.event(Event::End(BytesEnd::new(name)));
    }
    fn leaf(&mut self, name: &str, text: &str) {
        self.open(name);
        self.event(Event::Text(BytesText::new(text)));
        self.close(name);
    }
    fn amount(&mut self, name: &str, minor: i64, currency: &str) {
        let mut start = BytesStart::new(name);
        start.push_attribute(("Ccy", currency));
        self.event(Event::Start(start));
        self.event(Event::Text(BytesText::new(&decimal(minor, currency))));
        self.close(name);
    }
    fn header(&mut self, h: &Header) {
        self.open("GrpHdr");
        self.leaf("MsgId", &h.message_id);
        self.leaf(
            "CreDtTm",
            &h.created.format("%Y-%m-%dT%H:%M:%S").to_string(),
        );
        self.close("GrpHdr");
    }
    fn finish(mut self) -> String {
        self.close("Document");
        String::from_utf8(self.0.into_inner()).expect("quick-xml writes UTF-8")
    }
}

/// A camt.054.001.08 debit notification: one booked entry per payment.
pub fn camt054(rows: &[LedgerRow], h: &Header) -> String {
    let mut x = Xml::new("urn:iso:std:iso:20022:tech:xsd:camt.054.001.08");
    x.open("BkToCstmrDbtCdtNtfctn");
    x.header(h);
    x.open("Ntfctn");
    x.leaf("Id", &h.message_id);
    x.leaf(
        "CreDtTm",
        &h.created.format("%Y-%m-%dT%H:%M:%S").to_string(),
    );
    x.open("Acct");
    x.open("Id");
    x.open("Othr");
    x.leaf("Id", &h.account);
    x.close("Othr");
    x.close("Id");
    x.close("Acct");
    for r in rows.iter().filter(|r| listed(r) == Some(true)) {
        let svcr = provider_ref(&r.reference_id, r.attempt);
        x.open("Ntry");
        x.amount("Amt", r.amount_minor, &h.currency);
        x.leaf("CdtDbtInd", "DBIT");
        x.open("Sts");
        x.leaf("Cd", "BOOK");
        x.close("Sts");
        x.open("BookgDt");
        x.leaf("DtTm", &h.created.to_rfc3339());
        x.close("BookgDt");
        x.leaf("AcctSvcrRef", &svcr);
        x.open("BkTxCd");
        x.open("Domn");
        x.leaf("Cd", "PMNT");
        x.open("Fmly");
        x.leaf("Cd", "ICDT");
        x.leaf("SubFmlyCd", "DMCT");
        x.close("Fmly");
        x.close("Domn");
        x.close("BkTxCd");
        x.open("NtryDtls");
        x.open("TxDtls");
        x.open("Refs");
        x.leaf("AcctSvcrRef", &svcr);
        x.leaf("EndToEndId", &end_to_end_id(&r.reference_id));
        x.close("Refs");
        x.amount("Amt", r.amount_minor, &h.currency);
        x.leaf("CdtDbtInd", "DBIT");
        x.close("TxDtls");
        x.close("NtryDtls");
        x.close("Ntry");
    }
    x.close("Ntfctn");
    x.close("BkToCstmrDbtCdtNtfctn");
    x.finish()
}

/// A pain.002.001.10 status report: ACSC for each payment, RJCT for each
/// rejected attempt.
pub fn pain002(rows: &[LedgerRow], h: &Header) -> String {
    let mut x = Xml::new("urn:iso:std:iso:20022:tech:xsd:pain.002.001.10");
    x.open("CstmrPmtStsRpt");
    x.header(h);
    x.open("OrgnlGrpInfAndSts");
    x.leaf("OrgnlMsgId", &h.account);
    x.leaf("OrgnlMsgNmId", "pain.001.001.09");
    x.close("OrgnlGrpInfAndSts");
    x.open("OrgnlPmtInfAndSts");
    x.leaf("OrgnlPmtInfId", &h.account);
    for r in rows {
        let Some(paid) = listed(r) else { continue };
        x.open("TxInfAndSts");
        x.leaf("OrgnlEndToEndId", &end_to_end_id(&r.reference_id));
        x.leaf("TxSts", if paid { "ACSC" } else { "RJCT" });
        if paid {
            x.leaf("AccptncDtTm", &h.created.to_rfc3339());
            x.leaf("AcctSvcrRef", &provider_ref(&r.reference_id, r.attempt));
        }
        x.open("OrgnlTxRef");
        x.open("Amt");
        x.amount("InstdAmt", r.amount_minor, &h.currency);
        x.close("Amt");
        x.close("OrgnlTxRef");
        x.close("TxInfAndSts");
    }
    x.close("OrgnlPmtInfAndSts");
    x.close("CstmrPmtStsRpt");
    x.finish()
}

/// The CSV statement of docs/contracts.md: one row per payment or
/// rejected attempt.
pub fn csv(rows: &[LedgerRow], h: &Header) -> String {
    let mut out = String::from("reference,amount,currency,status,provider_ref,booked_at\n");
    for r in rows {
        let Some(paid) = listed(r) else { continue };
        let (status, svcr) = if paid {
            ("paid", provider_ref(&r.reference_id, r.attempt))
        } else {
            ("rejected", String::new())
        };
        out.push_str(&format!(
            "{},{},{},{status},{svcr},{}\n",
            r.reference_id,
            decimal(r.amount_minor, &h.currency),
            h.currency,
            h.created.to_rfc3339()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(reference: &str, attempt: i32, outcome: &str) -> LedgerRow {
        LedgerRow {
            reference_id: reference.into(),
            attempt,
            provider: "bank-a".into(),
            amount_minor: 112_500,
            outcome: outcome.into(),
            paid: outcome == "paid",
        }
    }

    fn header() -> Header {
        Header {
            message_id: "STMT-1".into(),
            account: "CRISIS-FL-1".into(),
            currency: "JOD".into(),
            created: "2026-12-02T10:00:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn amounts_are_written_in_major_units_with_the_currency_decimals() {
        assert_eq!(decimal(112_500, "JOD"), "112.500");
        assert_eq!(decimal(5, "USD"), "0.05");
        assert_eq!(decimal(700, "JPY"), "700");
    }

    #[test]
    fn each_format_lists_what_the_provider_did() {
        let rows = [
            row("aaaa-1111", 1, "rejected_retryable"),
            row("aaaa-1111", 2, "paid"),
            row("bbbb-2222", 1, "rejected_permanent"),
            row("cccc-3333", 1, "silence"),
            row("dddd-4444", 1, "already_paid"),
        ];
        let camt = camt054(&rows, &header());
        assert_eq!(camt.matches("<Ntry>").count(), 1, "{camt}");
        assert!(camt.contains("<EndToEndId>aaaa1111</EndToEndId>"));
        assert!(camt.contains(r#"<Amt Ccy="JOD">112.500</Amt>"#));
        let pain = pain002(&rows, &header());
        assert_eq!(pain.matches("<TxSts>RJCT</TxSts>").count(), 2, "{pain}");
        assert_eq!(pain.matches("<TxSts>ACSC</TxSts>").count(), 1);
        let csv = csv(&rows, &header());
        assert_eq!(csv.lines().count(), 4, "{csv}");
        assert!(csv.contains("aaaa-1111,112.500,JOD,paid,SIM-aaaa-111-2,"));
    }
}
