//! Recorded progress: which steps finished, with which input digest, and what they produced.
//!
//! The state holds digests, names and counts only, never a secret. It lives in the cluster as a
//! ConfigMap (so any machine can resume) or, for the local profile, in a file under the work
//! directory written atomically.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use serde::{Deserialize, Serialize};

use super::plan::StepId;

/// The key of the state in the ConfigMap.
pub const STATE_KEY: &str = "state.json";
/// The ConfigMap's name.
pub const STATE_CONFIGMAP: &str = "trnkit-state";

/// The largest state read from a file: what a ConfigMap can hold, as the cluster's state must
/// fit one.
pub const MAX_STATE_BYTES: u64 = 1024 * 1024;

/// The format version this trnkit writes and reads. Version 0 (a state written before the
/// field existed) has the same shape and is read as this one.
pub const STATE_VERSION: u32 = 1;

/// How a step ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// It finished.
    Done,
    /// It failed; the next run starts here.
    Failed,
    /// It started and has not finished: a deploy is running it now, or was interrupted (the
    /// next run starts here either way).
    Running,
}

/// The record of one step's last run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The digest of the inputs it ran with.
    pub digest: String,
    /// How it ended.
    pub status: Status,
    /// When it ended, or started while it runs (RFC 3339).
    pub finished_at: String,
    /// A one-line summary, or the error.
    pub message: String,
    /// What it produced: image digests, output checksums, the launcher's UID.
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
}

/// Every step's record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Format version.
    #[serde(default)]
    pub version: u32,
    /// By step.
    #[serde(default)]
    pub steps: BTreeMap<StepId, StepRecord>,
    /// By training run (its name, see `run_identity`): the whole-job restarts it had (see
    /// `restart`); kept across deploys and `watch` processes, so the budget never resets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub runs: BTreeMap<String, super::restart::RunRecord>,
}

impl State {
    /// Parses a recorded state, refusing another format version.
    pub fn parse(text: &str, origin: &str) -> Result<Self, StateError> {
        let state: State = serde_json::from_str(text).map_err(|source| StateError::Corrupt {
            origin: origin.to_owned(),
            source,
        })?;
        if state.version != 0 && state.version != STATE_VERSION {
            return Err(StateError::Version {
                origin: origin.to_owned(),
                found: state.version,
            });
        }
        // The one recorded value that reaches manifests and the ranks' command lines.
        if let Some(name) = state
            .get(StepId::Train)
            .and_then(|record| record.outputs.get(crate::run_identity::OUTPUT_KEY))
            && let Err(problem) = crate::run_identity::check_name(name)
        {
            return Err(StateError::Value {
                origin: origin.to_owned(),
                key: format!("steps.train.outputs.{}", crate::run_identity::OUTPUT_KEY),
                problem,
            });
        }
        Ok(state)
    }

    /// The record of a step.
    pub fn get(&self, id: StepId) -> Option<&StepRecord> {
        self.steps.get(&id)
    }

