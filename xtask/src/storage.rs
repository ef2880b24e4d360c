//! The shared file system's objects, each built in one place from `[storage]`: the FSx spec
//! (and with it the tags trnkit finds the file system by), the StorageClass, the static
//! PersistentVolume and the claims.
//!
//! `deploy` (its bundle and its storage step), `render` and `cargo xtask fsx create|describe|delete`
//! all call these functions, so what one creates the others find, with the same settings:
//!
//! - [`tag_name`], [`file_system_spec`], [`adopt`]: what to create, and how to find it again;
//! - [`manifests`]: the StorageClass and claim (dynamic mode) or the static PV and claim of a
//!   known file system (static mode);
//! - [`ensure_file_system`]: create or adopt the file system through the FSx API and wait, bounded,
//!   until it is AVAILABLE (`fsx create` and the static mode of deploy);
//! - [`ensure_in_cluster`]: deploy's storage step. It reads before it writes: an object that
//!   exists already is adopted when it fits, and explained when it does not; a StorageClass, a
//!   PersistentVolume or a claim that exists is never written (their specs are immutable).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use fsx::csi::ReclaimPolicy;
use fsx::io::{self, Adopt, LifecycleChange, WaitOptions};
use fsx::{FileSystem, FileSystemSpec};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::wait::await_condition;

use crate::config::{Config, StorageMode, Target};
use crate::render::Manifest;

/// Placeholders used only when the local profile renders with no subnet or security group
/// configured: the rendered StorageClass then shows its shape. Never sent to AWS.
pub const PLACEHOLDER_SUBNET: &str = "subnet-00000000000000000";
/// See [`PLACEHOLDER_SUBNET`].
pub const PLACEHOLDER_SECURITY_GROUP: &str = "sg-00000000000000000";

/// The value of the `trnkit:name` (and `Name`) tag of the configuration's file system:
/// `[cluster] name`. Deploy tags what it creates with it, and `fsx describe|delete` look for it.
pub fn tag_name(config: &Config) -> &str {
    &config.cluster.name
}

/// The FSx file system `[storage]` describes, named by [`tag_name`].
///
/// Fails, naming the key, when the subnet or security groups are missing or the values are a
/// combination FSx refuses (the configuration's types already exclude scratch deployment types
/// and unknown compressions).
pub fn file_system_spec(config: &Config) -> anyhow::Result<FileSystemSpec> {
    file_system_spec_named(config, tag_name(config))
}

/// [`file_system_spec`] with another tag value (`cargo xtask fsx create --name`).
pub fn file_system_spec_named(config: &Config, name: &str) -> anyhow::Result<FileSystemSpec> {
    let storage = &config.storage;
    if storage.subnet_id.is_empty() {
        bail!(
            "storage.subnet_id is not set: give the subnet to create the file system in (a private subnet in the \
             Trainium nodes' Availability Zone; the blueprint uses private subnet 0)"
        );
    }
    if storage.security_group_ids.is_empty() {
        bail!(
            "storage.security_group_ids is empty: give a security group admitting TCP 988 and 1021-1023 from the \
             nodes' subnets"
        );
    }
    spec_with(
        config,
        name,
        &storage.subnet_id,
        &storage.security_group_ids,
    )
}

/// The spec the manifests are rendered from: [`file_system_spec`], except that the local profile
/// shows placeholders for a subnet or security groups not configured.
fn rendered_spec(config: &Config) -> anyhow::Result<FileSystemSpec> {
    let storage = &config.storage;
    if config.cluster.target != Target::Local {
        return file_system_spec(config);
    }
    let subnet = if storage.subnet_id.is_empty() {
        PLACEHOLDER_SUBNET
    } else {
        &storage.subnet_id
    };
    let groups = if storage.security_group_ids.is_empty() {
        vec![PLACEHOLDER_SECURITY_GROUP.to_owned()]
    } else {
        storage.security_group_ids.clone()
    };
    spec_with(config, tag_name(config), subnet, &groups)
}

