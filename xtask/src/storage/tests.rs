//! Tests of the storage objects: the one spec (and tags) for deploy, `render` and `fsx`; deploy's
//! storage step against the FAKE API server (existing objects adopted or explained, never
//! overwritten); and the static mode against moto's FSx API, with the lifecycle moto lacks
//! played by an SDK interceptor.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fsx::aws_sdk_fsx;
use fsx::aws_sdk_fsx::config::interceptors::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextMut,
};
use fsx::aws_sdk_fsx::config::{ConfigBag, Intercept, RuntimeComponents};
use fsx::aws_sdk_fsx::operation::describe_file_systems::DescribeFileSystemsOutput;
use fsx::aws_sdk_fsx::types::{FileSystemLifecycle, LustreFileSystemConfiguration};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::json;
use test_support::fake_apiserver::{FakeApiServer, WriteVerb};

use super::{StorageOutcome, ensure_in_cluster, file_system_spec, manifests, tag_name};
use crate::config::{Config, DataCompression, StorageMode, Target};
use crate::render::Manifest;

const SUBNET: &str = "subnet-0a1b2c3d4e5f60718";
const GROUP: &str = "sg-0123456789abcdef0";

fn eks_config(name: &str) -> Config {
    let mut config = Config::default();
    config.cluster.target = Target::Eks;
    config.cluster.name = name.to_owned();
    config.storage.subnet_id = SUBNET.to_owned();
    config.storage.security_group_ids = vec![GROUP.to_owned()];
    config
}

fn parameters(manifests: &[Manifest]) -> serde_json::Value {
    manifests
        .iter()
        .find(|manifest| manifest.kind == "StorageClass")
        .expect("a StorageClass is rendered")
        .value["parameters"]
        .clone()
}

#[test]
fn deploy_tags_the_file_system_with_the_name_fsx_describe_looks_for() {
    let config = eks_config("trainium-inferentia");
    let rendered = manifests(&config, None).unwrap();
    assert_eq!(
        parameters(&rendered)["extraTags"],
        "Name=trainium-inferentia,trnkit:name=trainium-inferentia"
    );
    let describe = crate::cli::fsx::Target {
        file_system_id: None,
        name: None,
        region: None,
    };
    assert_eq!(describe.tag_name(&config), tag_name(&config));
    assert_eq!(file_system_spec(&config).unwrap().name, tag_name(&config));
}

#[test]
fn the_configured_compression_reaches_the_storage_class_and_the_request() {
    let mut config = eks_config("trainium-inferentia");
    config.storage.data_compression_type = DataCompression::Lz4;
    assert_eq!(
        parameters(&manifests(&config, None).unwrap())["dataCompressionType"],
        "LZ4"
    );
    let spec = file_system_spec(&config).unwrap();
    assert_eq!(
        spec.lustre_configuration()
            .data_compression_type()
            .map(|compression| compression.as_str()),
        Some("LZ4")
    );
}

#[test]
fn scratch_deployment_types_are_refused_not_rendered_as_persistent() {
    for scratch in ["SCRATCH_1", "SCRATCH_2"] {
        let text = format!(
            "[cluster]\ntarget = \"eks\"\n[storage]\nsubnet_id = \"{SUBNET}\"\nsecurity_group_ids = [\"{GROUP}\"]\ndeployment_type = \"{scratch}\"\n"
        );
        let error = Config::parse(&text, "trnkit.toml")
            .map(|config| {
                format!(
                    "parsed, and would render {}",
                    parameters(&manifests(&config, None).unwrap())["deploymentType"]
                )
            })
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("deployment_type") && error.contains(scratch),
            "{error}"
        );
    }
}

