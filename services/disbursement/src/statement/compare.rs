//! Our instructions against the provider's statement, reference by
//! reference. Per reference, the provider's net payments (entries paid
//! minus entries reversed) meet our stored status:
//!
//! | ours \ provider's net | none listed | ≤ 0 (rejected, reversed, pending) | 1 | ≥ 2 |
//! |---|---|---|---|---|
//! | `succeeded` | missing | status differs | matched or amount mismatch | paid twice |
//! | `failed`, `reversed` | (not listed) | matched | paid twice | paid twice |
//! | still open | missing | pending | status differs | paid twice |
//! | not ours | — | unknown | unknown | unknown |
//!
//! "Paid twice" is money out twice: the provider paid a reference twice, or
//! paid one we recorded as failed or reversed (its money went back to the
//! budget and may have been paid again). "Pending" is not a discrepancy:
//! neither side has a final outcome yet.

use std::collections::BTreeMap;

use serde::Serialize;
use sumud_shared::money::Money;

use super::{reference_key, Entry, EntryStatus, Format, Statement};

/// One of our instructions, as the comparison needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ours {
    /// The instruction id (the reference the provider was given).
    pub instruction_id: String,
    /// Its latest attempt.
    pub attempt: i32,
    /// The provider holding it.
    pub provider: String,
    /// Its stored status (`succeeded`, `failed`, `reversed`, `instructed`, …).
    pub status: String,
    /// Its amount.
    pub amount: Money,
    /// The provider's reference of the payment, as its status report gave it.
    pub provider_ref: Option<String>,
}

/// What a reference's comparison found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Both sides agree (paid once with the same amount, or not paid).
    Matched,
    /// Paid once on both sides, for a different amount or currency.
    AmountMismatch,
    /// The statement lists a reference that is none of ours.
    Unknown,
    /// Ours (paid or open), not on the statement.
    Missing,
    /// Paid more than once, or paid after we recorded it failed/reversed.
    PaidTwice,
    /// The outcomes differ: we recorded it paid and the provider did not
    /// pay it, or the provider paid one we still hold open.
    StatusDiffers,
    /// Neither side final yet; not a discrepancy.
    Pending,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 7] = [
        Kind::Matched,
        Kind::AmountMismatch,
        Kind::Unknown,
        Kind::Missing,
        Kind::PaidTwice,
        Kind::StatusDiffers,
        Kind::Pending,
    ];

    /// Its name in output (`amount_mismatch`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Matched => "matched",
            Kind::AmountMismatch => "amount_mismatch",
            Kind::Unknown => "unknown",
            Kind::Missing => "missing",
            Kind::PaidTwice => "paid_twice",
            Kind::StatusDiffers => "status_differs",
            Kind::Pending => "pending",
        }
    }

    /// Whether it needs an operator's attention (exit status 3).
    pub fn is_discrepancy(self) -> bool {
        !matches!(self, Kind::Matched | Kind::Pending)
    }
}

/// One reference's comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    /// Our instruction id when it is ours, else the reference as written.
    pub reference: String,
    /// Our instruction, if it is ours.
    pub ours: Option<Ours>,
    /// The statement's entries for it, in file order.
    pub theirs: Vec<Entry>,
    /// Why it landed where it did, in one sentence.
    pub note: String,
}

/// A statement compared with our instructions: every reference on either
/// side in exactly one list (failed or reversed instructions the statement
/// does not list are consistent and in none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reconciliation {
    /// The statement's format.
    pub format: Format,
    /// Entries read from the statement.
    pub entries: usize,
    /// Agreeing references.
    pub matched: Vec<Line>,
    /// Paid once on both sides, different amount.
    pub amount_mismatch: Vec<Line>,
    /// Paid by the provider, not ours.
    pub unknown: Vec<Line>,
    /// Ours, not on the statement.
    pub missing: Vec<Line>,
    /// Money out twice.
    pub paid_twice: Vec<Line>,
    /// Outcomes that differ.
    pub status_differs: Vec<Line>,
    /// Neither side final.
    pub pending: Vec<Line>,
}

impl Reconciliation {
    /// The lines of one kind.
    pub fn lines(&self, kind: Kind) -> &[Line] {
        match kind {
            Kind::Matched => &self.matched,
            Kind::AmountMismatch => &self.amount_mismatch,
            Kind::Unknown => &self.unknown,
            Kind::Missing => &self.missing,
            Kind::PaidTwice => &self.paid_twice,
            Kind::StatusDiffers => &self.status_differs,
            Kind::Pending => &self.pending,
        }
    }

