//! The HTTP face of the FAKE API server: routing of the real Kubernetes REST paths, watch and
//! log streams, and discovery documents.

#![allow(
    clippy::result_large_err,
    reason = "the handlers return an HTTP error response whose size depends on the features the workspace unifies; the fake is test-only"
)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};

use super::kinds::KindInfo;
use super::selector::{FieldSelector, LabelSelector};
use super::store::{
    ApiError, Change, DeleteOptions, EventType, LogBuffer, Propagation, WatchFilter, WriteOptions,
};
use super::{FakeApiServer, RecordedRequest, Shared, WriteEvent, WriteVerb};

fn json_response(code: StatusCode, value: &Value) -> Response {
    let body = serde_json::to_vec(value).expect("JSON values serialize");
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn error_response(error: &ApiError) -> Response {
    let code = StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &error.to_status())
}

fn not_served(path: &str) -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        format!("the server could not find the requested resource ({path})"),
    )
}

/// What a resource path addresses.
struct Target {
    kind: KindInfo,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_query(uri: &Uri) -> BTreeMap<String, String> {
    uri.query()
        .map(|query| {
            query
                .split('&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                    (decode(key), decode(value))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Percent-decoding of one query component (`+` is a space).
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => out.push(b' '),
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).ok();
                match hex.and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        index += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_true(query: &BTreeMap<String, String>, key: &str) -> bool {
    query
        .get(key)
        .is_some_and(|value| value == "true" || value == "1")
}

/// The single entry point: records the request, then routes it.
pub(crate) async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query = parse_query(&uri);
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let parsed_body = parse_body(&body);
    shared
        .requests
        .lock()
        .expect("requests lock poisoned")
        .push(RecordedRequest {
            method: method.to_string(),
            path: uri.path().to_owned(),
            query: query.clone(),
            content_type: content_type.clone(),
            body: parsed_body.clone(),
        });
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("unknown");
    let request = Request {
        shared: &shared,
        method: &method,
        path: uri.path(),
        query: &query,
        content_type: content_type.as_deref(),
        body: parsed_body,
        user_agent,
    };
    match route(&request) {
        Ok(response) => response,
        Err(error) => error_response(&error),
    }
}

/// A JSON body, or YAML (server-side apply bodies may be YAML).
fn parse_body(body: &Bytes) -> Option<Value> {
    if body.is_empty() {
        return None;
    }
    serde_json::from_slice(body)
        .ok()
        .or_else(|| serde_yaml::from_slice(body).ok())
}

struct Request<'a> {
    shared: &'a Arc<Shared>,
    method: &'a Method,
    path: &'a str,
    query: &'a BTreeMap<String, String>,
    content_type: Option<&'a str>,
    body: Option<Value>,
    user_agent: &'a str,
}

fn route(request: &Request<'_>) -> Result<Response, ApiError> {
    let segments: Vec<&str> = request
        .path
        .trim_matches('/')
        .split('/')
        .filter(|segment| !segment.is_empty())
        .collect();
    let discovery = *request.method == Method::GET;
    match segments.as_slice() {
        ["version"] if discovery => Ok(json_response(StatusCode::OK, &version())),
        ["api"] if discovery => Ok(json_response(
            StatusCode::OK,
            &json!({
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1" }],
            }),
        )),
        ["apis"] if discovery => Ok(json_response(StatusCode::OK, &group_list(request.shared))),
        ["apis", group] if discovery => {
            let list = group_list(request.shared);
            let found = list["groups"]
                .as_array()
                .and_then(|groups| groups.iter().find(|entry| entry["name"] == *group).cloned());
            let mut found = found.ok_or_else(|| not_served(request.path))?;
            found["kind"] = json!("APIGroup");
            found["apiVersion"] = json!("v1");
            Ok(json_response(StatusCode::OK, &found))
        }
        ["api", version] if discovery => resource_list(request, "", version),
        ["apis", group, version] if discovery => resource_list(request, group, version),
        ["api", version, rest @ ..] => resource(request, "", version, rest),
        ["apis", group, version, rest @ ..] => resource(request, group, version, rest),
        _ => Err(not_served(request.path)),
    }
}

fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-fake",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

fn group_list(shared: &Shared) -> Value {
    let store = shared.store();
    let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for kind in store.kinds.iter().filter(|kind| !kind.group.is_empty()) {
        let versions = groups.entry(&kind.group).or_default();
        if !versions.contains(&kind.version.as_str()) {
            versions.push(&kind.version);
        }
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(group, versions)| {
            let versions: Vec<Value> = versions.iter().map(|version| json!({ "groupVersion": format!("{group}/{version}"), "version": version })).collect();
            json!({ "name": group, "versions": versions, "preferredVersion": versions[0] })
        })
        .collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

fn resource_list(request: &Request<'_>, group: &str, version: &str) -> Result<Response, ApiError> {
    let store = request.shared.store();
    let kinds: Vec<&KindInfo> = store
        .kinds
        .iter()
        .filter(|kind| kind.group == group && kind.version == version)
        .collect();
    if kinds.is_empty() {
        return Err(not_served(request.path));
    }
    let verbs = json!([
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch"
    ]);
    let mut resources = Vec::new();
    for kind in &kinds {
        resources.push(json!({ "name": kind.plural, "singularName": kind.singular(), "namespaced": kind.namespaced, "kind": kind.kind, "verbs": verbs }));
        if kind.status_subresource {
            resources.push(json!({ "name": format!("{}/status", kind.plural), "singularName": "", "namespaced": kind.namespaced, "kind": kind.kind, "verbs": ["get", "patch", "update"] }));
        }
        if kind.group.is_empty() && kind.plural == "pods" {
            resources.push(json!({ "name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"] }));
        }
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources }),
    ))
}

