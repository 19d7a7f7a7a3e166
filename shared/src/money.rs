//! Money as an integer count of minor units plus an ISO 4217 currency.
//! Floating point never touches an amount.

use serde::{Deserialize, Serialize};

/// An amount of money. `minor` is in the currency's smallest unit (fils for
/// JOD, which has three decimals; cents for USD).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    /// Amount in minor units.
    pub minor: i64,
    /// ISO 4217 alphabetic code.
    pub currency: String,
}

/// Minor-unit exponent of an ISO 4217 currency, from the maintained
/// `iso_currency` table (JOD 3, USD 2, JPY 0, …). Codes [`Money::new`]
/// accepts always have one; anything else reads as 2.
pub fn minor_unit_exponent(currency: &str) -> u32 {
    iso_currency::Currency::from_code(currency)
        .and_then(|c| c.exponent())
        .map_or(2, u32::from)
}

/// Whether `code` is a currency money can be paid in: a current ISO 4217
/// code with minor units, not a fund, precious metal, test or superseded
/// code. `Err` says why not.
pub fn check_currency(code: &str) -> Result<(), String> {
    let Some(c) = iso_currency::Currency::from_code(code) else {
        return Err(format!("{code:?} is not an ISO 4217 currency code"));
    };
    if c.exponent().is_none() || c.is_fund() || c.is_special() {
        return Err(format!(
            "{code} ({}) is an ISO 4217 code but not a currency payments are made in",
            c.name()
        ));
    }
    if let Some(now) = c.is_superseded() {
        return Err(format!("{code} is superseded by {}", now.code()));
    }
    Ok(())
}

impl Money {
    /// Builds an amount in a currency payments are made in (see
    /// [`check_currency`]).
    pub fn new(minor: i64, currency: &str) -> Result<Self, String> {
        check_currency(currency)?;
        Ok(Money {
            minor,
            currency: currency.to_owned(),
        })
    }

    /// Decimal rendering in major units, e.g. `12.500 JOD`.
    pub fn display(&self) -> String {
        let exp = minor_unit_exponent(&self.currency);
        if exp == 0 {
            return format!("{} {}", self.minor, self.currency);
        }
        let scale = 10i64.pow(exp);
        let sign = if self.minor < 0 { "-" } else { "" };
        let abs = self.minor.unsigned_abs();
        format!(
            "{sign}{}.{:0width$} {}",
            abs / scale as u64,
            abs % scale as u64,
            self.currency,
            width = exp as usize
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jordanian_dinar_has_three_decimals() {
        assert_eq!(Money::new(12_500, "JOD").unwrap().display(), "12.500 JOD");
        assert_eq!(Money::new(-5, "USD").unwrap().display(), "-0.05 USD");
    }

    #[test]
    fn lowercase_or_long_codes_are_not_currencies() {
        assert!(Money::new(1, "jod").is_err());
        assert!(Money::new(1, "JODX").is_err());
    }

    #[test]
    fn only_current_iso_4217_currencies_with_minor_units_are_money() {
        // Three capitals are not enough: unknown, metal, fund and test codes.
        for code in ["ABC", "XAU", "BOV", "XXX", "XTS"] {
            assert!(Money::new(1, code).is_err(), "{code}");
        }
        // Exponents from the ISO table (checked against ISO 4217's list:
        // IQD 3, KWD 3, JPY 0, CLP 0, UGX 0, ISK 0, USD 2).
        for (code, exp) in [
            ("IQD", 3),
            ("KWD", 3),
            ("JPY", 0),
            ("CLP", 0),
            ("UGX", 0),
            ("ISK", 0),
            ("USD", 2),
        ] {
            assert!(Money::new(1, code).is_ok(), "{code}");
            assert_eq!(minor_unit_exponent(code), exp, "{code}");
        }
    }
}

impl Money {
    /// Parses a decimal amount in major units (`"250000.500"`) exactly, with
    /// no floating point; more decimals than the currency has is an error.
    pub fn parse_major(text: &str, currency: &str) -> Result<Self, String> {
        let exp = minor_unit_exponent(currency) as usize;
        let (whole, frac) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
        if whole.is_empty()
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(format!("{text:?} is not a decimal amount like 1250.500"));
        }
        if frac.len() > exp {
            return Err(format!("{currency} has {exp} decimals; {text:?} has more"));
        }
        let digits = format!("{whole}{frac:0<exp$}");
        let minor: i64 = digits
            .parse()
            .map_err(|_| format!("{text:?} is too large"))?;
        Money::new(minor, currency)
    }
}

#[cfg(test)]
mod parse_tests {
    use super::*;

    #[test]
    fn major_amounts_parse_exactly() {
        assert_eq!(
            Money::parse_major("250000.5", "JOD").unwrap().minor,
            250_000_500
        );
        assert_eq!(Money::parse_major("12", "USD").unwrap().minor, 1200);
        assert!(Money::parse_major("1.2345", "JOD").is_err());
        assert!(Money::parse_major("-3", "JOD").is_err());
        assert!(Money::parse_major("1e5", "JOD").is_err());
    }
}