/// The one mapping of `[storage]` to a [`FileSystemSpec`].
fn spec_with(
    config: &Config,
    name: &str,
    subnet: &str,
    groups: &[String],
) -> anyhow::Result<FileSystemSpec> {
    let storage = &config.storage;
    let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
    let mut spec = FileSystemSpec::blueprint(name, subnet, &groups);
    spec.deployment_type = storage.deployment_type;
    spec.storage_capacity_gib = storage.capacity_gib;
    spec.per_unit_storage_throughput = storage.per_unit_storage_throughput;
    spec.lustre_version = storage.lustre_version.clone();
    spec.automatic_backup_retention_days = storage.automatic_backup_retention_days;
    spec.daily_automatic_backup_start_time = storage.daily_automatic_backup_start_time.clone();
    spec.copy_tags_to_backups = storage.copy_tags_to_backups;
    spec.weekly_maintenance_start_time = storage.weekly_maintenance_start_time.clone();
    spec.data_compression = storage.data_compression_type;
    spec.validate()
        .with_context(|| format!("the [storage] settings of the file system `{name}`"))?;
    Ok(spec)
}

/// How the configuration's file system is found: `storage.file_system_id`, else by tag.
pub fn adopt(config: &Config) -> Adopt {
    if config.storage.file_system_id.is_empty() {
        Adopt::Tag
    } else {
        Adopt::Id(config.storage.file_system_id.clone())
    }
}

/// The storage objects: the dynamic StorageClass and claim, the static PV and claim of a known
/// file system, or nothing for an existing claim (or a static file system not known yet: deploy's
/// storage step renders them once it has the file system).
pub fn manifests(
    config: &Config,
    file_system: Option<&FileSystem>,
) -> anyhow::Result<Vec<Manifest>> {
    let namespace = &config.cluster.namespace;
    let storage = &config.storage;
    Ok(match storage.mode {
        StorageMode::ExistingClaim => Vec::new(),
        StorageMode::Dynamic => {
            let class = fsx::csi::storage_class(
                &rendered_spec(config)?,
                &storage.storage_class,
                ReclaimPolicy::Delete,
            )
            .context("cannot render the FSx StorageClass")?;
            let claim = fsx::csi::dynamic_claim(
                &storage.storage_class,
                &storage.claim_name,
                namespace,
                storage.capacity_gib,
            )?;
            vec![
                Manifest::from_object(&class)?,
                Manifest::from_object(&claim)?,
            ]
        }
        StorageMode::Static => match file_system {
            None => Vec::new(),
            Some(file_system) => {
                let (volume, claim) = fsx::static_volume(
                    file_system,
                    &storage.claim_name,
                    namespace,
                    storage.capacity_gib,
                )?;
                vec![
                    Manifest::from_object(&volume)?,
                    Manifest::from_object(&claim)?,
                ]
            }
        },
    })
}

/// What [`ensure_file_system`] did.
#[derive(Clone, Debug)]
pub struct EnsuredFileSystem {
    /// The file system, as last described (AVAILABLE unless the wait was skipped).
    pub file_system: FileSystem,
    /// Whether it was created now (rather than adopted).
    pub created: bool,
    /// Where an adopted file system differs from the spec; reported, not changed.
    pub differences: Vec<String>,
}

/// Adopts the file system `adopt` points at, or creates it from `spec`, then waits until it is
/// AVAILABLE (unless `wait` is `None`), reporting lifecycle changes to `on_change`.
pub async fn ensure_file_system(
    client: &fsx::aws_sdk_fsx::Client,
    spec: &FileSystemSpec,
    adopt: &Adopt,
    wait: Option<WaitOptions>,
    on_change: impl FnMut(&LifecycleChange),
) -> anyhow::Result<EnsuredFileSystem> {
    let ensured = io::ensure(client, spec, adopt).await?;
    let mut file_system = ensured.file_system;
    if let Some(options) = wait
        && file_system.lifecycle != Some(fsx::Lifecycle::Available)
    {
        file_system =
            io::wait_until_available(client, &file_system.file_system_id, options, on_change)
                .await?;
    }
    Ok(EnsuredFileSystem {
        file_system,
        created: ensured.created,
        differences: ensured.differences,
    })
}

/// Polling within a bound: at least 20 looks before `timeout`, at most every 30 s.
fn wait_options(timeout: Duration) -> WaitOptions {
    WaitOptions {
        timeout,
        initial_interval: (timeout / 20).min(Duration::from_secs(5)),
        max_interval: (timeout / 4).min(Duration::from_secs(30)),
    }
}

/// What deploy's storage step did, for its record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageOutcome {
    /// One line: what was created, adopted and is Bound.
    pub summary: String,
    /// What the step records (`file_system_id` in the static mode).
    pub outputs: BTreeMap<String, String>,
}