#[test]
fn the_local_profile_renders_placeholders_but_nothing_is_created_without_a_subnet() {
    let config = Config::default();
    assert_eq!(config.cluster.target, Target::Local);
    let rendered = manifests(&config, None).unwrap();
    assert_eq!(parameters(&rendered)["subnetId"], super::PLACEHOLDER_SUBNET);
    let error = format!("{:#}", file_system_spec(&config).unwrap_err());
    assert!(error.contains("storage.subnet_id"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// Deploy's storage step against the FAKE API server.

/// A fake cluster whose CSI driver binds every claim trnkit applies.
async fn fake_cluster() -> FakeApiServer {
    let fake = FakeApiServer::start().await;
    fake.on_write("PersistentVolumeClaim", |fake, event| {
        if event.verb == WriteVerb::Apply && event.subresource.is_none() {
            fake.set_status::<PersistentVolumeClaim>(
                event.namespace(),
                event.name(),
                json!({"phase": "Bound"}),
            );
        }
    });
    fake
}

/// The blueprint's terraform-made StorageClass `fsx` (`blueprint.md` §4.5), with `subnet`.
fn terraform_storage_class(subnet: &str) -> serde_json::Value {
    json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "fsx"},
        "provisioner": "fsx.csi.aws.com",
        "parameters": {
            "subnetId": subnet, "securityGroupIds": GROUP, "deploymentType": "PERSISTENT_1",
            "automaticBackupRetentionDays": "1", "dailyAutomaticBackupStartTime": "00:00",
            "copyTagsToBackups": "true", "perUnitStorageThroughput": "200",
            "dataCompressionType": "NONE", "weeklyMaintenanceStartTime": "7:09:00",
            "fileSystemTypeVersion": "2.12",
        },
        "mountOptions": ["flock"],
    })
}

/// The writes (anything but reads) the fake received for `resource` (`storageclasses`, …).
fn writes(fake: &FakeApiServer, resource: &str) -> Vec<String> {
    fake.requests()
        .iter()
        .filter(|request| request.method != "GET" && request.path.contains(&format!("/{resource}")))
        .map(|request| format!("{} {}", request.method, request.path))
        .collect()
}

async fn storage_step(
    fake: &FakeApiServer,
    fsx_client: Option<&aws_sdk_fsx::Client>,
    config: &Config,
    timeout: Duration,
) -> anyhow::Result<StorageOutcome> {
    // What deploy's bundle renders for the step.
    let rendered = manifests(config, None).unwrap();
    ensure_in_cluster(
        &fake.client(),
        fsx_client,
        config,
        &rendered,
        timeout,
        &|_| {},
    )
    .await
}

#[tokio::test]
async fn a_fitting_storage_class_made_by_terraform_is_adopted_and_never_written() {
    let fake = fake_cluster().await;
    let terraform = fake.insert_value(terraform_storage_class(SUBNET));
    let config = eks_config("trainium-inferentia");
    let outcome = storage_step(&fake, None, &config, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        outcome
            .summary
            .contains("adopted the existing StorageClass fsx")
            && outcome.summary.contains("extraTags")
            && outcome.summary.contains("claim fsx-claim is Bound"),
        "{}",
        outcome.summary
    );
    assert_eq!(writes(&fake, "storageclasses"), Vec::<String>::new());
    let class: StorageClass = fake.get("", "fsx").unwrap();
    assert_eq!(
        serde_json::to_value(&class.parameters).unwrap(),
        terraform["parameters"],
        "the class is as terraform left it"
    );
    let claim: PersistentVolumeClaim = fake.get("default", "fsx-claim").unwrap();
    assert_eq!(
        claim.spec.unwrap().storage_class_name.as_deref(),
        Some("fsx")
    );
}

#[tokio::test]
async fn a_storage_class_that_does_not_fit_is_explained_and_left_alone() {
    let fake = fake_cluster().await;
    fake.insert_value(terraform_storage_class("subnet-0ffffffffffffffff"));
    let config = eks_config("trainium-inferentia");
    let error = format!(
        "{:#}",
        storage_step(&fake, None, &config, Duration::from_secs(10))
            .await
            .unwrap_err()
    );
    for expected in [
        "StorageClass fsx exists already",
        "subnetId is subnet-0ffffffffffffffff",
        "(storage.subnet_id) asks for subnet-0a1b2c3d4e5f60718",
        "storage.storage_class to another name",
        "storage.mode = \"existing-claim\"",
    ] {
        assert!(error.contains(expected), "{expected:?} not in {error}");
    }
    assert!(!error.contains("extraTags"), "tags do not matter: {error}");
    assert_eq!(writes(&fake, "storageclasses"), Vec::<String>::new());
    assert_eq!(
        writes(&fake, "persistentvolumeclaims"),
        Vec::<String>::new(),
        "nothing is created when the class does not fit"
    );
}

