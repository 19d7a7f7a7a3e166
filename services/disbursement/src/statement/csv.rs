//! The CSV statement (docs/contracts.md, "Provider statements"): the header
//! `reference,amount,currency,status,provider_ref,booked_at` exactly, then
//! one row per payment, rejection or reversal. `amount` is in major units
//! with `.` before the currency's decimals (`112.500` JOD); `status` is one
//! of `paid`, `rejected`, `reversed`; `provider_ref` and `booked_at` may be
//! empty. Strict: a wrong header, a short or long row, an unknown status or
//! currency is refused with its line number, never skipped.

use sumud_shared::money::check_currency;

use super::{amount, Entry, EntryStatus, Format, Statement, StatementError, CSV_HEADER};

const F: Format = Format::Csv;

/// The entries of a CSV statement.
pub(super) fn parse(text: &str) -> Result<Statement, StatementError> {
    let first = text
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end_matches('\r');
    if first != CSV_HEADER {
        return Err(StatementError::UnknownFormat(format!(
            "the first line is {:?}, not the CSV header",
            first.chars().take(80).collect::<String>()
        )));
    }
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(text.as_bytes());
    let mut entries = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| StatementError::invalid(F, e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        let invalid = |what: String| StatementError::invalid(F, format!("line {line}: {what}"));
        let field = |i: usize| record.get(i).unwrap_or_default().trim();
        let reference = field(0);
        if reference.is_empty() {
            return Err(invalid("no reference".into()));
        }
        let currency = field(2);
        check_currency(currency).map_err(invalid)?;
        let status = match field(3) {
            "paid" => EntryStatus::Paid,
            "rejected" => EntryStatus::Rejected,
            "reversed" => EntryStatus::Reversed,
            other => {
                return Err(invalid(format!(
                    "status {other:?}: paid, rejected or reversed"
                )))
            }
        };
        let amount = amount(F, field(1), currency).map_err(|e| invalid(e.to_string()))?;
        let optional = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        entries.push(Entry {
            reference: reference.to_owned(),
            amount: Some(amount),
            status,
            provider_ref: optional(field(4)),
            booked_at: optional(field(5)),
        });
    }
    Ok(Statement { format: F, entries })
}

#[cfg(test)]
mod tests {
    use super::super::{parse, EntryStatus, StatementError};
    use sumud_shared::money::Money;

    const CSV: &str = "reference,amount,currency,status,provider_ref,booked_at\r\n\
        0b7c9a52-3f1e-5d8a-9c4b-2a6e8f1d3c5b,112.500,JOD,paid,BANK-1,2026-12-01T09:00:00Z\r\n\
        aaaa1111,50,JOD,rejected,,\r\n\
        \"cccc3333\",12.5,JOD,reversed,\"BANK,3\",2026-12-02\r\n";

    #[test]
    fn rows_become_entries_with_exact_minor_amounts() {
        let s = parse(CSV.as_bytes()).unwrap();
        let got: Vec<(&str, i64, EntryStatus, Option<&str>)> = s
            .entries
            .iter()
            .map(|e| {
                (
                    e.reference.as_str(),
                    e.amount.as_ref().unwrap().minor,
                    e.status,
                    e.provider_ref.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "0b7c9a52-3f1e-5d8a-9c4b-2a6e8f1d3c5b",
                    112_500,
                    EntryStatus::Paid,
                    Some("BANK-1")
                ),
                ("aaaa1111", 50_000, EntryStatus::Rejected, None),
                ("cccc3333", 12_500, EntryStatus::Reversed, Some("BANK,3")),
            ]
        );
        assert_eq!(s.entries[1].booked_at, None);
        assert_eq!(
            s.entries[0].amount,
            Some(Money::new(112_500, "JOD").unwrap())
        );
    }

    #[test]
    fn a_wrong_header_is_not_a_statement() {
        let err = parse(b"ref,amount\nx,1\n").unwrap_err();
        assert!(matches!(err, StatementError::UnknownFormat(_)), "{err}");
    }

    #[test]
    fn bad_rows_are_refused_with_their_line() {
        let header = "reference,amount,currency,status,provider_ref,booked_at\n";
        for (row, why) in [
            ("x,1.000,JOD,paid,,\n", None),
            (
                "x,1.000,JOD,settled,,\n",
                Some("line 2: status \"settled\""),
            ),
            ("x,1.0001,JOD,paid,,\n", Some("line 2")),
            ("x,1,XXX,paid,,\n", Some("line 2")),
            ("x,-1,JOD,paid,,\n", Some("line 2")),
            (",1,JOD,paid,,\n", Some("line 2: no reference")),
            ("x,1,JOD,paid\n", Some("")),
        ] {
            let got = parse(format!("{header}{row}").as_bytes());
            match why {
                None => assert!(got.is_ok(), "{row}: {got:?}"),
                Some(why) => {
                    let err = got.expect_err(row).to_string();
                    assert!(err.contains(why), "{row}: {err}");
                }
            }
        }
    }
}