/// Deploy's storage step: the file system (static mode), the storage objects, and the claim Bound.
///
/// `rendered` are the step's manifests (empty in the static mode: they are rendered here once the
/// file system is known). Every wait is bounded by `timeout`; `on_status` hears what it waits for.
pub async fn ensure_in_cluster(
    client: &kube::Client,
    fsx_client: Option<&fsx::aws_sdk_fsx::Client>,
    config: &Config,
    rendered: &[Manifest],
    timeout: Duration,
    on_status: &(dyn Fn(&str) + Send + Sync),
) -> anyhow::Result<StorageOutcome> {
    let storage = &config.storage;
    let namespace = config.cluster.namespace.as_str();
    let mut done = Vec::new();
    let mut outputs = BTreeMap::new();
    let objects = match storage.mode {
        StorageMode::Static => {
            let fsx_client = fsx_client.context(
                "storage.mode = \"static\" needs the FSx API, and deploy was given no FSx client",
            )?;
            let spec = file_system_spec(config)?;
            let adoption = adopt(config);
            on_status(&match &adoption {
                Adopt::Id(id) => format!("looking up the FSx file system {id}"),
                Adopt::Tag => format!(
                    "looking for the FSx file system tagged {}={} (created when there is none)",
                    fsx::spec::NAME_TAG,
                    spec.name
                ),
            });
            let ensured = ensure_file_system(
                fsx_client,
                &spec,
                &adoption,
                Some(wait_options(timeout)),
                |change| {
                    on_status(&format!(
                        "waiting for the FSx file system {} to be AVAILABLE (it is {}; a new one takes 5 to 15 minutes, at most {})",
                        change.file_system_id,
                        change.to.as_ref().map_or("unknown".to_owned(), ToString::to_string),
                        humantime::format_duration(timeout)
                    ));
                },
            )
            .await?;
            let file_system = ensured.file_system;
            for difference in &ensured.differences {
                tracing::warn!("{difference}; trnkit does not change an existing file system");
            }
            done.push(format!(
                "{} the FSx file system {}",
                if ensured.created {
                    "created"
                } else {
                    "adopted"
                },
                file_system.file_system_id
            ));
            outputs.insert(
                "file_system_id".to_owned(),
                file_system.file_system_id.clone(),
            );
            manifests(config, Some(&file_system)).with_context(|| {
                format!(
                    "cannot bind the FSx file system {}",
                    file_system.file_system_id
                )
            })?
        }
        _ => rendered.to_vec(),
    };

    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let claim_name = storage.claim_name.as_str();
    // A claim that is Bound already is what the pods mount: the StorageClass would only serve a
    // new claim, so it is neither checked nor created.
    let claim_bound = storage.mode == StorageMode::Dynamic
        && claims
            .get_opt(claim_name)
            .await?
            .is_some_and(|claim| is_bound(Some(&claim)));
    let mut create = Vec::new();
    for manifest in &objects {
        if claim_bound && manifest.kind == "StorageClass" {
            tracing::info!(
                "the claim {claim_name} is Bound already: the StorageClass {} is neither checked nor created",
                manifest.name
            );
            continue;
        }
        match existing(client, config, manifest).await? {
            Found::Absent => create.push(manifest),
            Found::Adopted(note) => done.push(note),
        }
    }
    if storage.mode == StorageMode::ExistingClaim && claims.get_opt(claim_name).await?.is_none() {
        bail!(
            "the claim {namespace}/{claim_name} does not exist (storage.mode = \"existing-claim\"): create it, or \
             set storage.mode to \"dynamic\" or \"static\" so trnkit creates it"
        );
    }
    for manifest in create {
        apply_new(client, config, manifest).await?;
        done.push(format!("created {} {}", manifest.kind, manifest.name));
    }

    on_status(&format!(
        "waiting for the claim {claim_name} to be Bound (a new FSx file system takes about 10 minutes)"
    ));
    tokio::time::timeout(timeout, await_condition(claims, claim_name, is_bound))
        .await
        .with_context(|| {
            format!(
                "the claim {claim_name} was not Bound within {}: check `kubectl describe pvc -n {namespace} {claim_name}` \
                 and the FSx CSI driver's logs",
                humantime::format_duration(timeout)
            )
        })??;
    done.push(format!("claim {claim_name} is Bound"));
    Ok(StorageOutcome {
        summary: done.join("; "),
        outputs,
    })
}

