//! A FAKE Kubernetes API server for tests: an axum server on `127.0.0.1:0` with an in-memory
//! object store, serving the REST paths kube-rs uses.
//!
//! It is a fake, not an emulator: it serves enough of the API for trnkit's client code to run
//! over a real HTTP stack (`kube::Client`, `Api`, `watcher`, `await_condition`, `log_stream`,
//! `Discovery`), and no controllers run. A test scripts the cluster's reactions through the
//! handle: it inserts objects, sets status, appends pod log lines, and registers hooks that fire
//! when a client writes an object of a kind.
//!
//! What it serves, for every kind in [`kinds::default_kinds`] (and any a test registers):
//! - `GET` one object, `LIST` with `labelSelector` (`=`, `==`, `!=`, `k`, `!k`, `in`, `notin`,
//!   joined by `,`) and `fieldSelector` (`metadata.name`, `metadata.namespace`);
//! - `WATCH` (`?watch=true`): newline-delimited `ADDED`/`MODIFIED`/`DELETED` events from the
//!   given `resourceVersion` (all current objects as `ADDED` when it is absent or `0`), `410 Gone`
//!   after [`FakeApiServer::compact_history`], `timeoutSeconds`, and `sendInitialEvents` with the
//!   closing bookmark;
//! - `POST` (create; `409 AlreadyExists`; `generateName`), `PUT` (replace; stale
//!   `resourceVersion` is `409 Conflict`), `DELETE` (one object, or a collection by selector;
//!   `404 NotFound` as a real `Status`), and `dryRun=All` on writes;
//! - deletion as the real server and its garbage collector do it: `propagationPolicy:
//!   Foreground` (or any finalizer) keeps the object with `metadata.deletionTimestamp` (and the
//!   `foregroundDeletion` finalizer) until its dependents (objects whose `ownerReferences` name
//!   it) are gone; `Background` (the default) deletes the dependents after the object; `Orphan`
//!   (the default for `batch/v1` Jobs) keeps them without the reference. The collector runs every
//!   [`GARBAGE_COLLECTION_INTERVAL`] (or on [`FakeApiServer::collect_garbage`]);
//! - the real server's refusals of bad input where deploy depends on them: a server-side apply
//!   of a custom resource whose CRD is stored carrying a field the CRD's schema does not declare
//!   (`500`, `failed to create typed patch object (…): .spec.foo: field not declared in
//!   schema`, see `structural`), and changes to immutable fields of StorageClasses, Jobs,
//!   PersistentVolumes and claims (`422 Invalid`, see `immutable`);
//! - `PATCH` with `application/apply-patch+yaml` (server-side apply: create or merge, field
//!   ownership per `fieldManager` in `metadata.managedFields`, `409 Conflict` with another
//!   manager unless `force=true`, no-op re-applies keep the `resourceVersion`), and
//!   `application/merge-patch+json` (strategic merge patches are treated as merge patches);
//! - the `status` subresource (writes to the main resource keep the stored status), and
//!   `pods/{name}/log` with `follow=true` streaming the lines a test appends until
//!   [`FakeApiServer::close_log`] or the pod's deletion (`400` while the pod's phase is
//!   `Pending`, as for a container that has not started);
//! - discovery: `/version`, `/api`, `/apis`, `/apis/<group>`, `/api/v1`, `/apis/<group>/<version>`.
//!
//! Known differences from a real API server: no admission or defaulting, no schema validation of
//! built-in kinds, and custom resources are checked only for undeclared fields on server-side
//! apply (not pruned on create or update, types not checked); lists
//! are atomic in server-side apply (a real server merges `listType: map` lists by key); no
//! pagination (`limit` is ignored, every list is complete); namespaces are deleted at once with
//! their contents; log `timestamps` are not added; JSON patches are rejected with `415`.
//! Namespaced writes need the namespace to exist, as on a real server; `default`,
//! `kube-system` and `kube-public` exist from the start.
//!
//! ```no_run
//! # async fn example() {
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use kube::Api;
//! use test_support::fake_apiserver::FakeApiServer;
//!
//! let fake = FakeApiServer::start().await;
//! let configmaps: Api<ConfigMap> = Api::namespaced(fake.client(), "default");
//! assert!(configmaps.get_opt("settings").await.unwrap().is_none());
//! # }
//! ```

mod http;
mod immutable;
pub mod kinds;
mod selector;
mod ssa;
mod store;
mod structural;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use kube::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use kinds::KindInfo;
pub use store::{ApiError, EventType};