    fn lines_mut(&mut self, kind: Kind) -> &mut Vec<Line> {
        match kind {
            Kind::Matched => &mut self.matched,
            Kind::AmountMismatch => &mut self.amount_mismatch,
            Kind::Unknown => &mut self.unknown,
            Kind::Missing => &mut self.missing,
            Kind::PaidTwice => &mut self.paid_twice,
            Kind::StatusDiffers => &mut self.status_differs,
            Kind::Pending => &mut self.pending,
        }
    }

    /// How many references need attention.
    pub fn discrepancies(&self) -> usize {
        Kind::ALL
            .iter()
            .filter(|k| k.is_discrepancy())
            .map(|k| self.lines(*k).len())
            .sum()
    }
}

/// Compares `ours` (one crisis's instructions) with `statement`.
pub fn compare(ours: &[Ours], statement: &Statement) -> Reconciliation {
    let mut theirs: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
    for e in &statement.entries {
        theirs
            .entry(reference_key(&e.reference))
            .or_default()
            .push(e.clone());
    }
    let mut out = Reconciliation {
        format: statement.format,
        entries: statement.entries.len(),
        matched: Vec::new(),
        amount_mismatch: Vec::new(),
        unknown: Vec::new(),
        missing: Vec::new(),
        paid_twice: Vec::new(),
        status_differs: Vec::new(),
        pending: Vec::new(),
    };
    for o in ours {
        let entries = theirs
            .remove(&reference_key(&o.instruction_id))
            .unwrap_or_default();
        if let Some((kind, note)) = judge(o, &entries) {
            out.lines_mut(kind).push(Line {
                reference: o.instruction_id.clone(),
                ours: Some(o.clone()),
                theirs: entries,
                note,
            });
        }
    }
    for (_, entries) in theirs {
        out.unknown.push(Line {
            reference: entries[0].reference.clone(),
            ours: None,
            note: "the statement lists a reference that is none of this crisis's instructions"
                .into(),
            theirs: entries,
        });
    }
    for kind in Kind::ALL {
        out.lines_mut(kind)
            .sort_by(|a, b| a.reference.cmp(&b.reference));
    }
    out
}

/// Where one of our instructions lands, and why; `None` for a failed or
/// reversed one the statement does not list (consistent, nothing to say).
fn judge(o: &Ours, entries: &[Entry]) -> Option<(Kind, String)> {
    let count = |s: EntryStatus| entries.iter().filter(|e| e.status == s).count() as i64;
    let net = count(EntryStatus::Paid) - count(EntryStatus::Reversed);
    let paid = o.status == "succeeded";
    let closed = matches!(o.status.as_str(), "failed" | "reversed");
    let listed: Vec<&str> = entries.iter().map(|e| status_word(e.status)).collect();
    let listed = listed.join(", ");
    Some(match (entries.is_empty(), net) {
        (true, _) if closed => return None,
        (true, _) => (
            Kind::Missing,
            format!("we hold it {}; the statement does not list it", o.status),
        ),
        (false, n) if n >= 2 => (
            Kind::PaidTwice,
            format!(
                "the provider lists it paid {n} times (we hold it {})",
                o.status
            ),
        ),
        (false, 1) if closed => (
            Kind::PaidTwice,
            format!(
                "the provider paid it after we recorded it {}: its money went back to the budget",
                o.status
            ),
        ),
        (false, 1) if paid => {
            let amounts: Vec<&Money> = entries
                .iter()
                .filter(|e| e.status == EntryStatus::Paid)
                .filter_map(|e| e.amount.as_ref())
                .collect();
            match amounts.iter().find(|a| ***a != o.amount) {
                Some(a) => (
                    Kind::AmountMismatch,
                    format!(
                        "paid {} by the provider, {} instructed",
                        a.display(),
                        o.amount.display()
                    ),
                ),
                None if amounts.is_empty() => (
                    Kind::Matched,
                    "paid on both sides (the statement states no amount)".into(),
                ),
                None => (Kind::Matched, "paid on both sides, same amount".into()),
            }
        }
        (false, 1) => (
            Kind::StatusDiffers,
            format!("the provider paid it; we still hold it {}", o.status),
        ),
        (false, _) if paid => (
            Kind::StatusDiffers,
            format!("we recorded it paid; the provider lists it {listed}"),
        ),
        (false, _) if closed => (
            Kind::Matched,
            format!(
                "not paid on either side ({}; the provider: {listed})",
                o.status
            ),
        ),
        (false, _) => (
            Kind::Pending,
            format!(
                "not final on either side ({}; the provider: {listed})",
                o.status
            ),
        ),
    })
}