/// The storage objects trnkit created in the cluster, for `cleanup --storage`: those labelled
/// `app.kubernetes.io/managed-by: trnkit`. A StorageClass or claim it found and adopted (the
/// blueprint's terraform-made `fsx` and `fsx-claim`) is not trnkit's to delete and is left out;
/// the static mode's PersistentVolume is found by its label and claim, whatever file system it
/// mounts. Each object is given as `apiVersion`, `kind` and `metadata` (name, namespace), in apply
/// order. The file system itself is never among them.
pub async fn created_objects(
    client: &kube::Client,
    config: &Config,
) -> anyhow::Result<Vec<serde_json::Value>> {
    use kube::Resource;
    let storage = &config.storage;
    let namespace = config.cluster.namespace.as_str();
    let ours = |meta: &kube::api::ObjectMeta| {
        meta.labels
            .as_ref()
            .and_then(|labels| labels.get(fsx::csi::MANAGED_BY_LABEL))
            .is_some_and(|value| value == fsx::csi::MANAGER)
    };
    let reference = |api_version: &str, kind: &str, name: &str, namespaced: bool| {
        let mut metadata = serde_json::json!({ "name": name });
        if namespaced {
            metadata["namespace"] = namespace.into();
        }
        serde_json::json!({ "apiVersion": api_version, "kind": kind, "metadata": metadata })
    };
    let mut objects = Vec::new();
    if storage.mode == StorageMode::ExistingClaim {
        return Ok(objects);
    }
    if storage.mode == StorageMode::Dynamic
        && let Some(class) = Api::<StorageClass>::all(client.clone())
            .get_opt(&storage.storage_class)
            .await?
        && ours(class.meta())
    {
        objects.push(reference(
            "storage.k8s.io/v1",
            "StorageClass",
            &storage.storage_class,
            false,
        ));
    }
    if storage.mode == StorageMode::Static {
        let volumes = Api::<PersistentVolume>::all(client.clone())
            .list(&kube::api::ListParams::default().labels(&format!(
                "{}={},{}",
                fsx::csi::MANAGED_BY_LABEL,
                fsx::csi::MANAGER,
                fsx::csi::FILE_SYSTEM_ID_LABEL
            )))
            .await?;
        for volume in volumes {
            let claim = volume
                .spec
                .as_ref()
                .and_then(|spec| spec.claim_ref.as_ref());
            if claim.is_some_and(|claim| {
                claim.name.as_deref() == Some(storage.claim_name.as_str())
                    && claim.namespace.as_deref() == Some(namespace)
            }) && let Some(name) = volume.metadata.name.as_deref()
            {
                objects.push(reference("v1", "PersistentVolume", name, false));
            }
        }
    }
    if let Some(claim) = Api::<PersistentVolumeClaim>::namespaced(client.clone(), namespace)
        .get_opt(&storage.claim_name)
        .await?
        && ours(claim.meta())
    {
        objects.push(reference(
            "v1",
            "PersistentVolumeClaim",
            &storage.claim_name,
            true,
        ));
    }
    Ok(objects)
}

/// Whether the claim exists and is Bound.
fn is_bound(claim: Option<&PersistentVolumeClaim>) -> bool {
    claim
        .and_then(|claim| claim.status.as_ref())
        .and_then(|status| status.phase.as_deref())
        == Some("Bound")
}

/// Whether a storage object exists already, and if so, that it is adopted.
enum Found {
    /// It does not exist: trnkit creates it.
    Absent,
    /// It exists and serves; the note says what was adopted (and what differs, if anything).
    Adopted(String),
}

