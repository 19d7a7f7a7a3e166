//! The OpenAPI 3.1 document of the dashboard (`schemas/dashboard.openapi.json`,
//! embedded and served at `/openapi.json`) and the small amount of reading
//! the tests need from it: which paths it documents and the schema of a
//! response, made standalone so that a JSON Schema 2020-12 validator can
//! check real answers against it.

use serde_json::{json, Value};

/// The document as served.
pub const OPENAPI: &str = include_str!("../../../schemas/dashboard.openapi.json");

/// The document, parsed.
pub fn document() -> Value {
    serde_json::from_str(OPENAPI).expect("schemas/dashboard.openapi.json is valid JSON")
}

/// Every documented path with its methods (lowercase), sorted.
pub fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            if let Some(item) = item.as_object() {
                for method in item.keys() {
                    out.push((path.clone(), method.clone()));
                }
            }
        }
    }
    out.sort();
    out
}

/// The schema of the `status` response of `GET path` in `media`, with the
/// document's components beside it so that its `#/components/...`
/// references resolve; `None` if the document does not describe it.
pub fn response_schema(doc: &Value, path: &str, status: u16, media: &str) -> Option<Value> {
    let schema = doc
        .get("paths")?
        .get(path)?
        .get("get")?
        .get("responses")?
        .get(status.to_string())?
        .get("content")?
        .get(media)?
        .get("schema")?;
    Some(json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"],
        "allOf": [schema],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_with_components() {
        let doc = document();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
        assert!(doc["components"]["schemas"]["Snapshot"].is_object());
        assert!(response_schema(&doc, "/api/snapshot", 200, "application/json").is_some());
        assert!(response_schema(&doc, "/api/snapshot", 418, "application/json").is_none());
    }
}
