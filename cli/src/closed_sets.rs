//! The closed sets an operator types — hazards, severities, overlap rules,
//! roles — checked by clap before anything runs: a value outside the set is
//! a usage error (exit 2) that lists the allowed ones. Hazards, severities
//! and overlap rules are read from the contract itself
//! (`schemas/crisis.event.schema.json`), so the CLI can never offer what
//! control would refuse, nor refuse what it accepts.

use std::sync::LazyLock;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use serde::de::DeserializeOwned;
use serde_json::Value;
use sumud_shared::events::crisis::{Hazard, Severity};
use sumud_shared::playbook::OverlapRule;

static CRISIS_SCHEMA: LazyLock<Value> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../../schemas/crisis.event.schema.json"))
        .expect("the crisis schema is JSON")
});

/// The `enum` at `pointer` in the crisis schema.
fn names(pointer: &str) -> Vec<&'static str> {
    CRISIS_SCHEMA
        .pointer(pointer)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("the crisis schema has an enum at {pointer}"))
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

const HAZARD: &str = "/$defs/definition/properties/hazard/enum";
const SEVERITY: &str = "/$defs/definition/properties/severity/enum";
const OVERLAP: &str =
    "/$defs/definition/properties/response/properties/overrides/properties/overlap/enum";

/// Parses a name the schema allows into its Rust type (they agree: a test
/// holds them to it).
fn typed<T: DeserializeOwned + Clone + Send + Sync + 'static>(
    pointer: &str,
) -> impl TypedValueParser<Value = T> {
    PossibleValuesParser::new(names(pointer)).map(|s: String| {
        serde_json::from_value(Value::String(s)).expect("the schema's names are the type's")
    })
}

/// `--hazard`.
pub fn hazard() -> impl TypedValueParser<Value = Hazard> {
    typed(HAZARD)
}

/// `--severity`.
pub fn severity() -> impl TypedValueParser<Value = Severity> {
    typed(SEVERITY)
}

/// `--overlap`.
pub fn overlap() -> impl TypedValueParser<Value = OverlapRule> {
    typed(OVERLAP)
}

/// `--roles`.
pub fn role() -> PossibleValuesParser {
    PossibleValuesParser::new(sumud_control::lifecycle::Role::NAMES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_parse<T: DeserializeOwned + std::fmt::Debug>(pointer: &str) -> usize {
        let names = names(pointer);
        for n in &names {
            serde_json::from_value::<T>(Value::String(n.to_string())).unwrap_or_else(|e| {
                panic!(
                    "{n} at {pointer} is not a {}: {e}",
                    std::any::type_name::<T>()
                )
            });
        }
        names.len()
    }

    #[test]
    fn every_name_the_contract_allows_is_one_of_the_types() {
        assert_eq!(all_parse::<Hazard>(HAZARD), 9);
        assert_eq!(all_parse::<Severity>(SEVERITY), 4);
        assert_eq!(all_parse::<OverlapRule>(OVERLAP), 3);
        for r in sumud_control::lifecycle::Role::NAMES {
            assert!(sumud_control::lifecycle::Role::parse(r).is_some(), "{r}");
        }
    }

    #[test]
    fn a_value_outside_the_set_is_a_usage_error_that_lists_the_set() {
        use clap::Parser;
        #[derive(Parser, Debug)]
        struct Cli {
            #[arg(long, value_parser = hazard())]
            hazard: Hazard,
        }
        let ok = Cli::try_parse_from(["x", "--hazard", "price_shock"]).unwrap();
        assert_eq!(ok.hazard, Hazard::PriceShock);
        let err = Cli::try_parse_from(["x", "--hazard", "tsunami"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let text = err.to_string();
        assert!(
            text.contains("tsunami") && text.contains("cold_wave"),
            "{text}"
        );
    }
}