/// Reads `manifest`'s object from the cluster. An existing object that fits is adopted; one that
/// does not is an error explaining the choices. Nothing is written here.
async fn existing(
    client: &kube::Client,
    config: &Config,
    manifest: &Manifest,
) -> anyhow::Result<Found> {
    let name = manifest.name.as_str();
    match manifest.kind.as_str() {
        "StorageClass" => {
            let classes: Api<StorageClass> = Api::all(client.clone());
            let Some(existing) = classes.get_opt(name).await? else {
                return Ok(Found::Absent);
            };
            let wanted: StorageClass = serde_json::from_value(manifest.value.clone())?;
            storage_class_fit(&existing, &wanted).map(Found::Adopted)
        }
        "PersistentVolume" => {
            let volumes: Api<PersistentVolume> = Api::all(client.clone());
            let Some(existing) = volumes.get_opt(name).await? else {
                return Ok(Found::Absent);
            };
            let wanted: PersistentVolume = serde_json::from_value(manifest.value.clone())?;
            let handle = |volume: &PersistentVolume| {
                volume
                    .spec
                    .as_ref()
                    .and_then(|spec| spec.csi.as_ref())
                    .map(|csi| csi.volume_handle.clone())
            };
            if handle(&existing) != handle(&wanted) {
                bail!(
                    "the PersistentVolume {name} exists and mounts {}, not {}: a volume's source cannot be changed; \
                     delete it (`kubectl delete pv {name}`) if nothing uses it, or set storage.claim_name to another name",
                    handle(&existing).unwrap_or_else(|| "another source".to_owned()),
                    handle(&wanted).unwrap_or_default()
                );
            }
            Ok(Found::Adopted(format!("PersistentVolume {name} exists")))
        }
        "PersistentVolumeClaim" => {
            let claims: Api<PersistentVolumeClaim> =
                Api::namespaced(client.clone(), &config.cluster.namespace);
            let Some(existing) = claims.get_opt(name).await? else {
                return Ok(Found::Absent);
            };
            let wanted: PersistentVolumeClaim = serde_json::from_value(manifest.value.clone())?;
            claim_fit(config, &existing, &wanted).map(Found::Adopted)
        }
        other => bail!("the storage step does not handle objects of kind {other}"),
    }
}

/// The configuration key that sets a StorageClass parameter, for messages.
fn key_of(parameter: &str) -> Option<&'static str> {
    Some(match parameter {
        "subnetId" => "storage.subnet_id",
        "securityGroupIds" => "storage.security_group_ids",
        "deploymentType" => "storage.deployment_type",
        "perUnitStorageThroughput" => "storage.per_unit_storage_throughput",
        "fileSystemTypeVersion" => "storage.lustre_version",
        "dataCompressionType" => "storage.data_compression_type",
        "automaticBackupRetentionDays" => "storage.automatic_backup_retention_days",
        "dailyAutomaticBackupStartTime" => "storage.daily_automatic_backup_start_time",
        "weeklyMaintenanceStartTime" => "storage.weekly_maintenance_start_time",
        "copyTagsToBackups" => "storage.copy_tags_to_backups",
        _ => return None,
    })
}