fn target(
    request: &Request<'_>,
    group: &str,
    version: &str,
    rest: &[&str],
) -> Result<Target, ApiError> {
    let store = request.shared.store();
    let lookup = |plural: &str| {
        store
            .kind_by_plural(group, version, plural)
            .cloned()
            .ok_or_else(|| not_served(request.path))
    };
    let owned = |text: &&str| Some((*text).to_owned());
    let namespaced_kind = |plural: &str| {
        store
            .kind_by_plural(group, version, plural)
            .is_some_and(|kind| kind.namespaced)
    };
    let target = match rest {
        ["namespaces", namespace, plural, tail @ ..]
            if namespaced_kind(plural) && tail.len() <= 2 =>
        {
            Target {
                kind: lookup(plural)?,
                namespace: owned(namespace),
                name: tail.first().and_then(owned),
                subresource: tail.get(1).and_then(owned),
            }
        }
        [plural, tail @ ..] if tail.len() <= 2 => {
            let kind = lookup(plural)?;
            if kind.namespaced && !tail.is_empty() {
                return Err(not_served(request.path));
            }
            Target {
                kind,
                namespace: None,
                name: tail.first().and_then(owned),
                subresource: tail.get(1).and_then(owned),
            }
        }
        _ => return Err(not_served(request.path)),
    };
    let subresource_ok = match target.subresource.as_deref() {
        None => true,
        Some("status") => target.kind.status_subresource,
        Some("log") => target.kind.group.is_empty() && target.kind.plural == "pods",
        Some(_) => false,
    };
    if !subresource_ok {
        return Err(not_served(request.path));
    }
    Ok(target)
}

fn selectors(query: &BTreeMap<String, String>) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))
        .map_err(ApiError::bad_request)?;
    let fields = FieldSelector::parse(query.get("fieldSelector").map_or("", String::as_str))
        .map_err(ApiError::bad_request)?;
    Ok((labels, fields))
}

fn write_options(request: &Request<'_>) -> WriteOptions {
    let manager = request.query.get("fieldManager").cloned();
    let is_apply = request
        .content_type
        .is_some_and(|content_type| content_type.starts_with("application/apply-patch"));
    let manager = match manager {
        Some(manager) => manager,
        None if is_apply => String::new(),
        None => request
            .user_agent
            .split('/')
            .next()
            .unwrap_or("unknown")
            .to_owned(),
    };
    WriteOptions {
        manager,
        dry_run: request
            .query
            .get("dryRun")
            .is_some_and(|value| value == "All"),
        force: is_true(request.query, "force"),
    }
}

