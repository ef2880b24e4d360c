//! Validation against an MPIJob CRD's OpenAPI schema, with unknown fields rejected.
//!
//! Two CRDs are compiled into the crate, each copied unmodified from kubeflow/mpi-operator with
//! its Apache-2.0 licence ([`OperatorCrd`]): v0.8.2's (`schema/kubeflow.org_mpijobs.yaml`) and
//! v0.4.0's (`schema/kubeflow.org_mpijobs-v0.4.0.yaml`, what the blueprint's terraform installs;
//! its `spec` declares no `launcherCreationPolicy` and no `runLauncherAsWorker`). A
//! [`CrdSchema`] can also be made from the CRD a cluster serves ([`CrdSchema::from_crd`]), so a
//! job is checked against exactly what the API server will accept.
//!
//! As shipped, a CRD lets misspelt fields through, so before compiling it this module tightens it
//! the way kubeconform's strict mode does (and the API server's server-side apply behaves, which
//! refuses a field the schema does not declare):
//! - every object schema that lists `properties` gets `additionalProperties: false` (unless it
//!   says `x-kubernetes-preserve-unknown-fields`);
//! - every `x-kubernetes-int-or-string` node, which has no `type`, gets `anyOf: [integer, string]`.
//!
//! OpenAPI 3.0 schema objects are closest to JSON Schema draft 4, which is what it is compiled as.

use std::sync::OnceLock;

use serde_json::Value;

use crate::error::Problems;

/// The v0.8.2 CRD exactly as kubeflow/mpi-operator ships it.
pub const CRD_YAML: &str = include_str!("../schema/kubeflow.org_mpijobs.yaml");
/// The v0.4.0 CRD exactly as kubeflow/mpi-operator ships it.
pub const CRD_V0_4_0_YAML: &str = include_str!("../schema/kubeflow.org_mpijobs-v0.4.0.yaml");

/// The MPIJob version trnkit writes.
pub const VERSION: &str = "v2beta1";

/// An MPI Operator release whose MPIJob CRD is embedded.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum OperatorCrd {
    /// MPI Operator v0.4.0 (the blueprint's): no `launcherCreationPolicy`, no
    /// `runLauncherAsWorker`.
    V0_4_0,
    /// MPI Operator v0.8.2: every field of [`crate::MPIJobSpec`].
    #[default]
    V0_8_2,
}

impl OperatorCrd {
    /// Every embedded CRD, oldest first.
    pub const ALL: [Self; 2] = [Self::V0_4_0, Self::V0_8_2];

