//! The JSON Schemas in `schemas/`, compiled once and looked up by event type.
//!
//! The schema files are the contract shared with other agencies; they are
//! embedded at build time so a running service can never drift from the
//! contract it was built against.

use std::collections::HashMap;
use std::sync::LazyLock;

use jsonschema::Validator;
use serde_json::Value;

/// One schema file and the event type it describes.
struct Contract {
    event_type: &'static str,
    file: &'static str,
    text: &'static str,
}

macro_rules! contract {
    ($event_type:expr, $file:literal) => {
        Contract {
            event_type: $event_type,
            file: $file,
            text: include_str!(concat!("../../schemas/", $file)),
        }
    };
}

/// Every event type with its schema file. Adding an event type means adding
/// a line here and a file (with examples) in `schemas/`.
fn contracts() -> Vec<Contract> {
    use crate::events::{
        alert, assistance, control, crisis, deadletter, entitlement, household, payment, referral,
        task,
    };
    vec![
        contract!(alert::ALERT_CAP, "alert.cap.schema.json"),
        contract!(alert::INDICATOR_READING, "indicator.reading.schema.json"),
        contract!(control::CONTROL_COMMAND, "control.command.schema.json"),
        contract!(crisis::CRISIS_PROPOSED, "crisis.event.schema.json"),
        contract!(crisis::CRISIS_ACTIVATED, "crisis.event.schema.json"),
        contract!(crisis::CRISIS_AMENDED, "crisis.event.schema.json"),
        contract!(
            crisis::CRISIS_AMENDMENT_PROPOSED,
            "crisis.event.schema.json"
        ),
        contract!(crisis::CRISIS_CLOSED, "crisis.event.schema.json"),
        contract!(
            entitlement::ENTITLEMENT_DECIDED,
            "entitlement.decided.schema.json"
        ),
        contract!(
            household::HOUSEHOLD_UPSERTED,
            "household.upserted.schema.json"
        ),
        contract!(
            household::HOUSEHOLD_REMOVED,
            "household.removed.schema.json"
        ),
        contract!(
            deadletter::DEADLETTER_RECORDED,
            "deadletter.recorded.schema.json"
        ),
        contract!(
            payment::INSTRUCTION_ISSUED,
            "payment.instruction.schema.json"
        ),
        contract!(payment::PAYMENT_STATUS, "payment.status.schema.json"),
        contract!(task::TASK_OPENED, "task.event.schema.json"),
        contract!(task::TASK_ASSIGNED, "task.event.schema.json"),
        contract!(task::TASK_RESOLVED, "task.event.schema.json"),
        contract!(task::TASK_COMMAND, "task.command.schema.json"),
        contract!(
            assistance::PARTNER_ASSISTANCE,
            "assistance.partner.schema.json"
        ),
        contract!(assistance::SUMUD_ASSISTANCE, "assistance.sumud.schema.json"),
        contract!(referral::REFERRAL_RECORDED, "referral.recorded.schema.json"),
        contract!(
            referral::REFERRAL_ACKNOWLEDGED,
            "referral.acknowledged.schema.json"
        ),
    ]
}

const ENVELOPE_SCHEMA: &str = include_str!("../../schemas/cloudevent.schema.json");

/// The URI a producer puts in `dataschema` for an event type.
pub fn schema_uri(event_type: &str) -> String {
    let short = event_type.strip_prefix("org.sumud.").unwrap_or(event_type);
    format!("urn:sumud:schema:{short}:v1")
}

/// Compiled validators for the envelope and for every event type's `data`.
pub struct SchemaRegistry {
    envelope: Validator,
    by_type: HashMap<&'static str, Validator>,
    files: HashMap<&'static str, &'static str>,
}

static GLOBAL: LazyLock<SchemaRegistry> = LazyLock::new(SchemaRegistry::build);

fn compile(name: &str, text: &str) -> Validator {
    let schema: Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("schemas/{name} is not valid JSON: {e}"));
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("schemas/{name} is not a valid JSON Schema: {e}"))
}

impl SchemaRegistry {
    /// The process-wide registry; schemas are compiled on first use.
    pub fn global() -> &'static SchemaRegistry {
        &GLOBAL
    }

    fn build() -> Self {
        let mut by_type = HashMap::new();
        let mut files = HashMap::new();
        for c in contracts() {
            by_type.insert(c.event_type, compile(c.file, c.text));
            files.insert(c.event_type, c.file);
        }
        SchemaRegistry {
            envelope: compile("cloudevent.schema.json", ENVELOPE_SCHEMA),
            by_type,
            files,
        }
    }

    /// Every event type that has a schema, with its file name under `schemas/`.
    pub fn event_types(&self) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
        self.files.iter().map(|(t, f)| (*t, *f))
    }

    /// Checks the CloudEvents attributes (not `data`).
    pub fn validate_envelope(&self, event: &Value) -> Result<(), String> {
        first_error(&self.envelope, event)
    }

    /// Checks `data` against the schema of its event type.
    pub fn validate_data(&self, event_type: &str, data: &Value) -> Result<(), String> {
        match self.by_type.get(event_type) {
            Some(v) => first_error(v, data),
            None => Err(format!("no schema for event type {event_type:?}")),
        }
    }
}

/// The first violation, as "at /path: message". Validation messages quote
/// the offending value: under `personal` (a registry record's identifiers)
/// only the broken keyword is named, and elsewhere the message is cut short,
/// to keep personal data out of dead-letter details and logs.
fn first_error(validator: &Validator, instance: &Value) -> Result<(), String> {
    match validator.iter_errors(instance).next() {
        None => Ok(()),
        Some(e) => {
            let path = e.instance_path().to_string();
            let personal = crate::deadletter::under_personal(&path, '/');
            Err(if personal {
                format!(
                    "at {path}: breaks `{}` (value withheld: personal data)",
                    e.kind().keyword()
                )
            } else {
                crate::deadletter::cut_short(format!("at {path}: {e}"), 200)
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::household::HOUSEHOLD_UPSERTED;

    #[test]
    fn a_personal_value_that_breaks_the_schema_is_not_quoted() {
        let example =
            include_str!("../../schemas/examples/household.upserted/valid/with-personal-data.json");
        let mut data = serde_json::from_str::<Value>(example).unwrap()["data"].take();
        data["personal"]["name"] = "Canary Qasem ".repeat(20).into();
        let err = SchemaRegistry::global()
            .validate_data(HOUSEHOLD_UPSERTED, &data)
            .unwrap_err();
        assert!(
            err.starts_with("at /personal/name: breaks `maxLength`"),
            "{err}"
        );
        assert!(!err.contains("Canary"), "{err}");
    }
}
