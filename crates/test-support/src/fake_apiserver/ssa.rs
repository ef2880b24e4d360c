//! Object merging for the FAKE API server: JSON merge patch (RFC 7386), and an approximation of
//! server-side apply with field ownership recorded in `metadata.managedFields`.
//!
//! The approximation: objects merge field by field, lists and scalars are atomic leaves (the real
//! server merges `listType: map` lists by key), a field is owned by every manager that set it to
//! its current value, applying a different value to a field another manager owns is a conflict
//! unless `force` is set (then ownership moves), and a field that an apply manager set before but
//! no longer sends is removed when no other manager owns it.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

/// A field path: the object keys from the root.
pub(crate) type Path = Vec<String>;

/// One `metadata.managedFields` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ManagedEntry {
    pub(crate) manager: String,
    /// `Apply` or `Update`.
    pub(crate) operation: String,
    pub(crate) subresource: Option<String>,
    pub(crate) api_version: String,
    pub(crate) time: String,
    pub(crate) paths: BTreeSet<Path>,
}

/// A server-side apply conflict: the field and the manager that owns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Conflict {
    pub(crate) path: Path,
    pub(crate) manager: String,
}

/// Fields the server owns; never part of any manager's set.
fn excluded(path: &[String]) -> bool {
    match path {
        [first] => first == "apiVersion" || first == "kind",
        [first, second, ..] if first == "metadata" => matches!(
            second.as_str(),
            "name"
                | "namespace"
                | "uid"
                | "resourceVersion"
                | "generation"
                | "creationTimestamp"
                | "managedFields"
                | "deletionTimestamp"
                | "selfLink"
        ),
        _ => false,
    }
}

/// The leaf paths of a value: objects are recursed into; lists, scalars and empty objects are leaves.
pub(crate) fn leaf_paths(value: &Value) -> BTreeSet<Path> {
    fn walk(value: &Value, prefix: &mut Path, out: &mut BTreeSet<Path>) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (key, child) in map {
                    prefix.push(key.clone());
                    walk(child, prefix, out);
                    prefix.pop();
                }
            }
            _ => {
                if !prefix.is_empty() && !excluded(prefix) {
                    out.insert(prefix.clone());
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(value, &mut Vec::new(), &mut out);
    out
}

pub(crate) fn get_path<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |value, key| value.get(key))
}

fn remove_path(value: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut current = value;
    for key in parents {
        match current.get_mut(key) {
            Some(child) => current = child,
            None => return,
        }
    }
    if let Some(map) = current.as_object_mut() {
        map.remove(last);
    }
}

fn overlaps(left: &[String], right: &[String]) -> bool {
    left.starts_with(right) || right.starts_with(left)
}

/// RFC 7386 JSON merge patch: objects merge, `null` removes, everything else replaces.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let target = target.as_object_mut().expect("made an object above");
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// Reads `metadata.managedFields` back into entries.
pub(crate) fn read_managed(object: &Value) -> Vec<ManagedEntry> {
    fn decode(fields: &Value, prefix: &mut Path, out: &mut BTreeSet<Path>) {
        match fields.as_object() {
            Some(map) if !map.is_empty() => {
                for (key, child) in map {
                    let Some(name) = key.strip_prefix("f:") else {
                        continue;
                    };
                    prefix.push(name.to_owned());
                    decode(child, prefix, out);
                    prefix.pop();
                }
            }
            _ => {
                if !prefix.is_empty() {
                    out.insert(prefix.clone());
                }
            }
        }
    }
    let entries = object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array);
    entries
        .into_iter()
        .flatten()
        .map(|entry| {
            let text = |key: &str| {
                entry
                    .get(key)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            let mut paths = BTreeSet::new();
            if let Some(fields) = entry.get("fieldsV1") {
                decode(fields, &mut Vec::new(), &mut paths);
            }
            ManagedEntry {
                manager: text("manager"),
                operation: text("operation"),
                subresource: entry
                    .get("subresource")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                api_version: text("apiVersion"),
                time: text("time"),
                paths,
            }
        })
        .collect()
}