    /// Whether the step finished with these inputs.
    pub fn is_done(&self, id: StepId, digest: &str) -> bool {
        self.get(id)
            .is_some_and(|record| record.status == Status::Done && record.digest == digest)
    }
}

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The state file could not be read or written.
    #[error("cannot access the state file {path}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The state in the cluster could not be read or written.
    #[error("cannot access the ConfigMap {namespace}/{name} that holds trnkit's state")]
    ConfigMap {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
    /// The recorded state was written by another version of trnkit.
    #[error(
        "the recorded state in {origin} has format version {found}, this trnkit reads version \
         {STATE_VERSION}; run the trnkit that wrote it, or delete the state to start afresh \
         (every step then runs again)"
    )]
    Version {
        /// Where it was read from.
        origin: String,
        /// The version found.
        found: u32,
    },
    /// A recorded value that would reach the cluster is not valid.
    #[error(
        "the recorded state in {origin} holds an invalid {key}: {problem}; correct that value or delete the key (a new run is then named)"
    )]
    Value {
        /// Where it was read from.
        origin: String,
        /// The value's key in the state.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The recorded state is not valid JSON of the expected shape.
    #[error("the recorded state in {origin} is unreadable; delete it to start afresh")]
    Corrupt {
        /// Where it was read from.
        origin: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// Where the state is kept.
#[allow(async_fn_in_trait)]
pub trait StateStore {
    /// Reads the state (empty when none was recorded).
    async fn load(&self) -> Result<State, StateError>;
    /// Records the state.
    async fn save(&self, state: &State) -> Result<(), StateError>;
    /// A description for messages.
    fn describe(&self) -> String;
}

/// A JSON file, written to a temporary name and renamed.
#[derive(Clone, Debug)]
pub struct FileStore {
    /// The file.
    pub path: PathBuf,
}

impl StateStore for FileStore {
    async fn load(&self) -> Result<State, StateError> {
        match crate::files::read_to_string_bounded(&self.path, MAX_STATE_BYTES) {
            Ok(text) => State::parse(&text, &self.describe()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(source) => Err(StateError::File {
                path: self.path.clone(),
                source,
            }),
        }
    }

    async fn save(&self, state: &State) -> Result<(), StateError> {
        let error = |source| StateError::File {
            path: self.path.clone(),
            source,
        };
        if let Some(parent) = self
            .path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            fs_err::create_dir_all(parent).map_err(error)?;
        }
        let text = serde_json::to_string_pretty(state).unwrap_or_default();
        crate::files::write_atomic(&self.path, text).map_err(error)?;
        Ok(())
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// A ConfigMap in the cluster, written by server-side apply.
#[derive(Clone)]
pub struct ConfigMapStore {
    /// The API of ConfigMaps in the namespace.
    pub api: Api<ConfigMap>,
    /// The namespace (for messages).
    pub namespace: String,
    /// The field manager.
    pub field_manager: String,
}

impl ConfigMapStore {
    /// The state ConfigMap of `namespace`, written as `field_manager`.
    pub fn new(client: kube::Client, namespace: &str, field_manager: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            field_manager: field_manager.to_owned(),
        }
    }

    fn error(&self, source: kube::Error) -> StateError {
        StateError::ConfigMap {
            namespace: self.namespace.clone(),
            name: STATE_CONFIGMAP.to_owned(),
            source,
        }
    }
}

impl StateStore for ConfigMapStore {
    async fn load(&self) -> Result<State, StateError> {
        let Some(config_map) = self
            .api
            .get_opt(STATE_CONFIGMAP)
            .await
            .map_err(|source| self.error(source))?
        else {
            return Ok(State::default());
        };
        match config_map
            .data
            .as_ref()
            .and_then(|data| data.get(STATE_KEY))
        {
            None => Ok(State::default()),
            Some(text) => State::parse(text, &self.describe()),
        }
    }

    async fn save(&self, state: &State) -> Result<(), StateError> {
        let config_map = ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some(STATE_CONFIGMAP.to_owned()),
                namespace: Some(self.namespace.clone()),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_owned(),
                    "trnkit".to_owned(),
                )])),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                STATE_KEY.to_owned(),
                serde_json::to_string_pretty(state).unwrap_or_default(),
            )])),
            ..Default::default()
        };
        let mut value = serde_json::to_value(&config_map).unwrap_or_default();
        value["apiVersion"] = "v1".into();
        value["kind"] = "ConfigMap".into();
        self.api
            .patch(
                STATE_CONFIGMAP,
                &PatchParams::apply(&self.field_manager).force(),
                &Patch::Apply(&value),
            )
            .await
            .map_err(|source| self.error(source))?;
        Ok(())
    }

    fn describe(&self) -> String {
        format!("ConfigMap {}/{STATE_CONFIGMAP}", self.namespace)
    }
}

/// The current time as RFC 3339, for records.
pub fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