fn resource(
    request: &Request<'_>,
    group: &str,
    version: &str,
    rest: &[&str],
) -> Result<Response, ApiError> {
    let target = target(request, group, version, rest)?;
    let namespace = target.namespace.clone().unwrap_or_default();
    let body = || {
        request
            .body
            .clone()
            .ok_or_else(|| ApiError::bad_request("the request has no body"))
    };
    let method = request.method;
    match (&target.name, target.subresource.as_deref()) {
        (None, _) if *method == Method::GET => {
            if is_true(request.query, "watch") {
                watch(request, &target)
            } else {
                list(request, &target)
            }
        }
        (None, _) if *method == Method::POST => {
            if target.kind.namespaced && target.namespace.is_none() {
                return Err(ApiError::new(
                    405,
                    "MethodNotAllowed",
                    "create needs a namespace in the path",
                ));
            }
            let options = write_options(request);
            let result = request
                .shared
                .store()
                .create(&target.kind, &namespace, body()?, &options);
            let change = result?;
            Ok(written(
                request,
                WriteVerb::Create,
                None,
                &change,
                options.dry_run,
                StatusCode::CREATED,
            ))
        }
        (None, _) if *method == Method::DELETE => {
            let (labels, fields) = selectors(request.query)?;
            let filter = WatchFilter {
                kind: target.kind.clone(),
                namespace: target.namespace.clone(),
                labels,
                fields,
            };
            let options = delete_options(request)?;
            let mut store = request.shared.store();
            let mut deleted = Vec::new();
            let mut changes = Vec::new();
            for object in store.list(&filter) {
                let object_namespace = super::store::namespace_of(&object).to_owned();
                changes.extend(store.delete(
                    &target.kind,
                    &object_namespace,
                    super::store::name_of(&object),
                    &options,
                )?);
                deleted.push(object);
            }
            drop(store);
            fire(
                request.shared,
                WriteVerb::Delete,
                None,
                &changes,
                options.dry_run,
            );
            Ok(json_response(
                StatusCode::OK,
                &list_body(&target.kind, deleted, 0),
            ))
        }
        (Some(name), Some("log")) if *method == Method::GET => logs(request, &namespace, name),
        (Some(name), subresource) if *method == Method::GET => {
            let store = request.shared.store();
            let _ = subresource;
            let object = store
                .get(&target.kind, &namespace, name)
                .cloned()
                .ok_or_else(|| ApiError::not_found(&target.kind, name))?;
            Ok(json_response(StatusCode::OK, &object))
        }
        (Some(name), subresource) if *method == Method::PUT => {
            let options = write_options(request);
            let result = request.shared.store().replace(
                &target.kind,
                &namespace,
                name,
                subresource,
                body()?,
                &options,
            );
            let change = result?;
            Ok(written(
                request,
                WriteVerb::Update,
                subresource,
                &change,
                options.dry_run,
                StatusCode::OK,
            ))
        }
        (Some(name), subresource) if *method == Method::PATCH => {
            let options = write_options(request);
            let content_type = request.content_type.unwrap_or_default();
            let (result, verb) = if content_type.starts_with("application/apply-patch") {
                let result = request.shared.store().apply(
                    &target.kind,
                    &namespace,
                    name,
                    subresource,
                    body()?,
                    &options,
                );
                (result, WriteVerb::Apply)
            } else if content_type.starts_with("application/merge-patch+json")
                || content_type.starts_with("application/strategic-merge-patch+json")
            {
                let result = request.shared.store().merge_patch(
                    &target.kind,
                    &namespace,
                    name,
                    subresource,
                    &body()?,
                    &options,
                );
                (result, WriteVerb::Patch)
            } else {
                return Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    format!("the FAKE API server does not support the patch type {content_type:?}"),
                ));
            };
            let change = result?;
            let code = if change.event == EventType::Added {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(written(
                request,
                verb,
                subresource,
                &change,
                options.dry_run,
                code,
            ))
        }
        (Some(name), None) if *method == Method::DELETE => {
            let options = delete_options(request)?;
            let result = request
                .shared
                .store()
                .delete(&target.kind, &namespace, name, &options);
            let changes = result?;
            fire(
                request.shared,
                WriteVerb::Delete,
                None,
                &changes,
                options.dry_run,
            );
            let object = changes
                .last()
                .map(|change| change.object.clone())
                .unwrap_or(Value::Null);
            Ok(json_response(StatusCode::OK, &object))
        }
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("{method} is not allowed on {}", request.path),
        )),
    }
}

