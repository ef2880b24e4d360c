//! The FAKE API server's in-memory state: objects, the resource version counter, the watch event
//! history, live watchers, pod logs, hooks and recorded requests.
//!
//! Every operation takes the store lock, changes state and returns the events to deliver; hooks
//! run after the lock is released (see `super::FakeApiServer`).

#![allow(
    clippy::result_large_err,
    reason = "ApiError carries a JSON Status object whose size depends on serde_json's features in the unified workspace build; the fake is test-only"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

use super::kinds::KindInfo;
use super::selector::{FieldSelector, LabelSelector};
use super::ssa::{self, Writer};
use super::{immutable, structural};

/// An API error, rendered as a real `Status` object.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `reason` (`NotFound`, `AlreadyExists`, `Conflict`, `BadRequest`, ...).
    pub reason: String,
    /// Human-readable message, worded as the real server words it.
    pub message: String,
    /// `details` (name, group, kind), when the error is about one object.
    pub details: Option<Value>,
}

impl ApiError {
    pub(crate) fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.to_owned(),
            message: message.into(),
            details: None,
        }
    }

    pub(crate) fn not_found(kind: &KindInfo, name: &str) -> Self {
        Self {
            details: Some(json!({ "name": name, "group": kind.group, "kind": kind.plural })),
            ..Self::new(
                404,
                "NotFound",
                format!("{} \"{name}\" not found", resource_name(kind)),
            )
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// The `Status` object the server sends.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "code": self.code,
        });
        // A real server leaves `reason` out of errors that are not a `metav1.Status` (`500`s).
        if !self.reason.is_empty() {
            status["reason"] = json!(self.reason);
        }
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

/// `pods` or `mpijobs.kubeflow.org`, as the real server names resources in messages.
fn resource_name(kind: &KindInfo) -> String {
    if kind.group.is_empty() {
        kind.plural.clone()
    } else {
        format!("{}.{}", kind.plural, kind.group)
    }
}

/// The kind of change a watch event reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// `ADDED`
    Added,
    /// `MODIFIED`
    Modified,
    /// `DELETED`
    Deleted,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One committed change.
#[derive(Clone, Debug)]
pub(crate) struct Change {
    pub(crate) resource_version: u64,
    pub(crate) kind: KindInfo,
    pub(crate) event: EventType,
    pub(crate) object: Value,
    /// False for dry runs and no-op writes, which change nothing.
    pub(crate) committed: bool,
}

impl Change {
    pub(crate) fn watch_event(&self) -> Value {
        json!({ "type": self.event.as_str(), "object": self.object })
    }
}

/// What a watch stream selects.
#[derive(Clone, Debug)]
pub(crate) struct WatchFilter {
    pub(crate) kind: KindInfo,
    pub(crate) namespace: Option<String>,
    pub(crate) labels: LabelSelector,
    pub(crate) fields: FieldSelector,
}

impl WatchFilter {
    pub(crate) fn matches(&self, kind: &KindInfo, object: &Value) -> bool {
        kind.group == self.kind.group
            && kind.plural == self.kind.plural
            && self
                .namespace
                .as_deref()
                .is_none_or(|namespace| namespace_of(object) == namespace)
            && self.labels.matches(object)
            && self.fields.matches(object)
    }
}

struct Watcher {
    filter: WatchFilter,
    sender: mpsc::UnboundedSender<Value>,
}

/// A pod's log: lines the test appends, and whether the container has exited.
#[derive(Default)]
pub(crate) struct LogBuffer {
    pub(crate) state: Mutex<LogState>,
    pub(crate) notify: Notify,
}

#[derive(Default)]
pub(crate) struct LogState {
    pub(crate) lines: Vec<String>,
    pub(crate) closed: bool,
    /// Bumped to end the open follow streams without closing the log.
    pub(crate) epoch: u64,
}