/// How often the FAKE garbage collector runs.
pub const GARBAGE_COLLECTION_INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);

/// A request the FAKE server received, for assertions.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, `PATCH`, ...
    pub method: String,
    /// The URL path, such as `/apis/kubeflow.org/v2beta1/namespaces/default/mpijobs/llama`.
    pub path: String,
    /// Decoded query parameters.
    pub query: BTreeMap<String, String>,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// The body, parsed as JSON (or YAML), if any.
    pub body: Option<Value>,
}

impl RecordedRequest {
    /// A query parameter.
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }

    /// Whether this is a server-side apply: `PATCH` with `application/apply-patch+yaml`.
    pub fn is_apply(&self) -> bool {
        self.method == "PATCH"
            && self.content_type.as_deref().is_some_and(|content_type| {
                content_type.starts_with("application/apply-patch+yaml")
            })
    }

    /// Whether this is a watch request.
    pub fn is_watch(&self) -> bool {
        self.method == "GET" && matches!(self.query("watch"), Some("true" | "1"))
    }
}

/// The kind of write a hook sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteVerb {
    /// `POST`
    Create,
    /// `PATCH` with server-side apply
    Apply,
    /// `PUT`
    Update,
    /// `PATCH` with a merge patch
    Patch,
    /// `DELETE`
    Delete,
}

/// A committed write made by a client, as a hook sees it.
#[derive(Clone, Debug)]
pub struct WriteEvent {
    /// What the client did.
    pub verb: WriteVerb,
    /// `Some("status")` for status writes.
    pub subresource: Option<String>,
    /// The object as stored after the write (before it, for a delete).
    pub object: Value,
}

impl WriteEvent {
    /// `metadata.name` of the written object.
    pub fn name(&self) -> &str {
        store::name_of(&self.object)
    }

    /// `metadata.namespace` of the written object (empty for cluster-scoped kinds).
    pub fn namespace(&self) -> &str {
        store::namespace_of(&self.object)
    }

    /// `metadata.uid` of the written object.
    pub fn uid(&self) -> &str {
        self.object
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

type Hook = Arc<dyn Fn(&FakeApiServer, &WriteEvent) + Send + Sync>;

pub(crate) struct Shared {
    store: Mutex<store::Store>,
    hooks: Mutex<Vec<(String, Hook)>>,
    requests: Mutex<Vec<RecordedRequest>>,
    url: String,
    server: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Shared {
    /// The store, locked.
    pub(crate) fn store(&self) -> std::sync::MutexGuard<'_, store::Store> {
        self.store.lock().expect("store lock poisoned")
    }
}

/// Configures a [`FakeApiServer`] before it starts.
#[derive(Debug, Default)]
pub struct FakeApiServerBuilder {
    extra_kinds: Vec<KindInfo>,
}

impl FakeApiServerBuilder {
    /// Serves one more kind.
    pub fn kind(mut self, kind: KindInfo) -> Self {
        self.extra_kinds.push(kind);
        self
    }

    /// Binds `127.0.0.1:0` and serves on the current tokio runtime until the runtime ends or
    /// [`FakeApiServer::shutdown`] is called.
    ///
    /// # Panics
    /// When the loopback port cannot be bound.
    pub async fn start(self) -> FakeApiServer {
        let mut kinds = kinds::default_kinds();
        kinds.extend(self.extra_kinds);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the FAKE API server to 127.0.0.1:0");
        let address = listener
            .local_addr()
            .expect("the bound socket has an address");
        let shared = Arc::new(Shared {
            store: Mutex::new(store::Store::new(kinds)),
            hooks: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
            url: format!("http://{address}"),
            server: Mutex::new(None),
        });
        let router = axum::Router::new()
            .fallback(http::handle)
            .with_state(shared.clone());
        let collector = shared.clone();
        let server = tokio::spawn(async move {
            // The garbage collector runs beside the server, as the real one runs beside the API
            // server: a foreground deletion is seen pending before it completes.
            let collect = async move {
                loop {
                    tokio::time::sleep(GARBAGE_COLLECTION_INTERVAL).await;
                    http::collect_garbage(&collector);
                }
            };
            // The server ends with the runtime; an accept error ends it early, which tests see
            // as connection failures.
            tokio::select! {
                _ = axum::serve(listener, router) => {}
                () = collect => {}
            }
        });
        *shared.server.lock().expect("server lock poisoned") = Some(server);
        FakeApiServer { shared }
    }
}

/// The handle of a running FAKE API server. Cloning it is cheap; all clones share one server.
#[derive(Clone)]
pub struct FakeApiServer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for FakeApiServer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("FakeApiServer")
            .field("url", &self.shared.url)
            .finish_non_exhaustive()
    }
}

