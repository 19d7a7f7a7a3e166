//! The contracts in `schemas/`, embedded and served under `/schemas/`: the
//! AsyncAPI 3.0 document of every topic (`/schemas/asyncapi.json`) and the
//! JSON Schemas it references by relative path, so that a provider's
//! integrator can browse the channels or generate a client from the running
//! system, and what is served can never drift from what was built.

/// `(file name, contents)` of one file of `schemas/`.
macro_rules! contract {
    ($file:literal) => {
        ($file, include_str!(concat!("../../../schemas/", $file)))
    };
}

/// Every file of `schemas/` (a test keeps this list complete).
pub const FILES: &[(&str, &str)] = &[
    contract!("alert.cap.schema.json"),
    contract!("assistance.partner.schema.json"),
    contract!("assistance.sumud.schema.json"),
    contract!("asyncapi.json"),
    contract!("caseload.row.schema.json"),
    contract!("cloudevent.schema.json"),
    contract!("control.command.schema.json"),
    contract!("crisis.event.schema.json"),
    contract!("dashboard.openapi.json"),
    contract!("deadletter.recorded.schema.json"),
    contract!("entitlement.decided.schema.json"),
    contract!("household.removed.schema.json"),
    contract!("household.upserted.schema.json"),
    contract!("indicator.reading.schema.json"),
    contract!("payment.instruction.schema.json"),
    contract!("payment.status.schema.json"),
    contract!("referral.acknowledged.schema.json"),
    contract!("referral.recorded.schema.json"),
    contract!("task.command.schema.json"),
    contract!("task.event.schema.json"),
];

/// The file `name` of `schemas/`, if there is one.
pub fn file(name: &str) -> Option<&'static str> {
    FILES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_schemas_is_served_and_no_other() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json"))
            .collect();
        on_disk.sort();
        let served: Vec<String> = FILES.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(served, on_disk);
        for (name, text) in FILES {
            serde_json::from_str::<serde_json::Value>(text)
                .unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
        }
    }
}
