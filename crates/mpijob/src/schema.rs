//! Validation against the MPIJob CRD's OpenAPI schema, with unknown fields rejected.
//!
//! The CRD (`schema/kubeflow.org_mpijobs.yaml`, copied unmodified from kubeflow/mpi-operator
//! v0.8.2 with its Apache-2.0 licence) is compiled into the crate. As shipped it lets misspelt
//! fields through, so before compiling it this module tightens it the way kubeconform's strict
//! mode does:
//! - every object schema that lists `properties` gets `additionalProperties: false` (unless it
//!   says `x-kubernetes-preserve-unknown-fields`);
//! - every `x-kubernetes-int-or-string` node, which has no `type`, gets `anyOf: [integer, string]`.
//!
//! OpenAPI 3.0 schema objects are closest to JSON Schema draft 4, which is what it is compiled as.

use std::sync::OnceLock;

use serde_json::Value;

use crate::error::Problems;

/// The CRD exactly as kubeflow/mpi-operator ships it.
pub const CRD_YAML: &str = include_str!("../schema/kubeflow.org_mpijobs.yaml");

static VALIDATOR: OnceLock<Result<jsonschema::Validator, String>> = OnceLock::new();

/// The strict schema of one MPIJob document (`spec.versions[0].schema.openAPIV3Schema`, tightened).
pub fn strict_schema() -> Result<Value, String> {
    let crd: Value = serde_yaml::from_str(CRD_YAML)
        .map_err(|error| format!("the embedded CRD is not YAML: {error}"))?;
    let mut schema = crd
        .pointer("/spec/versions/0/schema/openAPIV3Schema")
        .cloned()
        .ok_or("the embedded CRD has no spec.versions[0].schema.openAPIV3Schema")?;
    tighten(&mut schema);
    Ok(schema)
}

fn tighten(node: &mut Value) {
    let Value::Object(map) = node else { return };
    if map.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
        && !map.contains_key("type")
        && !map.contains_key("anyOf")
    {
        map.insert(
            "anyOf".to_owned(),
            serde_json::json!([{ "type": "integer" }, { "type": "string" }]),
        );
    }
    let preserves_unknown =
        map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if map.contains_key("properties")
        && !map.contains_key("additionalProperties")
        && !preserves_unknown
    {
        map.insert("additionalProperties".to_owned(), Value::Bool(false));
    }
    for (key, child) in map.iter_mut() {
        match key.as_str() {
            "properties" => {
                if let Value::Object(properties) = child {
                    properties.values_mut().for_each(tighten);
                }
            }
            "items" | "additionalProperties" | "not" => tighten(child),
            "allOf" | "anyOf" | "oneOf" => {
                if let Value::Array(schemas) = child {
                    schemas.iter_mut().for_each(tighten);
                }
            }
            _ => {}
        }
    }
}

fn validator() -> Result<&'static jsonschema::Validator, String> {
    VALIDATOR
        .get_or_init(|| {
            let schema = strict_schema()?;
            jsonschema::draft4::new(&schema)
                .map_err(|error| format!("the embedded CRD schema does not compile: {error}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Validates one MPIJob document (as JSON) against the strict CRD schema; every violation is
/// reported with its path.
pub fn validate_value(document: &Value) -> Problems {
    let mut problems = Problems::default();
    let validator = match validator() {
        Ok(validator) => validator,
        Err(message) => {
            problems.push("<schema>", message);
            return problems;
        }
    };
    for error in validator.iter_errors(document) {
        let pointer = error.instance_path().to_string();
        let path = if pointer.is_empty() {
            "<root>".to_owned()
        } else {
            pointer.trim_start_matches('/').replace('/', ".")
        };
        problems.push(
            path,
            format!("does not match the MPIJob CRD schema: {error}"),
        );
    }
    problems
}
