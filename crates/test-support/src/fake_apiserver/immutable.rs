//! The immutable fields of the built-in kinds trnkit re-applies, refused the way the real API
//! server refuses them: `422 Invalid`, `<Kind>[.<group>] "<name>" is invalid: <field>: <error>`
//! (several errors in `[…]`), with one `details.causes` entry per field.
//!
//! - StorageClass: `parameters`, `provisioner` and `reclaimPolicy` ("Forbidden: updates to …
//!   are forbidden."), `volumeBindingMode` ("field is immutable");
//! - Job: `spec.template` and `spec.selector` ("field is immutable");
//! - PersistentVolume: its source, every `spec` field but the mutable ones ("Forbidden:
//!   spec.persistentvolumesource is immutable after creation", then the change);
//! - PersistentVolumeClaim: `spec` but `resources.requests` and `volumeAttributesClassName`
//!   ("Forbidden: spec is immutable after creation except resources.requests and
//!   volumeAttributesClassName for bound claims", then the change).
//!
//! Defaults the real server would have filled in (`reclaimPolicy: Delete`,
//! `volumeBindingMode: Immediate`) count as set, and an absent map equals an empty one.

use serde_json::{Map, Value, json};

use super::kinds::KindInfo;
use super::store::ApiError;

/// One field error, as `k8s.io/apimachinery/pkg/util/validation/field.Error` words it.
struct FieldError {
    field: String,
    /// `FieldValueForbidden` or `FieldValueInvalid`.
    cause: &'static str,
    /// `Forbidden: …` or `Invalid value: …: …`.
    body: String,
}

impl FieldError {
    fn forbidden(field: &str, detail: &str) -> Self {
        Self {
            field: field.to_owned(),
            cause: "FieldValueForbidden",
            body: format!("Forbidden: {detail}"),
        }
    }

    fn immutable(field: &str, value: &Value) -> Self {
        let shown = match value {
            Value::String(text) => format!("{text:?}"),
            other => other.to_string(),
        };
        Self {
            field: field.to_owned(),
            cause: "FieldValueInvalid",
            body: format!("Invalid value: {shown}: field is immutable"),
        }
    }
}

fn at<'a>(object: &'a Value, pointer: &str) -> &'a Value {
    object.pointer(pointer).unwrap_or(&Value::Null)
}

/// Null, an absent field and an empty map are the same map.
fn same_map(old: &Value, new: &Value) -> bool {
    let empty = |value: &Value| value.is_null() || value.as_object().is_some_and(Map::is_empty);
    (empty(old) && empty(new)) || old == new
}

/// `value`, or `default` when it is absent.
fn or_default<'a>(value: &'a Value, default: &'a Value) -> &'a Value {
    if value.is_null() { default } else { value }
}

/// `old → new`, for the messages that show the change.
fn change(old: &Value, new: &Value) -> String {
    format!("  - {old}\n  + {new}")
}

/// `spec` without the fields listed.
fn without(spec: &Value, fields: &[&str]) -> Value {
    let mut spec = spec.as_object().cloned().unwrap_or_default();
    for field in fields {
        spec.remove(*field);
    }
    Value::Object(spec)
}

fn errors(kind: &KindInfo, old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    match (kind.group.as_str(), kind.kind.as_str()) {
        ("storage.k8s.io", "StorageClass") => {
            if !same_map(at(old, "/parameters"), at(new, "/parameters")) {
                errors.push(FieldError::forbidden(
                    "parameters",
                    "updates to parameters are forbidden.",
                ));
            }
            if at(old, "/provisioner") != at(new, "/provisioner") {
                errors.push(FieldError::forbidden(
                    "provisioner",
                    "updates to provisioner are forbidden.",
                ));
            }
            let delete = json!("Delete");
            if or_default(at(old, "/reclaimPolicy"), &delete)
                != or_default(at(new, "/reclaimPolicy"), &delete)
            {
                errors.push(FieldError::forbidden(
                    "reclaimPolicy",
                    "updates to reclaimPolicy are forbidden.",
                ));
            }
            let immediate = json!("Immediate");
            let new_mode = or_default(at(new, "/volumeBindingMode"), &immediate);
            if or_default(at(old, "/volumeBindingMode"), &immediate) != new_mode {
                errors.push(FieldError::immutable("volumeBindingMode", new_mode));
            }
        }
        ("batch", "Job") => {
            for (field, pointer) in [
                ("spec.selector", "/spec/selector"),
                ("spec.template", "/spec/template"),
            ] {
                let (before, after) = (at(old, pointer), at(new, pointer));
                if !before.is_null() && before != after {
                    errors.push(FieldError::immutable(field, after));
                }
            }
        }
        ("", "PersistentVolume") => {
            let mutable = [
                "capacity",
                "accessModes",
                "claimRef",
                "persistentVolumeReclaimPolicy",
                "storageClassName",
                "mountOptions",
                "nodeAffinity",
                "volumeMode",
                "volumeAttributesClassName",
            ];
            let (before, after) = (
                without(at(old, "/spec"), &mutable),
                without(at(new, "/spec"), &mutable),
            );
            if before != after {
                errors.push(FieldError::forbidden(
                    "spec.persistentvolumesource",
                    &format!(
                        "spec.persistentvolumesource is immutable after creation\n{}",
                        change(&before, &after)
                    ),
                ));
            }
        }
        ("", "PersistentVolumeClaim") => {
            let strip = |spec: &Value| {
                let mut spec = without(spec, &["volumeAttributesClassName"]);
                if let Some(resources) = spec.get_mut("resources").and_then(Value::as_object_mut) {
                    resources.remove("requests");
                    if resources.is_empty() {
                        spec.as_object_mut().map(|spec| spec.remove("resources"));
                    }
                }
                spec
            };
            let (before, after) = (strip(at(old, "/spec")), strip(at(new, "/spec")));
            if before != after {
                errors.push(FieldError::forbidden(
                    "spec",
                    &format!(
                        "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n{}",
                        change(&before, &after)
                    ),
                ));
            }
        }
        _ => {}
    }
    errors
}

/// Refuses an update of `old` into `new` that changes an immutable field of its kind.
// The error is the fake's whole HTTP answer (status, reason, message, details), built once per
// refused request in a test: its size does not matter.
#[allow(clippy::result_large_err)]
pub(crate) fn check(kind: &KindInfo, old: &Value, new: &Value) -> Result<(), ApiError> {
    let errors = errors(kind, old, new);
    if errors.is_empty() {
        return Ok(());
    }
    let name = super::store::name_of(new);
    let qualified = if kind.group.is_empty() {
        kind.kind.clone()
    } else {
        format!("{}.{}", kind.kind, kind.group)
    };
    let lines: Vec<String> = errors
        .iter()
        .map(|error| format!("{}: {}", error.field, error.body))
        .collect();
    let aggregate = match lines.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    };
    let causes: Vec<Value> = errors
        .iter()
        .map(|error| json!({ "reason": error.cause, "message": error.body, "field": error.field }))
        .collect();
    Err(ApiError {
        details: Some(
            json!({ "name": name, "group": kind.group, "kind": kind.kind, "causes": causes }),
        ),
        ..ApiError::new(
            422,
            "Invalid",
            format!("{qualified} \"{name}\" is invalid: {aggregate}"),
        )
    })
}