impl LogBuffer {
    fn close(&self) {
        self.state.lock().expect("log lock poisoned").closed = true;
        self.notify.notify_waiters();
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ObjectKey {
    group: String,
    plural: String,
    namespace: String,
    name: String,
}

pub(crate) fn namespace_of(object: &Value) -> &str {
    object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("")
}

pub(crate) fn name_of(object: &Value) -> &str {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn uid_of(object: &Value) -> &str {
    object
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn finalizers_of(object: &Value) -> Vec<String> {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

fn owner_uids(object: &Value) -> impl Iterator<Item = &str> {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|reference| reference.get("uid").and_then(Value::as_str))
}

/// The finalizer of a deletion that waits for the object's dependents.
pub(crate) const FOREGROUND: &str = "foregroundDeletion";

/// `propagationPolicy` of a delete.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Propagation {
    /// None given: `Orphan` for `batch/v1` Jobs, `Background` for everything else.
    #[default]
    Default,
    /// Dependents first, then the object.
    Foreground,
    /// The object now, its dependents after.
    Background,
    /// The object only; its dependents lose their owner reference.
    Orphan,
}

impl Propagation {
    /// `Foreground`, `Background` or `Orphan`; anything else is a bad request.
    pub(crate) fn parse(text: &str) -> Result<Self, ApiError> {
        match text {
            "Foreground" => Ok(Self::Foreground),
            "Background" => Ok(Self::Background),
            "Orphan" => Ok(Self::Orphan),
            other => Err(ApiError::bad_request(format!(
                "propagationPolicy: Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
            ))),
        }
    }
}

/// How a delete is made.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct DeleteOptions {
    pub(crate) dry_run: bool,
    pub(crate) propagation: Propagation,
}

/// How a write names its field manager and whether it is a dry run.
#[derive(Clone, Debug, Default)]
pub(crate) struct WriteOptions {
    pub(crate) manager: String,
    pub(crate) dry_run: bool,
    /// Server-side apply only: take ownership of conflicting fields.
    pub(crate) force: bool,
}

/// The in-memory object store.
pub(crate) struct Store {
    pub(crate) kinds: Vec<KindInfo>,
    objects: BTreeMap<ObjectKey, Value>,
    resource_version: u64,
    uid_counter: u64,
    /// Watches from a resource version at or below this get `410 Gone`.
    compacted: u64,
    history: Vec<Change>,
    watchers: Vec<Watcher>,
    logs: BTreeMap<(String, String), Arc<LogBuffer>>,
    /// The UIDs of deleted objects: their dependents are garbage.
    deleted_uids: BTreeSet<String>,
}

/// Records `options.manager`'s update of `updated` over `existing` in `managedFields`, now.
fn record_update(
    kind: &KindInfo,
    options: &WriteOptions,
    subresource: Option<&str>,
    existing: &Value,
    updated: &mut Value,
) {
    let now = now();
    let api_version = kind.api_version();
    let writer = Writer {
        manager: &options.manager,
        subresource,
        api_version: &api_version,
        now: &now,
    };
    ssa::record_update(existing, updated, &writer);
}

pub(crate) fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn strip_server_fields(object: &mut Value) {
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for key in [
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "managedFields",
            "selfLink",
        ] {
            metadata.remove(key);
        }
    }
}

/// The object without `metadata` and `status`: what `generation` counts changes of.
fn spec_part(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    object
}

impl Store {
    pub(crate) fn new(kinds: Vec<KindInfo>) -> Self {
        let mut store = Self {
            kinds,
            objects: BTreeMap::new(),
            resource_version: 0,
            uid_counter: 0,
            compacted: 0,
            history: Vec::new(),
            watchers: Vec::new(),
            logs: BTreeMap::new(),
            deleted_uids: BTreeSet::new(),
        };
        let namespaces = store.kind("", "Namespace").cloned();
        if let Some(namespaces) = namespaces {
            for name in ["default", "kube-system", "kube-public"] {
                let object = json!({
                    "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name },
                    "status": { "phase": "Active" },
                });
                store
                    .insert(&namespaces, object)
                    .expect("seeding an empty store cannot fail");
            }
        }
        store
    }

    pub(crate) fn resource_version(&self) -> u64 {
        self.resource_version
    }

    /// A kind by API version and kind name.
    pub(crate) fn kind(&self, api_version: &str, kind: &str) -> Option<&KindInfo> {
        self.kinds.iter().find(|info| {
            info.kind == kind && (api_version.is_empty() || info.api_version() == api_version)
        })
    }