/// Writes entries into `metadata.managedFields` in the real `FieldsV1` shape.
pub(crate) fn write_managed(object: &mut Value, entries: &[ManagedEntry]) {
    fn encode(paths: &BTreeSet<Path>) -> Value {
        let mut root = Value::Object(Map::new());
        for path in paths {
            let mut node = &mut root;
            for key in path {
                node = node
                    .as_object_mut()
                    .expect("encoded nodes are objects")
                    .entry(format!("f:{key}"))
                    .or_insert_with(|| Value::Object(Map::new()));
            }
        }
        root
    }
    let rendered: Vec<Value> = entries
        .iter()
        .filter(|entry| !entry.paths.is_empty())
        .map(|entry| {
            let mut value = serde_json::json!({
                "manager": entry.manager,
                "operation": entry.operation,
                "apiVersion": entry.api_version,
                "time": entry.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": encode(&entry.paths),
            });
            if let Some(subresource) = &entry.subresource {
                value["subresource"] = Value::String(subresource.clone());
            }
            value
        })
        .collect();
    if let Some(map) = object.as_object_mut()
        && !rendered.is_empty()
    {
        map.entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        if rendered.is_empty() {
            metadata.remove("managedFields");
        } else {
            metadata.insert("managedFields".to_owned(), Value::Array(rendered));
        }
    }
}

/// Inputs of one write that records field ownership.
pub(crate) struct Writer<'a> {
    pub(crate) manager: &'a str,
    pub(crate) subresource: Option<&'a str>,
    pub(crate) api_version: &'a str,
    pub(crate) now: &'a str,
}

fn entry_index(entries: &mut Vec<ManagedEntry>, writer: &Writer<'_>, operation: &str) -> usize {
    let subresource = writer.subresource.map(str::to_owned);
    if let Some(index) = entries.iter().position(|entry| {
        entry.manager == writer.manager
            && entry.operation == operation
            && entry.subresource == subresource
    }) {
        return index;
    }
    entries.push(ManagedEntry {
        manager: writer.manager.to_owned(),
        operation: operation.to_owned(),
        subresource,
        api_version: writer.api_version.to_owned(),
        time: writer.now.to_owned(),
        paths: BTreeSet::new(),
    });
    entries.len() - 1
}

/// Server-side apply of `applied` (already stripped of fields the subresource may not set) onto
/// `existing` (`Value::Null` when creating). Returns the merged object with `managedFields`.
pub(crate) fn apply(
    existing: &Value,
    applied: &Value,
    writer: &Writer<'_>,
    force: bool,
) -> Result<Value, Vec<Conflict>> {
    let mut entries = read_managed(existing);
    let applied_paths = leaf_paths(applied);
    let mine = entry_index(&mut entries, writer, "Apply");

    let mut conflicts = Vec::new();
    for path in &applied_paths {
        // An empty object sets nothing, so it cannot conflict.
        let sets_nothing = get_path(applied, path)
            .is_some_and(|value| value.as_object().is_some_and(Map::is_empty));
        let differs = !sets_nothing && get_path(existing, path) != get_path(applied, path);
        for (index, entry) in entries.iter_mut().enumerate() {
            if index == mine {
                continue;
            }
            let owned: Vec<Path> = entry
                .paths
                .iter()
                .filter(|owned| overlaps(owned, path))
                .cloned()
                .collect();
            if owned.is_empty() || !differs {
                continue;
            }
            if force {
                for owned in owned {
                    entry.paths.remove(&owned);
                }
            } else {
                conflicts.push(Conflict {
                    path: path.clone(),
                    manager: entry.manager.clone(),
                });
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(conflicts);
    }

    let mut merged = existing.clone();
    let dropped: Vec<Path> = entries[mine]
        .paths
        .difference(&applied_paths)
        .cloned()
        .collect();
    for path in dropped {
        let owned_elsewhere = entries.iter().enumerate().any(|(index, entry)| {
            index != mine && entry.paths.iter().any(|owned| overlaps(owned, &path))
        });
        if !owned_elsewhere {
            remove_path(&mut merged, &path);
        }
    }
    merge_patch(&mut merged, applied);

    if entries[mine].paths != applied_paths {
        entries[mine].paths = applied_paths;
        entries[mine].time = writer.now.to_owned();
    }
    write_managed(&mut merged, &entries);
    Ok(merged)
}

/// Records an `Update` (create, replace, merge patch): the manager takes every field whose value
/// changed between `before` and `after`; other managers lose those fields.
pub(crate) fn record_update(before: &Value, after: &mut Value, writer: &Writer<'_>) {
    let mut entries = read_managed(before);
    let changed: BTreeSet<Path> = leaf_paths(after)
        .into_iter()
        .filter(|path| get_path(before, path) != get_path(after, path))
        .collect();
    if changed.is_empty() {
        write_managed(after, &entries);
        return;
    }
    let mine = entry_index(&mut entries, writer, "Update");
    for (index, entry) in entries.iter_mut().enumerate() {
        if index != mine {
            entry
                .paths
                .retain(|owned| !changed.iter().any(|path| overlaps(owned, path)));
        }
    }
    entries[mine].paths.extend(changed);
    entries[mine].time = writer.now.to_owned();
    write_managed(after, &entries);
}