fn to_value<K: Serialize>(object: &K) -> Value {
    serde_json::to_value(object).expect("Kubernetes objects serialize to JSON")
}

fn from_value<K: DeserializeOwned>(value: Value) -> K {
    serde_json::from_value(value).unwrap_or_else(|error| {
        panic!("the FAKE API server holds an object that does not deserialize: {error}")
    })
}

impl FakeApiServer {
    /// Starts a FAKE server with the default kinds.
    pub async fn start() -> Self {
        Self::builder().start().await
    }

    /// A builder, to serve more kinds.
    pub fn builder() -> FakeApiServerBuilder {
        FakeApiServerBuilder::default()
    }

    /// The base URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.shared.url
    }

    /// A `kube::Client` connected to this server, with default namespace `default`.
    ///
    /// # Panics
    /// Outside a tokio runtime (the client spawns its connection task).
    pub fn client(&self) -> kube::Client {
        let url = self
            .shared
            .url
            .parse()
            .expect("the server URL is a valid URI");
        kube::Client::try_from(kube::Config::new(url))
            .expect("a client for a plain-HTTP loopback URL builds")
    }

    /// Stops serving: later requests fail to connect; open streams end.
    pub fn shutdown(&self) {
        if let Some(server) = self
            .shared
            .server
            .lock()
            .expect("server lock poisoned")
            .take()
        {
            server.abort();
        }
        self.close_watches();
    }

    fn store(&self) -> std::sync::MutexGuard<'_, store::Store> {
        self.shared.store()
    }

    fn kind_of(&self, api_version: &str, kind: &str) -> KindInfo {
        self.store()
            .kind(api_version, kind)
            .cloned()
            .unwrap_or_else(|| panic!("the FAKE API server does not serve {api_version} {kind}"))
    }

    fn kind_for<K: Resource<DynamicType = ()>>(&self) -> KindInfo {
        self.kind_of(&K::api_version(&()), &K::kind(&()))
    }

    /// Inserts or replaces an object directly, as a controller would: keeps a given `uid`,
    /// `creationTimestamp` and `status`, assigns the rest, emits a watch event, fires no hooks.
    /// A namespaced object without a namespace goes to `default`.
    ///
    /// # Panics
    /// When the kind is not served or the namespace does not exist.
    pub fn insert<K>(&self, object: &K) -> K
    where
        K: Resource<DynamicType = ()> + Serialize + DeserializeOwned,
    {
        from_value(self.insert_value(to_value(object)))
    }

    /// [`Self::insert`] for an untyped object with `apiVersion` and `kind`.
    pub fn insert_value(&self, object: Value) -> Value {
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let kind_name = object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let kind = self.kind_of(&api_version, &kind_name);
        let result = self.store().insert(&kind, object);
        result
            .unwrap_or_else(|error| panic!("insert {kind_name}: {}", error.message))
            .object
    }

    /// An object by namespace (ignored for cluster-scoped kinds) and name.
    pub fn get<K>(&self, namespace: &str, name: &str) -> Option<K>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        let kind = self.kind_for::<K>();
        self.store()
            .get(&kind, namespace, name)
            .cloned()
            .map(from_value)
    }

    /// An untyped object by `apiVersion`, `kind`, namespace and name.
    pub fn get_value(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Option<Value> {
        let kind = self.kind_of(api_version, kind);
        self.store().get(&kind, namespace, name).cloned()
    }

    /// Every object of a kind, in one namespace or (with `None`) in all.
    pub fn list<K>(&self, namespace: Option<&str>) -> Vec<K>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        let kind = self.kind_for::<K>();
        let filter = store::WatchFilter {
            kind,
            namespace: namespace.map(str::to_owned),
            labels: Default::default(),
            fields: Default::default(),
        };
        self.store()
            .list(&filter)
            .into_iter()
            .map(from_value)
            .collect()
    }

    /// Changes a stored object in place (spec, metadata or status) and emits `MODIFIED`.
    ///
    /// # Panics
    /// When the object does not exist.
    pub fn update<K>(&self, namespace: &str, name: &str, change: impl FnOnce(&mut K)) -> K
    where
        K: Resource<DynamicType = ()> + Serialize + DeserializeOwned,
    {
        let mut object: K = self
            .get(namespace, name)
            .unwrap_or_else(|| panic!("update: no {} {namespace}/{name}", K::kind(&())));
        change(&mut object);
        self.insert(&object)
    }

    /// Replaces `status` of a stored object (as the object's controller would) and emits `MODIFIED`.
    ///
    /// # Panics
    /// When the object does not exist.
    pub fn set_status<K>(&self, namespace: &str, name: &str, status: Value) -> K
    where
        K: Resource<DynamicType = ()> + Serialize + DeserializeOwned,
    {
        let kind = self.kind_for::<K>();
        let mut object = self
            .store()
            .get(&kind, namespace, name)
            .cloned()
            .unwrap_or_else(|| panic!("set_status: no {} {namespace}/{name}", kind.kind));
        object["status"] = status;
        from_value(self.insert_value(object))
    }

    /// Removes a stored object at once, whatever its finalizers, as a controller's delete that
    /// has run its course would; emits `DELETED`; fires no hooks. Its dependents go at the next
    /// garbage collection. Returns whether it existed.
    pub fn delete<K>(&self, namespace: &str, name: &str) -> bool
    where
        K: Resource<DynamicType = ()>,
    {
        let kind = self.kind_for::<K>();
        let mut store = self.store();
        match store.get(&kind, namespace, name).cloned() {
            Some(_) if kind.group.is_empty() && kind.plural == "namespaces" => store
                .delete(&kind, namespace, name, &store::DeleteOptions::default())
                .is_ok(),
            Some(object) => {
                store.remove(&kind, object);
                true
            }
            None => false,
        }
    }

    /// Runs the garbage collector now (it also runs every [`GARBAGE_COLLECTION_INTERVAL`]):
    /// dependents of objects deleted in the foreground or the background are deleted, and
    /// objects whose finalizers are gone are removed. Hooks see the deletions.
    pub fn collect_garbage(&self) {
        http::collect_garbage(&self.shared);
    }

    /// Appends one line to a pod's log; followers receive it at once.
    pub fn append_log(&self, namespace: &str, pod: &str, line: &str) {
        let log = self.store().log(namespace, pod);
        log.state
            .lock()
            .expect("log lock poisoned")
            .lines
            .push(line.to_owned());
        log.notify.notify_waiters();
    }

    /// Ends a pod's log (the container exited): followers reach the end of their stream.
    pub fn close_log(&self, namespace: &str, pod: &str) {
        let log = self.store().log(namespace, pod);
        log.state.lock().expect("log lock poisoned").closed = true;
        log.notify.notify_waiters();
    }

    /// Ends the open `follow` streams of a pod's log without closing it, as a dropped connection
    /// would; a client that follows again gets the whole log and then new lines.
    pub fn break_log_streams(&self, namespace: &str, pod: &str) {
        let log = self.store().log(namespace, pod);
        log.state.lock().expect("log lock poisoned").epoch += 1;
        log.notify.notify_waiters();
    }

    /// Registers a hook that runs after each committed client write (create, apply, update,
    /// patch, delete; not dry runs or no-op applies) of objects of `kind` (such as `"MPIJob"`).
    /// Writes made through this handle fire no hooks. A hook runs on the request's task and must
    /// not block; spawn a task for delayed reactions.
    pub fn on_write(&self, kind: &str, hook: impl Fn(&Self, &WriteEvent) + Send + Sync + 'static) {
        self.shared
            .hooks
            .lock()
            .expect("hooks lock poisoned")
            .push((kind.to_owned(), Arc::new(hook)));
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .requests
            .lock()
            .expect("requests lock poisoned")
            .clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.shared
            .requests
            .lock()
            .expect("requests lock poisoned")
            .clear();
    }

    /// The current resource version (the number of committed changes).
    pub fn resource_version(&self) -> u64 {
        self.store().resource_version()
    }

    /// Forgets the watch history: a watch from an older resource version gets `410 Gone`, as
    /// after an etcd compaction.
    pub fn compact_history(&self) {
        self.store().compact();
    }

    /// Ends every open watch stream, as a server does at its watch timeout.
    pub fn close_watches(&self) {
        self.store().close_watches();
    }
}