/// `dryRun` and `propagationPolicy` of a delete, from the query or the `DeleteOptions` body
/// (where kube-rs puts them).
fn delete_options(request: &Request<'_>) -> Result<DeleteOptions, ApiError> {
    let body = request.body.as_ref();
    let dry_run = request
        .query
        .get("dryRun")
        .is_some_and(|value| value == "All")
        || body
            .and_then(|body| body.get("dryRun"))
            .and_then(Value::as_array)
            .is_some_and(|values| values.iter().any(|value| value == "All"));
    let policy = request
        .query
        .get("propagationPolicy")
        .map(String::as_str)
        .or_else(|| {
            body.and_then(|body| body.get("propagationPolicy"))
                .and_then(Value::as_str)
        });
    let propagation = match policy {
        Some(policy) => Propagation::parse(policy)?,
        None => Propagation::Default,
    };
    Ok(DeleteOptions {
        dry_run,
        propagation,
    })
}

/// One run of the garbage collector (see `Store::collect_garbage`); the hooks see what it
/// deleted.
pub(crate) fn collect_garbage(shared: &Arc<Shared>) {
    let changes = shared.store().collect_garbage();
    fire(shared, WriteVerb::Delete, None, &changes, false);
}

/// The response to a write of one object, after the hooks have seen it.
fn written(
    request: &Request<'_>,
    verb: WriteVerb,
    subresource: Option<&str>,
    change: &Change,
    dry_run: bool,
    code: StatusCode,
) -> Response {
    fire(
        request.shared,
        verb,
        subresource,
        std::slice::from_ref(change),
        dry_run,
    );
    json_response(code, &change.object)
}

/// Runs the hooks registered for the written kinds, outside the store lock.
fn fire(
    shared: &Arc<Shared>,
    verb: WriteVerb,
    subresource: Option<&str>,
    changes: &[Change],
    dry_run: bool,
) {
    if dry_run {
        return;
    }
    let hooks = shared.hooks.lock().expect("hooks lock poisoned").clone();
    if hooks.is_empty() {
        return;
    }
    let fake = FakeApiServer {
        shared: shared.clone(),
    };
    for change in changes {
        // A no-op write commits nothing; hooks see only real changes.
        if !change.committed {
            continue;
        }
        let event = WriteEvent {
            verb: if change.event == EventType::Deleted {
                WriteVerb::Delete
            } else {
                verb
            },
            subresource: subresource.map(str::to_owned),
            object: change.object.clone(),
        };
        for (kind, hook) in &hooks {
            if *kind == change.kind.kind {
                hook(&fake, &event);
            }
        }
    }
}

fn list_body(kind: &KindInfo, items: Vec<Value>, resource_version: u64) -> Value {
    json!({
        "apiVersion": kind.api_version(),
        "kind": format!("{}List", kind.kind),
        "metadata": { "resourceVersion": resource_version.to_string() },
        "items": items,
    })
}

fn list(request: &Request<'_>, target: &Target) -> Result<Response, ApiError> {
    let (labels, fields) = selectors(request.query)?;
    let filter = WatchFilter {
        kind: target.kind.clone(),
        namespace: target.namespace.clone(),
        labels,
        fields,
    };
    let store = request.shared.store();
    let items = store.list(&filter);
    Ok(json_response(
        StatusCode::OK,
        &list_body(&target.kind, items, store.resource_version()),
    ))
}

fn ndjson(event: &Value) -> Result<Bytes, Infallible> {
    let mut line = serde_json::to_vec(event).expect("JSON values serialize");
    line.push(b'\n');
    Ok(Bytes::from(line))
}