#[tokio::test]
async fn a_bound_claim_is_adopted_as_it_is_whatever_its_storage_class() {
    let fake = fake_cluster().await;
    // The claim is Bound: the class (which would not fit) no longer matters.
    fake.insert_value(terraform_storage_class("subnet-0ffffffffffffffff"));
    fake.insert_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "fsx-claim", "namespace": "default"},
        "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "fsx", "volumeName": "pvc-1234",
                 "resources": {"requests": {"storage": "1200Gi"}}},
        "status": {"phase": "Bound"},
    }));
    let mut config = eks_config("trainium-inferentia");
    config.storage.capacity_gib = 2400;
    let outcome = storage_step(&fake, None, &config, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        outcome
            .summary
            .contains("adopted the Bound claim fsx-claim"),
        "{}",
        outcome.summary
    );
    assert_eq!(
        writes(&fake, "persistentvolumeclaims"),
        Vec::<String>::new()
    );
    assert_eq!(writes(&fake, "storageclasses"), Vec::<String>::new());
}

#[tokio::test]
async fn a_pending_claim_of_another_class_is_explained_and_left_alone() {
    let fake = fake_cluster().await;
    fake.insert_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "fsx-claim", "namespace": "default"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "gp3",
                 "resources": {"requests": {"storage": "100Gi"}}},
        "status": {"phase": "Pending"},
    }));
    let config = eks_config("trainium-inferentia");
    let error = format!(
        "{:#}",
        storage_step(&fake, None, &config, Duration::from_secs(10))
            .await
            .unwrap_err()
    );
    for expected in [
        "claim default/fsx-claim exists already (Pending)",
        "\"gp3\"",
        "storage.mode = \"existing-claim\"",
        "storage.claim_name to another name",
        "kubectl delete pvc -n default fsx-claim",
    ] {
        assert!(error.contains(expected), "{expected:?} not in {error}");
    }
    assert_eq!(
        writes(&fake, "persistentvolumeclaims"),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn static_mode_without_an_fsx_client_says_so() {
    let fake = fake_cluster().await;
    let mut config = eks_config("trainium-inferentia");
    config.storage.mode = StorageMode::Static;
    let error = format!(
        "{:#}",
        storage_step(&fake, None, &config, Duration::from_secs(10))
            .await
            .unwrap_err()
    );
    assert!(error.contains("storage.mode = \"static\""), "{error}");
}

#[tokio::test]
async fn cleanup_gets_only_what_trnkit_created() {
    let fake = fake_cluster().await;
    fake.insert_value(terraform_storage_class(SUBNET));
    let config = eks_config("trainium-inferentia");
    storage_step(&fake, None, &config, Duration::from_secs(10))
        .await
        .unwrap();
    let names = |objects: Vec<serde_json::Value>| -> Vec<String> {
        objects
            .iter()
            .map(|object| {
                format!(
                    "{} {}",
                    object["kind"].as_str().unwrap(),
                    object["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect()
    };
    // terraform's StorageClass was adopted, not created: it is not trnkit's to delete.
    assert_eq!(
        names(
            super::created_objects(&fake.client(), &config)
                .await
                .unwrap()
        ),
        ["PersistentVolumeClaim fsx-claim"]
    );

    // The blueprint's own claim, adopted too: nothing is trnkit's.
    let fake = fake_cluster().await;
    fake.insert_value(terraform_storage_class(SUBNET));
    fake.insert_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "fsx-claim", "namespace": "default"},
        "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "fsx", "volumeName": "pvc-1234",
                 "resources": {"requests": {"storage": "1200Gi"}}},
        "status": {"phase": "Bound"},
    }));
    storage_step(&fake, None, &config, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        super::created_objects(&fake.client(), &config)
            .await
            .unwrap()
            .is_empty()
    );

    // The static mode: the PV trnkit made for the claim, and the claim.
    let fake = fake_cluster().await;
    let mut config = eks_config("trainium-inferentia");
    config.storage.mode = StorageMode::Static;
    let mut file_system = fsx::FileSystem::from_sdk(
        &aws_sdk_fsx::types::FileSystem::builder()
            .file_system_id("fs-0199e5a63bd90f796")
            .dns_name("fs-0199e5a63bd90f796.fsx.us-west-2.amazonaws.com")
            .build(),
    )
    .unwrap();
    file_system.mount_name = Some("fsx".to_owned());
    // What the storage step creates for this file system (its FSx part is tested against moto).
    for manifest in manifests(&config, Some(&file_system)).unwrap() {
        super::apply_new(&fake.client(), &config, &manifest)
            .await
            .unwrap();
    }
    assert_eq!(
        names(
            super::created_objects(&fake.client(), &config)
                .await
                .unwrap()
        ),
        [
            "PersistentVolume fsx-claim-default-fs-0199e5a63bd90f796",
            "PersistentVolumeClaim fsx-claim"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// The static mode against moto.

/// Plays what moto lacks and records what is sent: every `CreateFileSystem` request body, and
/// (when `available`) describes that say AVAILABLE with a Lustre mount name, as real FSx says
/// once a file system is ready.
#[derive(Clone, Debug, Default)]
struct MotoGaps {
    available: bool,
    create_bodies: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Intercept for MotoGaps {
    fn name(&self) -> &'static str {
        "MotoGaps"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let request = context.request();
        if request
            .headers()
            .get("x-amz-target")
            .is_some_and(|target| target.ends_with(".CreateFileSystem"))
        {
            self.create_bodies
                .lock()
                .unwrap()
                .push(request.body().bytes().unwrap_or_default().to_vec());
        }
        Ok(())
    }

    fn modify_before_completion(
        &self,
        context: &mut FinalizerInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if !self.available {
            return Ok(());
        }
        if let Some(Ok(output)) = context.output_or_error_mut()
            && let Some(described) = output.downcast_mut::<DescribeFileSystemsOutput>()
        {
            for file_system in described.file_systems.iter_mut().flatten() {
                file_system.lifecycle = Some(FileSystemLifecycle::Available);
                let lustre = file_system
                    .lustre_configuration
                    .get_or_insert_with(|| LustreFileSystemConfiguration::builder().build());
                lustre.mount_name = Some("fsx".to_owned());
            }
        }
        Ok(())
    }
}

async fn moto_client(region: &str, gaps: &MotoGaps) -> Option<aws_sdk_fsx::Client> {
    let url = test_support::services::moto_url()?;
    let sdk = test_support::aws::sdk_config(&url, region).await;
    let config = aws_sdk_fsx::config::Builder::from(&sdk)
        .interceptor(gaps.clone())
        .build();
    Some(aws_sdk_fsx::Client::from_conf(config))
}

/// A cluster name no other test (or earlier run against the same moto) uses.
fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn static_config(name: &str) -> Config {
    let mut config = eks_config(name);
    config.storage.mode = StorageMode::Static;
    config
}

#[tokio::test]
async fn static_mode_creates_waits_binds_and_then_adopts() {
    let gaps = MotoGaps {
        available: true,
        ..MotoGaps::default()
    };
    let Some(client) = moto_client("us-west-2", &gaps).await else {
        return;
    };
    let fake = fake_cluster().await;
    let config = static_config(&unique_name("static"));

    let first = storage_step(&fake, Some(&client), &config, Duration::from_secs(10))
        .await
        .unwrap();
    let id = first.outputs["file_system_id"].clone();
    assert!(
        first
            .summary
            .starts_with(&format!("created the FSx file system {id}"))
            && first.summary.ends_with("claim fsx-claim is Bound"),
        "{}",
        first.summary
    );
    let volume_name = fsx::csi::static_volume_name(&id, "fsx-claim", "default");
    let volume: PersistentVolume = fake.get("", &volume_name).expect("the static PV");
    let csi = volume.spec.unwrap().csi.unwrap();
    assert_eq!(csi.volume_handle, id);
    assert_eq!(csi.volume_attributes.unwrap()["mountname"], "fsx");
    let claim: PersistentVolumeClaim = fake.get("default", "fsx-claim").unwrap();
    assert_eq!(
        claim.spec.unwrap().volume_name.as_deref(),
        Some(volume_name.as_str())
    );

    // A re-run adopts the same file system and writes nothing.
    fake.clear_requests();
    let second = storage_step(&fake, Some(&client), &config, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(second.outputs["file_system_id"], id);
    assert!(
        second
            .summary
            .starts_with(&format!("adopted the FSx file system {id}")),
        "{}",
        second.summary
    );
    assert_eq!(
        gaps.create_bodies.lock().unwrap().len(),
        1,
        "one file system"
    );
    for resource in ["persistentvolumes", "persistentvolumeclaims"] {
        assert_eq!(writes(&fake, resource), Vec::<String>::new());
    }

    // `fsx describe` finds what deploy made, by the same tag.
    let describe = crate::cli::fsx::Target {
        file_system_id: None,
        name: None,
        region: None,
    };
    let found = fsx::io::find_by_name(&client, &describe.tag_name(&config))
        .await
        .unwrap();
    assert_eq!(
        found
            .iter()
            .map(|file_system| file_system.file_system_id.as_str())
            .collect::<Vec<_>>(),
        [id.as_str()]
    );
    fsx::io::delete(&client, &id, fsx::io::DeleteOptions::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn the_static_mode_wait_is_bounded() {
    // Bare moto never reports a lifecycle: the wait gives up at the bound, naming the file system.
    let gaps = MotoGaps::default();
    let Some(client) = moto_client("us-west-2", &gaps).await else {
        return;
    };
    let fake = fake_cluster().await;
    let config = static_config(&unique_name("bounded"));
    let started = std::time::Instant::now();
    let error = format!(
        "{:#}",
        storage_step(&fake, Some(&client), &config, Duration::from_secs(1))
            .await
            .unwrap_err()
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        error.contains("is still unknown after") && error.contains("run the command again"),
        "{error}"
    );
    assert_eq!(
        writes(&fake, "persistentvolumeclaims"),
        Vec::<String>::new()
    );
    let found = fsx::io::find_by_name(&client, tag_name(&config))
        .await
        .unwrap();
    for file_system in found {
        fsx::io::delete(
            &client,
            &file_system.file_system_id,
            fsx::io::DeleteOptions::default(),
        )
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn fsx_create_and_deploy_send_the_same_create_request() {
    // Two regions of moto, so that each creates (rather than adopting the other's).
    let deploy_gaps = MotoGaps {
        available: true,
        ..MotoGaps::default()
    };
    let cli_gaps = MotoGaps::default();
    let (Some(deploy_client), Some(cli_client)) = (
        moto_client("us-west-2", &deploy_gaps).await,
        moto_client("us-east-2", &cli_gaps).await,
    ) else {
        return;
    };
    let mut config = static_config(&unique_name("same"));
    config.storage.data_compression_type = DataCompression::Lz4;
    config.storage.deployment_type = fsx::DeploymentType::Persistent2;
    config.storage.per_unit_storage_throughput = 250;
    config.storage.automatic_backup_retention_days = 0;

    let fake = fake_cluster().await;
    let deployed = storage_step(
        &fake,
        Some(&deploy_client),
        &config,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let args = crate::cli::fsx::CreateArgs::plain();
    let (created, was_created) = crate::cli::fsx::create_with(&cli_client, &args, &config, true)
        .await
        .unwrap();
    assert!(was_created);

    let deploy_bodies = deploy_gaps.create_bodies.lock().unwrap().clone();
    let cli_bodies = cli_gaps.create_bodies.lock().unwrap().clone();
    assert_eq!(deploy_bodies.len(), 1);
    assert_eq!(
        String::from_utf8_lossy(&deploy_bodies[0]),
        String::from_utf8_lossy(&cli_bodies[0]),
        "byte for byte"
    );
    let body: serde_json::Value = serde_json::from_slice(&deploy_bodies[0]).unwrap();
    assert_eq!(body["LustreConfiguration"]["DataCompressionType"], "LZ4");
    assert_eq!(
        body["LustreConfiguration"]["DeploymentType"],
        "PERSISTENT_2"
    );
    assert!(
        body["Tags"]
            .as_array()
            .unwrap()
            .contains(&json!({"Key": "trnkit:name", "Value": tag_name(&config)})),
        "{body}"
    );

    fsx::io::delete(
        &deploy_client,
        &deployed.outputs["file_system_id"],
        fsx::io::DeleteOptions::default(),
    )
    .await
    .unwrap();
    fsx::io::delete(
        &cli_client,
        &created.file_system_id,
        fsx::io::DeleteOptions::default(),
    )
    .await
    .unwrap();
}