/// Adopts an existing StorageClass whose must-match parameters ([`fsx::csi::MUST_MATCH`]) agree
/// with the configuration; otherwise explains the choices. A StorageClass's parameters are
/// immutable, so trnkit never writes one that exists.
fn storage_class_fit(existing: &StorageClass, wanted: &StorageClass) -> anyhow::Result<String> {
    let name = wanted.metadata.name.as_deref().unwrap_or_default();
    let differences = fsx::csi::compare_storage_classes(existing, wanted);
    let describe = |difference: &fsx::csi::ClassDifference| {
        format!(
            "{} is {}, the configuration{} asks for {}",
            difference.parameter,
            difference.existing.as_deref().unwrap_or("not set"),
            key_of(&difference.parameter)
                .map(|key| format!(" ({key})"))
                .unwrap_or_default(),
            difference.wanted.as_deref().unwrap_or("nothing"),
        )
    };
    let (conflicts, notes): (Vec<_>, Vec<_>) = differences
        .iter()
        .partition(|difference| difference.must_match);
    if !conflicts.is_empty() {
        bail!(
            "the StorageClass {name} exists already and does not fit the configuration:\n  - {}\n\
             A StorageClass's parameters cannot be changed, so trnkit leaves it as it is. Choose one:\n  \
             - use it: set the keys above to its values;\n  \
             - let trnkit create its own class: set storage.storage_class to another name (for example \"trnkit-fsx\");\n  \
             - use a claim that exists already (the blueprint's is fsx-claim): set storage.mode = \"existing-claim\" \
             and storage.claim_name",
            conflicts
                .iter()
                .map(|difference| describe(difference))
                .collect::<Vec<_>>()
                .join("\n  - ")
        );
    }
    let mut note = format!("adopted the existing StorageClass {name}");
    if !notes.is_empty() {
        let listed: Vec<String> = notes
            .iter()
            .map(|difference| describe(difference))
            .collect();
        tracing::warn!(
            "the StorageClass {name} exists and is used as it is, although {}",
            listed.join("; ")
        );
        note.push_str(&format!(
            " (its {} differ from [storage]; file systems it creates carry its settings{})",
            notes
                .iter()
                .map(|difference| difference.parameter.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            if notes
                .iter()
                .any(|difference| difference.parameter == "extraTags")
            {
                ", not trnkit's tags: find them with `cargo xtask fsx describe --file-system-id`"
            } else {
                ""
            }
        ));
    }
    Ok(note)
}

/// Adopts an existing claim: a Bound one when it mounts what the configuration asks for (in the
/// static mode, the file system's volume), a pending one when it asks for the same class and
/// volume. Otherwise explains the choices: a claim's spec cannot be changed.
fn claim_fit(
    config: &Config,
    existing: &PersistentVolumeClaim,
    wanted: &PersistentVolumeClaim,
) -> anyhow::Result<String> {
    let name = wanted.metadata.name.as_deref().unwrap_or_default();
    let namespace = config.cluster.namespace.as_str();
    let spec = |claim: &PersistentVolumeClaim| {
        let spec = claim.spec.clone().unwrap_or_default();
        (
            spec.storage_class_name.unwrap_or_default(),
            spec.volume_name.unwrap_or_default(),
        )
    };
    let (existing_class, existing_volume) = spec(existing);
    let (wanted_class, wanted_volume) = spec(wanted);
    let phase = existing
        .status
        .as_ref()
        .and_then(|status| status.phase.clone())
        .unwrap_or_else(|| "Pending".to_owned());
    let choices = format!(
        "A claim's spec cannot be changed, so trnkit leaves it as it is. Choose one:\n  \
         - use it as it is: set storage.mode = \"existing-claim\" (storage.claim_name = \"{name}\");\n  \
         - let trnkit create its own claim: set storage.claim_name to another name;\n  \
         - delete it (`kubectl delete pvc -n {namespace} {name}`) if nothing uses it"
    );
    let static_mode = config.storage.mode == StorageMode::Static;
    if phase == "Bound" {
        if static_mode && existing_volume != wanted_volume {
            bail!(
                "the claim {namespace}/{name} exists already and is Bound to the volume {existing_volume}, not to \
                 {wanted_volume} (the file system storage.mode = \"static\" uses).\n{choices}"
            );
        }
        let mut note = format!("adopted the Bound claim {name}");
        if !static_mode && existing_class != wanted_class {
            note.push_str(&format!(
                " (volume {existing_volume}, StorageClass {existing_class:?}, not storage.storage_class = {wanted_class:?})"
            ));
        }
        return Ok(note);
    }
    if existing_class != wanted_class
        || (!wanted_volume.is_empty() && existing_volume != wanted_volume)
    {
        bail!(
            "the claim {namespace}/{name} exists already ({phase}) and asks for StorageClass {existing_class:?}{}, \
             the configuration for {wanted_class:?}{}.\n{choices}",
            if existing_volume.is_empty() {
                String::new()
            } else {
                format!(" and volume {existing_volume}")
            },
            if wanted_volume.is_empty() {
                String::new()
            } else {
                format!(" and volume {wanted_volume}")
            },
        );
    }
    Ok(format!("the claim {name} exists ({phase})"))
}

/// Creates a storage object that did not exist moments ago, by server-side apply without force:
/// should someone else have created it meanwhile, the API server answers with a conflict instead
/// of trnkit overwriting it.
async fn apply_new(
    client: &kube::Client,
    config: &Config,
    manifest: &Manifest,
) -> anyhow::Result<()> {
    let params = PatchParams::apply(&config.cluster.field_manager);
    let patch = Patch::Apply(&manifest.value);
    let name = manifest.name.as_str();
    let result = match manifest.kind.as_str() {
        "StorageClass" => Api::<StorageClass>::all(client.clone())
            .patch(name, &params, &patch)
            .await
            .map(drop),
        "PersistentVolume" => Api::<PersistentVolume>::all(client.clone())
            .patch(name, &params, &patch)
            .await
            .map(drop),
        "PersistentVolumeClaim" => {
            Api::<PersistentVolumeClaim>::namespaced(client.clone(), &config.cluster.namespace)
                .patch(name, &params, &patch)
                .await
                .map(drop)
        }
        other => bail!("the storage step does not handle objects of kind {other}"),
    };
    result.with_context(|| format!("cannot create the {} {name}", manifest.kind))
}

#[cfg(test)]
mod tests;