    /// A kind by group, version and plural.
    pub(crate) fn kind_by_plural(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<&KindInfo> {
        self.kinds
            .iter()
            .find(|info| info.group == group && info.version == version && info.plural == plural)
    }

    fn key(kind: &KindInfo, namespace: &str, name: &str) -> ObjectKey {
        ObjectKey {
            group: kind.group.clone(),
            plural: kind.plural.clone(),
            namespace: if kind.namespaced {
                namespace.to_owned()
            } else {
                String::new()
            },
            name: name.to_owned(),
        }
    }

    pub(crate) fn get(&self, kind: &KindInfo, namespace: &str, name: &str) -> Option<&Value> {
        self.objects.get(&Self::key(kind, namespace, name))
    }

    pub(crate) fn list(&self, filter: &WatchFilter) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|(key, _)| key.group == filter.kind.group && key.plural == filter.kind.plural)
            .map(|(_, object)| object)
            .filter(|object| filter.matches(&filter.kind, object))
            .cloned()
            .collect()
    }

    fn next_uid(&mut self) -> String {
        self.uid_counter += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.uid_counter)
    }

    /// A five-character suffix for `generateName`, from the alphabet the real server uses;
    /// deterministic, so that tests are repeatable.
    fn random_suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        self.uid_counter += 1;
        let mut state = self.uid_counter.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (0..5)
            .map(|_| {
                let index =
                    usize::try_from(state % ALPHABET.len() as u64).expect("index is below 27");
                state /= ALPHABET.len() as u64;
                char::from(ALPHABET[index])
            })
            .collect()
    }

    fn commit(&mut self, kind: &KindInfo, event: EventType, mut object: Value) -> Change {
        self.resource_version += 1;
        let key = Self::key(kind, namespace_of(&object), name_of(&object));
        object["metadata"]["resourceVersion"] = Value::String(self.resource_version.to_string());
        match event {
            EventType::Deleted => {
                self.objects.remove(&key);
            }
            EventType::Added | EventType::Modified => {
                self.objects.insert(key, object.clone());
            }
        }
        let change = Change {
            resource_version: self.resource_version,
            kind: kind.clone(),
            event,
            object,
            committed: true,
        };
        self.history.push(change.clone());
        let event_json = change.watch_event();
        self.watchers.retain(|watcher| {
            !watcher.filter.matches(kind, &change.object)
                || watcher.sender.send(event_json.clone()).is_ok()
        });
        change
    }

    fn check_namespace(&self, kind: &KindInfo, namespace: &str) -> Result<(), ApiError> {
        if !kind.namespaced {
            return Ok(());
        }
        if namespace.is_empty() {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let namespaces = self.kind("v1", "Namespace").cloned();
        match namespaces {
            Some(namespaces) if self.get(&namespaces, "", namespace).is_none() => Err(ApiError {
                details: Some(json!({ "name": namespace, "kind": "namespaces" })),
                ..ApiError::new(
                    404,
                    "NotFound",
                    format!("namespaces \"{namespace}\" not found"),
                )
            }),
            _ => Ok(()),
        }
    }

    /// Validates identity fields and fills in the server-owned metadata of a new object.
    fn prepare_new(
        &mut self,
        kind: &KindInfo,
        namespace: &str,
        mut object: Value,
        keep_uid: bool,
    ) -> Result<Value, ApiError> {
        if !object.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request was not an object",
            ));
        }
        object["apiVersion"] = Value::String(kind.api_version());
        object["kind"] = Value::String(kind.kind.clone());
        if !object.get("metadata").is_some_and(Value::is_object) {
            object["metadata"] = json!({});
        }
        let uid = object
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let has_timestamp = object
            .pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str)
            .is_some();
        let timestamp = object.pointer("/metadata/creationTimestamp").cloned();
        strip_server_fields(&mut object);
        if name_of(&object).is_empty() {
            let prefix = object
                .pointer("/metadata/generateName")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let Some(prefix) = prefix else {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    format!(
                        "{} \"\" is invalid: metadata.name: Required value: name or generateName is required",
                        kind.kind
                    ),
                ));
            };
            let suffix = self.random_suffix();
            object["metadata"]["name"] = Value::String(format!("{prefix}{suffix}"));
        }
        if kind.namespaced {
            object["metadata"]["namespace"] = Value::String(namespace.to_owned());
        } else if let Some(metadata) = object["metadata"].as_object_mut() {
            metadata.remove("namespace");
        }
        let uid = match uid {
            Some(uid) if keep_uid => uid,
            _ => self.next_uid(),
        };
        object["metadata"]["uid"] = Value::String(uid);
        object["metadata"]["creationTimestamp"] = match timestamp {
            Some(timestamp) if keep_uid && has_timestamp => timestamp,
            _ => Value::String(now()),
        };
        object["metadata"]["generation"] = json!(1);
        Ok(object)
    }

    /// Inserts or replaces an object directly (the test-side path): keeps a given `uid`,
    /// `creationTimestamp` and `status`, records no field manager.
    pub(crate) fn insert(&mut self, kind: &KindInfo, object: Value) -> Result<Change, ApiError> {
        let namespace = namespace_of(&object).to_owned();
        let namespace = if kind.namespaced && namespace.is_empty() {
            "default".to_owned()
        } else {
            namespace
        };
        let name = name_of(&object).to_owned();
        self.check_namespace(kind, &namespace)?;
        if let Some(existing) = self.get(kind, &namespace, &name).cloned() {
            let mut object = object;
            let generation = existing
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            for key in ["uid", "creationTimestamp", "managedFields"] {
                if let Some(value) = existing["metadata"].get(key).cloned()
                    && (key == "managedFields"
                        || object.pointer(&format!("/metadata/{key}")).is_none())
                {
                    object["metadata"][key] = value;
                }
            }
            let bump = i64::from(spec_part(&existing) != spec_part(&object));
            object["metadata"]["generation"] = json!(generation + bump);
            object["metadata"]["namespace"] = Value::String(namespace);
            if !kind.namespaced {
                object["metadata"]
                    .as_object_mut()
                    .map(|metadata| metadata.remove("namespace"));
            }
            return Ok(self.commit(kind, EventType::Modified, object));
        }
        let object = self.prepare_new(kind, &namespace, object, true)?;
        Ok(self.commit(kind, EventType::Added, object))
    }

    /// `POST`: creates, `409 AlreadyExists` when the name is taken.
    pub(crate) fn create(
        &mut self,
        kind: &KindInfo,
        namespace: &str,
        object: Value,
        options: &WriteOptions,
    ) -> Result<Change, ApiError> {
        let body_namespace = namespace_of(&object).to_owned();
        if kind.namespaced && !body_namespace.is_empty() && body_namespace != namespace {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        self.check_namespace(kind, namespace)?;
        let mut object = self.prepare_new(kind, namespace, object, false)?;
        let name = name_of(&object).to_owned();
        if self.get(kind, namespace, &name).is_some() {
            return Err(ApiError {
                details: Some(json!({ "name": name, "group": kind.group, "kind": kind.plural })),
                ..ApiError::new(
                    409,
                    "AlreadyExists",
                    format!("{} \"{name}\" already exists", resource_name(kind)),
                )
            });
        }
        if kind.status_subresource && kind.kind != "Namespace" {
            object.as_object_mut().map(|map| map.remove("status"));
        }
        record_update(kind, options, None, &Value::Null, &mut object);
        Ok(self.maybe_commit(kind, EventType::Added, object, options.dry_run))
    }

    fn maybe_commit(
        &mut self,
        kind: &KindInfo,
        event: EventType,
        object: Value,
        dry_run: bool,
    ) -> Change {
        if dry_run {
            return Change {
                resource_version: self.resource_version,
                kind: kind.clone(),
                event,
                object,
                committed: false,
            };
        }
        self.commit(kind, event, object)
    }

    fn existing(&self, kind: &KindInfo, namespace: &str, name: &str) -> Result<Value, ApiError> {
        self.get(kind, namespace, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(kind, name))
    }

    /// Finishes an update of the main resource or of `status`: keeps identity, keeps the part the
    /// subresource may not change, bumps `generation` on spec changes, skips no-op writes.
    fn finish_update(
        &mut self,
        kind: &KindInfo,
        existing: &Value,
        mut updated: Value,
        subresource: Option<&str>,
        dry_run: bool,
    ) -> Change {
        for key in [
            "uid",
            "creationTimestamp",
            "name",
            "namespace",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            match existing["metadata"].get(key) {
                Some(value) => updated["metadata"][key] = value.clone(),
                None => {
                    updated["metadata"]
                        .as_object_mut()
                        .map(|metadata| metadata.remove(key));
                }
            }
        }
        updated["apiVersion"] = Value::String(kind.api_version());
        updated["kind"] = Value::String(kind.kind.clone());
        match subresource {
            Some("status") => {
                let status = updated.get("status").cloned();
                let managed = updated.pointer("/metadata/managedFields").cloned();
                let mut kept = existing.clone();
                match status {
                    Some(status) => kept["status"] = status,
                    None => {
                        kept.as_object_mut().map(|map| map.remove("status"));
                    }
                }
                if let Some(managed) = managed {
                    kept["metadata"]["managedFields"] = managed;
                }
                updated = kept;
            }
            _ if kind.status_subresource => match existing.get("status") {
                Some(status) => updated["status"] = status.clone(),
                None => {
                    updated.as_object_mut().map(|map| map.remove("status"));
                }
            },
            _ => {}
        }
        let generation = existing
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let bump = i64::from(spec_part(existing) != spec_part(&updated));
        updated["metadata"]["generation"] = json!(generation + bump);
        updated["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"].clone();
        if updated == *existing {
            return Change {
                resource_version: self.resource_version,
                kind: kind.clone(),
                event: EventType::Modified,
                object: updated,
                committed: false,
            };
        }
        if updated.pointer("/metadata/deletionTimestamp").is_some()
            && finalizers_of(&updated).is_empty()
            && !dry_run
        {
            // The last finalizer of an object being deleted is gone: so is the object.
            return self.remove(kind, updated);
        }
        self.maybe_commit(kind, EventType::Modified, updated, dry_run)
    }

    /// `PUT`: replaces; a stale `metadata.resourceVersion` is a `409 Conflict`.
    pub(crate) fn replace(
        &mut self,
        kind: &KindInfo,
        namespace: &str,
        name: &str,
        subresource: Option<&str>,
        object: Value,
        options: &WriteOptions,
    ) -> Result<Change, ApiError> {
        let existing = self.existing(kind, namespace, name)?;
        if name_of(&object) != name {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        let sent_version = object
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str);
        if let Some(sent_version) = sent_version
            && Some(sent_version)
                != existing
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                    resource_name(kind)
                ),
            ));
        }
        let mut updated = object;
        if subresource.is_none() {
            immutable::check(kind, &existing, &updated)?;
        }
        record_update(kind, options, subresource, &existing, &mut updated);
        Ok(self.finish_update(kind, &existing, updated, subresource, options.dry_run))
    }

    /// `PATCH` with `application/merge-patch+json` (also used, as an approximation, for strategic
    /// merge patches).
    pub(crate) fn merge_patch(
        &mut self,
        kind: &KindInfo,
        namespace: &str,
        name: &str,
        subresource: Option<&str>,
        patch: &Value,
        options: &WriteOptions,
    ) -> Result<Change, ApiError> {
        let existing = self.existing(kind, namespace, name)?;
        let mut updated = existing.clone();
        ssa::merge_patch(&mut updated, patch);
        if subresource.is_none() {
            immutable::check(kind, &existing, &updated)?;
        }
        record_update(kind, options, subresource, &existing, &mut updated);
        Ok(self.finish_update(kind, &existing, updated, subresource, options.dry_run))
    }

    /// `PATCH` with `application/apply-patch+yaml`: server-side apply, creating when missing.
    pub(crate) fn apply(
        &mut self,
        kind: &KindInfo,
        namespace: &str,
        name: &str,
        subresource: Option<&str>,
        mut applied: Value,
        options: &WriteOptions,
    ) -> Result<Change, ApiError> {
        if options.manager.is_empty() {
            return Err(ApiError::bad_request(
                "PATCH, application/apply-patch+yaml: fieldManager is required for apply requests",
            ));
        }
        let body_api_version = applied
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let body_kind = applied
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if body_api_version != kind.api_version() || body_kind != kind.kind {
            return Err(ApiError::bad_request(format!(
                "apply patch must carry apiVersion {:?} and kind {:?}, found {body_api_version:?} and {body_kind:?}",
                kind.api_version(),
                kind.kind
            )));
        }
        if name_of(&applied) != name {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        let body_namespace = namespace_of(&applied);
        if kind.namespaced && !body_namespace.is_empty() && body_namespace != namespace {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        strip_server_fields(&mut applied);
        self.check_declared(kind, namespace, name, &applied)?;
        match subresource {
            Some("status") => {
                let status = applied.get("status").cloned().unwrap_or(json!({}));
                applied = json!({ "apiVersion": kind.api_version(), "kind": kind.kind, "metadata": { "name": name }, "status": status });
            }
            _ if kind.status_subresource => {
                applied.as_object_mut().map(|map| map.remove("status"));
            }
            _ => {}
        }
        let now = now();
        let api_version = kind.api_version();
        let writer = Writer {
            manager: &options.manager,
            subresource,
            api_version: &api_version,
            now: &now,
        };
        let conflict = |conflicts: Vec<ssa::Conflict>| {
            let causes: Vec<Value> = conflicts
                .iter()
                .map(|conflict| {
                    json!({
                        "reason": "FieldManagerConflict",
                        "message": format!("conflict with \"{}\"", conflict.manager),
                        "field": format!(".{}", conflict.path.join(".")),
                    })
                })
                .collect();
            let fields: Vec<String> = conflicts
                .iter()
                .map(|conflict| format!(".{}", conflict.path.join(".")))
                .collect();
            ApiError {
                details: Some(
                    json!({ "name": name, "group": kind.group, "kind": kind.plural, "causes": causes }),
                ),
                ..ApiError::new(
                    409,
                    "Conflict",
                    format!(
                        "Apply failed with {} conflicts: {}",
                        conflicts.len(),
                        fields.join(", ")
                    ),
                )
            }
        };
        match self.get(kind, namespace, name).cloned() {
            None => {
                if subresource.is_some() {
                    return Err(ApiError::not_found(kind, name));
                }
                self.check_namespace(kind, namespace)?;
                let merged =
                    ssa::apply(&Value::Null, &applied, &writer, options.force).map_err(conflict)?;
                let managed = merged.pointer("/metadata/managedFields").cloned();
                let mut object = self.prepare_new(kind, namespace, merged, false)?;
                if let Some(managed) = managed {
                    object["metadata"]["managedFields"] = managed;
                }
                Ok(self.maybe_commit(kind, EventType::Added, object, options.dry_run))
            }
            Some(existing) => {
                let merged =
                    ssa::apply(&existing, &applied, &writer, options.force).map_err(conflict)?;
                if subresource.is_none() {
                    immutable::check(kind, &existing, &merged)?;
                }
                Ok(self.finish_update(kind, &existing, merged, subresource, options.dry_run))
            }
        }
    }

    /// Refuses an apply patch of a custom resource with fields its stored CRD does not
    /// declare (see `structural`). Kinds without a stored CRD are not checked.
    fn check_declared(
        &self,
        kind: &KindInfo,
        namespace: &str,
        name: &str,
        applied: &Value,
    ) -> Result<(), ApiError> {
        if kind.group.is_empty() {
            return Ok(());
        }
        let Some(crds) = self.kind("apiextensions.k8s.io/v1", "CustomResourceDefinition") else {
            return Ok(());
        };
        let crd_name = format!("{}.{}", kind.plural, kind.group);
        let Some(schema) = self
            .get(crds, "", &crd_name)
            .and_then(|crd| structural::version_schema(crd, kind))
        else {
            return Ok(());
        };
        let undeclared = structural::undeclared_fields(schema, applied);
        if undeclared.is_empty() {
            Ok(())
        } else {
            Err(structural::refusal(kind, namespace, name, &undeclared))
        }
    }

    /// `DELETE`, as a real server and its garbage collector treat it:
    /// - an object with finalizers, or deleted with `propagationPolicy: Foreground` (which adds
    ///   the `foregroundDeletion` finalizer), only gets `metadata.deletionTimestamp` and stays
    ///   until [`Self::collect_garbage`] has deleted its dependents and its finalizers are gone;
    /// - `Orphan` (the default for `batch/v1` Jobs) removes the object's `ownerReferences` from
    ///   its dependents; `Background` (the default otherwise) removes the object now and its
    ///   dependents at the next garbage collection;
    /// - a namespace goes at once with everything in it.
    pub(crate) fn delete(
        &mut self,
        kind: &KindInfo,
        namespace: &str,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<Vec<Change>, ApiError> {
        let existing = self.existing(kind, namespace, name)?;
        if options.dry_run {
            return Ok(vec![Change {
                resource_version: self.resource_version,
                kind: kind.clone(),
                event: EventType::Deleted,
                object: existing,
                committed: false,
            }]);
        }
        let mut changes = Vec::new();
        if kind.group.is_empty() && kind.plural == "namespaces" {
            let contained: Vec<(KindInfo, Value)> = self
                .objects
                .iter()
                .filter(|(key, _)| key.namespace == name)
                .filter_map(|(key, object)| {
                    let kind = self.kind_of_key(key)?;
                    Some((kind, object.clone()))
                })
                .collect();
            for (kind, object) in contained {
                changes.push(self.remove(&kind, object));
            }
            changes.push(self.remove(kind, existing));
            return Ok(changes);
        }
        if existing.pointer("/metadata/deletionTimestamp").is_some() {
            // Already being deleted: the server answers with the object as it is.
            return Ok(vec![Change {
                resource_version: self.resource_version,
                kind: kind.clone(),
                event: EventType::Modified,
                object: existing,
                committed: false,
            }]);
        }
        let propagation = match options.propagation {
            Propagation::Default if kind.group == "batch" && kind.kind == "Job" => {
                Propagation::Orphan
            }
            Propagation::Default => Propagation::Background,
            chosen => chosen,
        };
        let uid = uid_of(&existing).to_owned();
        if propagation == Propagation::Orphan {
            for key in self.dependents(&uid) {
                let Some(kind) = self.kind_of_key(&key) else {
                    continue;
                };
                let mut dependent = self.objects[&key].clone();
                if let Some(references) = dependent
                    .pointer_mut("/metadata/ownerReferences")
                    .and_then(Value::as_array_mut)
                {
                    references.retain(|reference| {
                        reference.get("uid").and_then(Value::as_str) != Some(uid.as_str())
                    });
                }
                changes.push(self.commit(&kind, EventType::Modified, dependent));
            }
        }
        let mut finalizers = finalizers_of(&existing);
        if propagation == Propagation::Foreground
            && !finalizers.iter().any(|finalizer| finalizer == FOREGROUND)
        {
            finalizers.push(FOREGROUND.to_owned());
        }
        if finalizers.is_empty() {
            changes.push(self.remove(kind, existing));
        } else {
            let mut object = existing;
            object["metadata"]["deletionTimestamp"] = Value::String(now());
            object["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            object["metadata"]["finalizers"] = json!(finalizers);
            changes.push(self.commit(kind, EventType::Modified, object));
        }
        Ok(changes)
    }

    /// Removes an object now, whatever its finalizers (closing a pod's log); its dependents
    /// are collected at the next garbage collection.
    pub(crate) fn remove(&mut self, kind: &KindInfo, object: Value) -> Change {
        if kind.group.is_empty()
            && kind.plural == "pods"
            && let Some(log) = self.logs.remove(&(
                namespace_of(&object).to_owned(),
                name_of(&object).to_owned(),
            ))
        {
            log.close();
        }
        let uid = uid_of(&object);
        if !uid.is_empty() {
            self.deleted_uids.insert(uid.to_owned());
        }
        self.commit(kind, EventType::Deleted, object)
    }

    fn kind_of_key(&self, key: &ObjectKey) -> Option<KindInfo> {
        self.kinds
            .iter()
            .find(|info| info.group == key.group && info.plural == key.plural)
            .cloned()
    }

    /// The objects whose `ownerReferences` name `uid`.
    fn dependents(&self, uid: &str) -> Vec<ObjectKey> {
        if uid.is_empty() {
            return Vec::new();
        }
        self.objects
            .iter()
            .filter(|(_, object)| owner_uids(object).any(|owner| owner == uid))
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// One run of the garbage collector, until nothing changes: the dependents of objects
    /// being deleted in the foreground are deleted (in the foreground too), such an object
    /// loses its `foregroundDeletion` finalizer once no dependent is left, an object being
    /// deleted goes once it has no finalizer, and objects whose owners were all deleted go.
    pub(crate) fn collect_garbage(&mut self) -> Vec<Change> {
        let mut all = Vec::new();
        loop {
            let mut changes = Vec::new();
            let terminating: Vec<ObjectKey> = self
                .objects
                .iter()
                .filter(|(_, object)| object.pointer("/metadata/deletionTimestamp").is_some())
                .map(|(key, _)| key.clone())
                .collect();
            for key in terminating {
                let (Some(kind), Some(object)) = (self.kind_of_key(&key), self.objects.get(&key))
                else {
                    continue;
                };
                let mut object = object.clone();
                let mut finalizers = finalizers_of(&object);
                if finalizers.iter().any(|finalizer| finalizer == FOREGROUND) {
                    let dependents = self.dependents(uid_of(&object));
                    if dependents.is_empty() {
                        finalizers.retain(|finalizer| finalizer != FOREGROUND);
                        object["metadata"]["finalizers"] = json!(finalizers);
                        if !finalizers.is_empty() {
                            changes.push(self.commit(&kind, EventType::Modified, object));
                            continue;
                        }
                    } else {
                        for dependent in dependents {
                            let Some(dependent_kind) = self.kind_of_key(&dependent) else {
                                continue;
                            };
                            let options = DeleteOptions {
                                dry_run: false,
                                propagation: Propagation::Foreground,
                            };
                            if let Ok(deleted) = self.delete(
                                &dependent_kind,
                                &dependent.namespace,
                                &dependent.name,
                                &options,
                            ) {
                                changes
                                    .extend(deleted.into_iter().filter(|change| change.committed));
                            }
                        }
                        continue;
                    }
                }
                if finalizers.is_empty() {
                    changes.push(self.remove(&kind, object));
                }
            }
            let orphans: Vec<ObjectKey> = self
                .objects
                .iter()
                .filter(|(_, object)| {
                    object.pointer("/metadata/deletionTimestamp").is_none()
                        && owner_uids(object).next().is_some()
                        && owner_uids(object).all(|owner| self.deleted_uids.contains(owner))
                })
                .map(|(key, _)| key.clone())
                .collect();
            for key in orphans {
                let Some(kind) = self.kind_of_key(&key) else {
                    continue;
                };
                let options = DeleteOptions {
                    dry_run: false,
                    propagation: Propagation::Background,
                };
                if let Ok(deleted) = self.delete(&kind, &key.namespace, &key.name, &options) {
                    changes.extend(deleted);
                }
            }
            if changes.is_empty() {
                return all;
            }
            all.extend(changes);
        }
    }

    /// Starts a watch: the events to replay first, and the receiver of live events.
    pub(crate) fn watch(
        &mut self,
        filter: WatchFilter,
        from: Option<u64>,
        initial_events: bool,
    ) -> Result<(Vec<Value>, mpsc::UnboundedReceiver<Value>), ApiError> {
        let replay: Vec<Value> = match from {
            Some(version) if !initial_events => {
                if version < self.compacted {
                    return Err(ApiError::new(
                        410,
                        "Expired",
                        format!("too old resource version: {version} ({})", self.compacted),
                    ));
                }
                self.history
                    .iter()
                    .filter(|change| {
                        change.resource_version > version
                            && filter.matches(&change.kind, &change.object)
                    })
                    .map(Change::watch_event)
                    .collect()
            }
            _ => self
                .list(&filter)
                .into_iter()
                .map(|object| json!({ "type": "ADDED", "object": object }))
                .collect(),
        };
        let (sender, receiver) = mpsc::unbounded_channel();
        self.watchers.push(Watcher { filter, sender });
        Ok((replay, receiver))
    }

    /// Makes every watch from a resource version before now fail with `410 Gone`.
    pub(crate) fn compact(&mut self) {
        self.compacted = self.resource_version;
        self.history.clear();
    }

    /// Ends every open watch stream (clients re-watch from their last version).
    pub(crate) fn close_watches(&mut self) {
        self.watchers.clear();
    }

    pub(crate) fn log(&mut self, namespace: &str, pod: &str) -> Arc<LogBuffer> {
        self.logs
            .entry((namespace.to_owned(), pod.to_owned()))
            .or_default()
            .clone()
    }
}
