//! A payment provider's own account of what it paid, read from the file it
//! sends (ISO 20022 camt.054 debit notifications, pain.002 status reports,
//! or the CSV of docs/contracts.md), and compared with our instructions
//! (`compare`). Pure: the caller reads the file and our rows; nothing here
//! touches a database or the file system.
//!
//! Every format becomes the same list of [`Entry`]s: one per payment,
//! rejection or reversal the provider lists, keyed by the reference we
//! gave it (the instruction id, which pain.001 sends as `EndToEndId`).

mod camt054;
mod compare;
mod csv;
mod pain002;
mod xml;

use serde::Serialize;
use sumud_shared::money::Money;

pub use compare::{compare, Kind, Line, Ours, Reconciliation};

/// The CSV statement's header, exactly (docs/contracts.md).
pub const CSV_HEADER: &str = "reference,amount,currency,status,provider_ref,booked_at";

/// The formats a statement may come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// ISO 20022 camt.054 (BankToCustomerDebitCreditNotification).
    Camt054,
    /// ISO 20022 pain.002 (CustomerPaymentStatusReport).
    Pain002,
    /// The CSV of docs/contracts.md.
    Csv,
}

impl Format {
    /// How the format is named in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Camt054 => "camt.054",
            Format::Pain002 => "pain.002",
            Format::Csv => "CSV",
        }
    }
}

/// What the provider says became of one payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryStatus {
    /// Paid out (camt.054 booked debit, pain.002 ACSC/ACCC, CSV `paid`).
    Paid,
    /// Refused (pain.002 RJCT, CSV `rejected`).
    Rejected,
    /// A payment taken back (camt.054 `RvslInd` true, CSV `reversed`).
    Reversed,
    /// Not final yet (camt.054 PDNG/INFO, pain.002 PDNG, ACSP, …).
    Pending,
}

/// One line of a statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// The reference as the provider wrote it (our instruction id, with or
    /// without hyphens); empty when the entry carries none.
    pub reference: String,
    /// The amount, when the statement states one (pain.002 may not).
    pub amount: Option<Money>,
    /// What the provider says happened.
    pub status: EntryStatus,
    /// The provider's own reference of the payment, if given.
    pub provider_ref: Option<String>,
    /// When it was booked, as the statement says (date or date-time).
    pub booked_at: Option<String>,
}

/// A parsed statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Statement {
    /// The format it came in.
    pub format: Format,
    /// Its entries, in file order.
    pub entries: Vec<Entry>,
}

/// Why a statement could not be read; the message says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatementError {
    /// Neither ISO 20022 XML we read nor our CSV.
    #[error(
        "not a statement Sumud reads ({0}): send camt.054, pain.002 or a CSV with the header `{CSV_HEADER}`"
    )]
    UnknownFormat(String),
    /// The format was recognised but the content is wrong.
    #[error("{format} statement: {message}")]
    Invalid {
        /// The format recognised.
        format: &'static str,
        /// What is wrong, and where.
        message: String,
    },
}

impl StatementError {
    fn invalid(format: Format, message: impl Into<String>) -> Self {
        StatementError::Invalid {
            format: format.as_str(),
            message: message.into(),
        }
    }
}

/// Reads a statement in any accepted format, recognised by its content: an
/// XML document by its root message element, anything else as the CSV.
pub fn parse(bytes: &[u8]) -> Result<Statement, StatementError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| StatementError::UnknownFormat(format!("not UTF-8 text: {e}")))?;
    let text = text.trim_start_matches('\u{feff}');
    if text.trim_start().starts_with('<') {
        let doc = xml::parse(text)?;
        let message = doc.first_child().ok_or_else(|| {
            StatementError::UnknownFormat("the XML document holds no message".into())
        })?;
        let ns = message.namespace.as_str();
        match message.name.as_str() {
            "BkToCstmrDbtCdtNtfctn" if iso(ns, "camt.054") => camt054::parse(message),
            "CstmrPmtStsRpt" if iso(ns, "pain.002") => pain002::parse(message),
            other => Err(StatementError::UnknownFormat(format!(
                "XML message {other} in namespace {ns:?}"
            ))),
        }
    } else {
        csv::parse(text)
    }
}

/// Whether `ns` is an ISO 20022 namespace of `message` (any version), or
/// absent (a document written without one).
fn iso(ns: &str, message: &str) -> bool {
    ns.is_empty()
        || ns
            .strip_prefix("urn:iso:std:iso:20022:tech:xsd:")
            .is_some_and(|rest| rest.starts_with(&format!("{message}.")))
}

/// The key a reference is matched by: the instruction id as pain.001 sends
/// it (hyphens dropped), in lower case (a UUID's hex digits in either case
/// are the same id).
pub fn reference_key(reference: &str) -> String {
    crate::pain001::end_to_end_id(reference.trim()).to_ascii_lowercase()
}

/// An amount as ISO 20022 and the CSV write it: major units, `.` before
/// the currency's decimals.
fn amount(format: Format, text: &str, currency: &str) -> Result<Money, StatementError> {
    Money::parse_major(text, currency).map_err(|e| StatementError::invalid(format, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_match_with_or_without_hyphens_and_in_either_case() {
        let id = "0b7c9a52-3f1e-5d8a-9c4b-2a6e8f1d3c5b";
        assert_eq!(reference_key(id), "0b7c9a523f1e5d8a9c4b2a6e8f1d3c5b");
        assert_eq!(
            reference_key("0B7C9A523F1E5D8A9C4B2A6E8F1D3C5B"),
            reference_key(id)
        );
    }

    #[test]
    fn an_xml_message_that_is_no_statement_is_refused_by_name() {
        let xml = r#"<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"><CstmrCdtTrfInitn/></Document>"#;
        let err = parse(xml.as_bytes()).unwrap_err();
        assert!(matches!(err, StatementError::UnknownFormat(_)), "{err}");
        assert!(err.to_string().contains("CstmrCdtTrfInitn"), "{err}");
    }

    #[test]
    fn a_camt_message_under_a_pain_namespace_is_refused() {
        let xml = r#"<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.10"><BkToCstmrDbtCdtNtfctn/></Document>"#;
        assert!(matches!(
            parse(xml.as_bytes()),
            Err(StatementError::UnknownFormat(_))
        ));
    }

    #[test]
    fn binary_garbage_is_not_a_statement() {
        assert!(matches!(
            parse(&[0xff, 0xfe, 0x00]),
            Err(StatementError::UnknownFormat(_))
        ));
    }
}
