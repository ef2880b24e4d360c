//! What a real API server does with a server-side apply of a custom resource whose CRD it
//! holds: the patch is converted to a typed object against the CRD's structural schema, and a
//! field the schema does not declare fails the request.
//!
//! The real server answers that failure with `500` and no `reason` (the error is not a
//! `metav1.Status`; kubernetes/kubernetes#122480 and #139253, where a change to `400` is
//! proposed), with the message
//! `failed to create typed patch object (<namespace>/<name>; <group>/<version>, Kind=<Kind>):
//! .spec.foo: field not declared in schema`. Several undeclared fields are listed the way
//! structured-merge-diff joins them (`errors:` and one indented line each).
//!
//! Only undeclared fields are checked, not types or formats; lists whose schema says
//! `x-kubernetes-list-type: map` name their elements by key (`[name="mpitest"]`), as
//! structured-merge-diff does, other lists by index.

use serde_json::Value;

use super::kinds::KindInfo;
use super::store::ApiError;

/// The `openAPIV3Schema` of `kind`'s version in a stored CRD.
pub(crate) fn version_schema<'a>(crd: &'a Value, kind: &KindInfo) -> Option<&'a Value> {
    crd.pointer("/spec/versions")?
        .as_array()?
        .iter()
        .find(|version| version.get("name").and_then(Value::as_str) == Some(&kind.version))?
        .pointer("/schema/openAPIV3Schema")
}

/// The paths of every field of `object` that `schema` does not declare.
pub(crate) fn undeclared_fields(schema: &Value, object: &Value) -> Vec<String> {
    let mut found = Vec::new();
    walk(schema, object, "", true, &mut found);
    found
}

fn walk(schema: &Value, value: &Value, path: &str, resource: bool, found: &mut Vec<String>) {
    let preserves_unknown =
        schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    let embedded = schema.get("x-kubernetes-embedded-resource") == Some(&Value::Bool(true));
    match value {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (key, child) in map {
                let child_path = format!("{path}.{key}");
                if (resource || embedded) && matches!(key.as_str(), "apiVersion" | "kind") {
                    continue;
                }
                if (resource || embedded) && key == "metadata" {
                    // ObjectMeta is known to the server whatever the CRD says of it.
                    continue;
                }
                match (
                    properties.and_then(|properties| properties.get(key)),
                    additional,
                ) {
                    (Some(child_schema), _) | (None, Some(child_schema)) => {
                        walk(child_schema, child, &child_path, false, found);
                    }
                    (None, None) if properties.is_some() && !preserves_unknown => {
                        found.push(child_path);
                    }
                    // An object schema that lists nothing (or preserves unknown fields) takes
                    // any field.
                    (None, None) => {}
                }
            }
        }
        Value::Array(items) => {
            let Some(item_schema) = schema.get("items") else {
                return;
            };
            let keys: Vec<&str> =
                if schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map") {
                    schema
                        .get("x-kubernetes-list-map-keys")
                        .and_then(Value::as_array)
                        .map(|keys| keys.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default()
                } else {
                    Vec::new()
                };
            for (index, item) in items.iter().enumerate() {
                let element = if keys.is_empty() {
                    format!("[{index}]")
                } else {
                    let parts: Vec<String> = keys
                        .iter()
                        .map(|key| format!("{key}={}", item.get(*key).unwrap_or(&Value::Null)))
                        .collect();
                    format!("[{}]", parts.join(","))
                };
                walk(item_schema, item, &format!("{path}{element}"), false, found);
            }
        }
        _ => {}
    }
}

/// The real server's refusal of an apply patch with undeclared fields.
pub(crate) fn refusal(kind: &KindInfo, namespace: &str, name: &str, fields: &[String]) -> ApiError {
    // Sorted, as the real server's field paths come out of sorted sets, and so that the
    // message does not depend on the map order of this build's serde_json.
    let mut errors: Vec<String> = fields
        .iter()
        .map(|field| format!("{field}: field not declared in schema"))
        .collect();
    errors.sort();
    let errors = match errors.as_slice() {
        [one] => one.clone(),
        many => format!("errors:\n  {}", many.join("\n  ")),
    };
    ApiError::new(
        500,
        "",
        format!(
            "failed to create typed patch object ({namespace}/{name}; {}/{}, Kind={}): {errors}",
            kind.group, kind.version, kind.kind
        ),
    )
}