    /// The CRD as YAML.
    pub fn yaml(self) -> &'static str {
        match self {
            Self::V0_4_0 => CRD_V0_4_0_YAML,
            Self::V0_8_2 => CRD_YAML,
        }
    }

    /// `v0.4.0`, `v0.8.2`.
    pub fn release(self) -> &'static str {
        match self {
            Self::V0_4_0 => "v0.4.0",
            Self::V0_8_2 => "v0.8.2",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::V0_4_0 => 0,
            Self::V0_8_2 => 1,
        }
    }

    /// The CRD as a JSON value (a `CustomResourceDefinition` object), parsed once.
    ///
    /// # Panics
    /// Never for the embedded files, which a test parses.
    pub fn crd(self) -> &'static Value {
        static CRDS: [OnceLock<Value>; 2] = [OnceLock::new(), OnceLock::new()];
        CRDS[self.index()]
            .get_or_init(|| serde_yaml::from_str(self.yaml()).expect("the embedded CRDs are YAML"))
    }

    /// The compiled strict schema of this CRD (compiled once).
    pub fn schema(self) -> Result<&'static CrdSchema, String> {
        static SCHEMAS: [OnceLock<Result<CrdSchema, String>>; 2] =
            [OnceLock::new(), OnceLock::new()];
        SCHEMAS[self.index()]
            .get_or_init(|| {
                CrdSchema::from_crd(
                    self.crd(),
                    format!("the MPIJob CRD of MPI Operator {}", self.release()),
                )
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Whether `spec` of this CRD declares `field` (such as `launcherCreationPolicy`).
    pub fn declares_spec_field(self, field: &str) -> bool {
        spec_declares(self.crd(), field)
    }

    /// The embedded CRD that best matches a CRD served by a cluster: v0.8.2 when its `spec`
    /// declares `launcherCreationPolicy` (v0.5.0 and later), else v0.4.0.
    pub fn matching(crd: &Value) -> Self {
        if spec_declares(crd, "launcherCreationPolicy") {
            Self::V0_8_2
        } else {
            Self::V0_4_0
        }
    }
}

/// The `openAPIV3Schema` of the `v2beta1` version of a CRD document.
fn version_schema(crd: &Value) -> Option<&Value> {
    crd.pointer("/spec/versions")?
        .as_array()?
        .iter()
        .find(|version| version.get("name").and_then(Value::as_str) == Some(VERSION))?
        .pointer("/schema/openAPIV3Schema")
}

/// Whether the `v2beta1` schema of a CRD document declares `spec.<field>`.
pub fn spec_declares(crd: &Value, field: &str) -> bool {
    version_schema(crd)
        .and_then(|schema| schema.pointer("/properties/spec/properties"))
        .and_then(Value::as_object)
        .is_some_and(|properties| properties.contains_key(field))
}

/// A compiled, tightened MPIJob schema, and where it came from.
pub struct CrdSchema {
    source: String,
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for CrdSchema {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("CrdSchema")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl CrdSchema {
    /// Compiles the tightened `v2beta1` schema of a CRD document (embedded, or read from a
    /// cluster). `source` names it in problems, such as `the installed CRD mpijobs.kubeflow.org`.
    pub fn from_crd(crd: &Value, source: impl Into<String>) -> Result<Self, String> {
        let source = source.into();
        let mut schema = version_schema(crd)
            .cloned()
            .ok_or_else(|| format!("{source} has no {VERSION} version with an openAPIV3Schema"))?;
        // The API server takes these of every object, whether the schema lists them or not.
        if let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) {
            for (field, kind) in [
                ("apiVersion", "string"),
                ("kind", "string"),
                ("metadata", "object"),
            ] {
                properties
                    .entry(field)
                    .or_insert_with(|| serde_json::json!({ "type": kind }));
            }
        }
        tighten(&mut schema);
        let validator = jsonschema::draft4::new(&schema)
            .map_err(|error| format!("the schema of {source} does not compile: {error}"))?;
        Ok(Self { source, validator })
    }

    /// What the schema came from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Validates one MPIJob document (as JSON); every violation is reported with its path.
    pub fn validate(&self, document: &Value) -> Problems {
        let mut problems = Problems::default();
        for error in self.validator.iter_errors(document) {
            let pointer = error.instance_path().to_string();
            let path = if pointer.is_empty() {
                "<root>".to_owned()
            } else {
                pointer.trim_start_matches('/').replace('/', ".")
            };
            problems.push(path, format!("does not match {}: {error}", self.source));
        }
        problems
    }
}

/// The strict schema of one MPIJob document of the v0.8.2 CRD
/// (`spec.versions[0].schema.openAPIV3Schema`, tightened).
pub fn strict_schema() -> Result<Value, String> {
    let mut schema = version_schema(OperatorCrd::V0_8_2.crd())
        .cloned()
        .ok_or("the embedded CRD has no v2beta1 openAPIV3Schema")?;
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

/// Validates one MPIJob document against an embedded CRD's strict schema; every violation is
/// reported with its path.
pub fn validate_against(crd: OperatorCrd, document: &Value) -> Problems {
    match crd.schema() {
        Ok(schema) => schema.validate(document),
        Err(message) => {
            let mut problems = Problems::default();
            problems.push("<schema>", message);
            problems
        }
    }
}

/// Validates one MPIJob document against the v0.8.2 CRD's strict schema.
pub fn validate_value(document: &Value) -> Problems {
    validate_against(OperatorCrd::V0_8_2, document)
}