fn status_word(s: EntryStatus) -> &'static str {
    match s {
        EntryStatus::Paid => "paid",
        EntryStatus::Rejected => "rejected",
        EntryStatus::Reversed => "reversed",
        EntryStatus::Pending => "pending",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jod(minor: i64) -> Money {
        Money::new(minor, "JOD").unwrap()
    }

    fn ours(id: &str, status: &str, minor: i64) -> Ours {
        Ours {
            instruction_id: id.into(),
            attempt: 1,
            provider: "bank-a".into(),
            status: status.into(),
            amount: jod(minor),
            provider_ref: None,
        }
    }

    fn entry(reference: &str, status: EntryStatus, minor: Option<i64>) -> Entry {
        Entry {
            reference: reference.into(),
            amount: minor.map(jod),
            status,
            provider_ref: None,
            booked_at: None,
        }
    }

    fn refs(r: &Reconciliation, kind: Kind) -> Vec<&str> {
        r.lines(kind).iter().map(|l| l.reference.as_str()).collect()
    }

    #[test]
    fn every_cell_of_the_table_lands_where_the_module_says() {
        use EntryStatus::*;
        let ours = vec![
            ours("aa-01", "succeeded", 100),  // matched
            ours("aa-02", "succeeded", 100),  // amount mismatch
            ours("aa-03", "succeeded", 100),  // missing
            ours("aa-04", "succeeded", 100),  // paid twice
            ours("aa-05", "failed", 100),     // paid after failure: paid twice
            ours("aa-06", "failed", 100),     // rejected on both: matched
            ours("aa-07", "failed", 100),     // not listed: nowhere
            ours("aa-08", "succeeded", 100),  // reversed by the provider: differs
            ours("aa-09", "instructed", 100), // paid by them, open here: differs
            ours("aa-10", "pending", 100),    // pending on both
            ours("aa-11", "reversed", 100),   // paid then reversed: matched
            ours("aa-12", "instructed", 100), // open, not listed: missing
            ours("aa-13", "succeeded", 100),  // no amount stated: matched
        ];
        let statement = Statement {
            format: Format::Csv,
            entries: vec![
                entry("AA01", Paid, Some(100)),
                entry("aa02", Paid, Some(101)),
                entry("aa04", Paid, Some(100)),
                entry("aa-04", Paid, Some(100)),
                entry("aa05", Paid, Some(100)),
                entry("aa06", Rejected, None),
                entry("aa08", Paid, Some(100)),
                entry("aa08", Reversed, Some(100)),
                entry("aa09", Paid, Some(100)),
                entry("aa10", Pending, None),
                entry("aa11", Paid, Some(100)),
                entry("aa11", Reversed, Some(100)),
                entry("aa13", Paid, None),
                entry("zz99", Paid, Some(100)),
            ],
        };
        let r = compare(&ours, &statement);
        assert_eq!(
            refs(&r, Kind::Matched),
            ["aa-01", "aa-06", "aa-11", "aa-13"]
        );
        assert_eq!(refs(&r, Kind::AmountMismatch), ["aa-02"]);
        assert_eq!(refs(&r, Kind::Missing), ["aa-03", "aa-12"]);
        assert_eq!(refs(&r, Kind::PaidTwice), ["aa-04", "aa-05"]);
        assert_eq!(refs(&r, Kind::StatusDiffers), ["aa-08", "aa-09"]);
        assert_eq!(refs(&r, Kind::Pending), ["aa-10"]);
        assert_eq!(refs(&r, Kind::Unknown), ["zz99"]);
        assert_eq!(r.discrepancies(), 1 + 2 + 2 + 2 + 1);
        assert_eq!(r.entries, 14);
        assert_eq!(r.paid_twice[0].theirs.len(), 2, "both payments shown");
        assert!(
            r.amount_mismatch[0].note.contains("0.101 JOD"),
            "{}",
            r.amount_mismatch[0].note
        );
    }

    #[test]
    fn a_different_currency_is_an_amount_mismatch() {
        let statement = Statement {
            format: Format::Csv,
            entries: vec![Entry {
                amount: Some(Money::new(100, "USD").unwrap()),
                ..entry("aa01", EntryStatus::Paid, None)
            }],
        };
        let r = compare(&[ours("aa-01", "succeeded", 100)], &statement);
        assert_eq!(refs(&r, Kind::AmountMismatch), ["aa-01"]);
    }

    #[test]
    fn an_entry_without_a_reference_is_unknown() {
        let statement = Statement {
            format: Format::Camt054,
            entries: vec![entry("", EntryStatus::Paid, Some(5))],
        };
        let r = compare(&[], &statement);
        assert_eq!(r.unknown.len(), 1);
        assert_eq!(r.discrepancies(), 1);
    }
}