fn watch(request: &Request<'_>, target: &Target) -> Result<Response, ApiError> {
    let (labels, fields) = selectors(request.query)?;
    let filter = WatchFilter {
        kind: target.kind.clone(),
        namespace: target.namespace.clone(),
        labels,
        fields,
    };
    let from = request
        .query
        .get("resourceVersion")
        .and_then(|version| version.parse::<u64>().ok())
        .filter(|version| *version > 0);
    let initial_events = is_true(request.query, "sendInitialEvents");
    let timeout = request
        .query
        .get("timeoutSeconds")
        .and_then(|seconds| seconds.parse::<u64>().ok())
        .unwrap_or(1800);
    let mut store = request.shared.store();
    let (mut replay, receiver) = match store.watch(filter, from, initial_events) {
        Ok(started) => started,
        Err(error) => {
            let event = json!({ "type": "ERROR", "object": error.to_status() });
            return Ok(json_response(StatusCode::OK, &event));
        }
    };
    if initial_events {
        replay.push(json!({
            "type": "BOOKMARK",
            "object": {
                "apiVersion": target.kind.api_version(),
                "kind": target.kind.kind,
                "metadata": {
                    "resourceVersion": store.resource_version().to_string(),
                    "annotations": { "k8s.io/initial-events-end": "true" },
                },
            },
        }));
    }
    drop(store);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    let live = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|event| (event, receiver))
    });
    let events = futures::stream::iter(replay)
        .chain(live)
        .map(|event| ndjson(&event))
        .take_until(tokio::time::sleep_until(deadline));
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(events),
    )
        .into_response())
}

fn logs(request: &Request<'_>, namespace: &str, pod: &str) -> Result<Response, ApiError> {
    let mut store = request.shared.store();
    let pods = store
        .kind("v1", "Pod")
        .cloned()
        .ok_or_else(|| not_served(request.path))?;
    let Some(object) = store.get(&pods, namespace, pod) else {
        return Err(ApiError::not_found(&pods, pod));
    };
    // A real server cannot read the log of a container that has not started.
    if object.pointer("/status/phase").and_then(Value::as_str) == Some("Pending") {
        return Err(ApiError::bad_request(format!(
            "container in pod \"{pod}\" is waiting to start: ContainerCreating"
        )));
    }
    let log = store.log(namespace, pod);
    drop(store);
    let tail = request
        .query
        .get("tailLines")
        .and_then(|lines| lines.parse::<usize>().ok());
    let start = {
        let state = log.state.lock().expect("log lock poisoned");
        tail.map_or(0, |tail| state.lines.len().saturating_sub(tail))
    };
    let headers = [(header::CONTENT_TYPE, "text/plain")];
    if !is_true(request.query, "follow") {
        let state = log.state.lock().expect("log lock poisoned");
        let text: String = state.lines[start..]
            .iter()
            .map(|line| format!("{line}\n"))
            .collect();
        return Ok((headers, text).into_response());
    }
    let epoch = log.state.lock().expect("log lock poisoned").epoch;
    let stream = futures::stream::unfold((log, start, epoch), follow_step);
    Ok((headers, Body::from_stream(stream)).into_response())
}

/// One step of a followed log: the lines appended since the last step, or the end once the log
/// is closed or its streams are broken.
async fn follow_step(
    (log, index, epoch): (Arc<LogBuffer>, usize, u64),
) -> Option<(Result<Bytes, Infallible>, (Arc<LogBuffer>, usize, u64))> {
    let step = loop {
        let notified = log.notify.notified();
        let mut notified = std::pin::pin!(notified);
        notified.as_mut().enable();
        {
            let state = log.state.lock().expect("log lock poisoned");
            if state.epoch != epoch {
                break None;
            }
            if index < state.lines.len() {
                let text: String = state.lines[index..]
                    .iter()
                    .map(|line| format!("{line}\n"))
                    .collect();
                break Some((text, state.lines.len()));
            }
            if state.closed {
                break None;
            }
        }
        notified.await;
    };
    step.map(|(text, next)| (Ok(Bytes::from(text)), (log, next, epoch)))
}
