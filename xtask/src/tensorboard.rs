//! The TensorBoard objects: a Deployment reading the experiments directory behind nginx basic
//! auth, a ClusterIP Service and (optionally) the blueprint's LoadBalancer Service.
//!
//! Unlike the blueprint, no password is in the image: nginx reads its htpasswd file from the
//! Secret named in the configuration, mounted read-only, and each pod's nginx proxies to its
//! own TensorBoard on loopback (the blueprint proxied through the Service, so with two
//! replicas a request could reach the other pod's TensorBoard). TensorBoard itself listens on
//! loopback only, so nothing reaches it without the password. The image's entrypoint starts
//! both and reads the log directory from `TENSORBOARD_LOGDIR`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec,
    SecretVolumeSource, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The Deployment's name (the blueprint's).
pub const DEPLOYMENT: &str = "tensorboard-deployment";
/// The ClusterIP Service's name.
pub const SERVICE: &str = "tensorboard-service";
/// The LoadBalancer Service's name.
pub const LOAD_BALANCER: &str = "tensorboard-ext-loadbalancer";
/// The key of the htpasswd file in the Secret.
pub const HTPASSWD_KEY: &str = ecr_image::TENSORBOARD_HTPASSWD_FILE;
/// The key of the plain password in the Secret (read back by `cargo xtask tensorboard`).
pub const PASSWORD_KEY: &str = "password";
/// Where the Secret's htpasswd file is mounted; the image's nginx config reads it from here.
pub const HTPASSWD_DIR: &str = ecr_image::TENSORBOARD_HTPASSWD_DIR;
/// The mode of the mounted htpasswd file (`defaultMode`): readable by every user of the container.
///
/// nginx's workers run as `www-data` (the image's Debian `nginx.conf` says `user www-data;`) and
/// open the file on each request, while the kubelet writes it owned by root. With `0440` the
/// workers could not read it: no credentials still got 401 and `/healthz` kept the pod Ready, but
/// the right password got HTTP 500. `0444` lets them read it and exposes nothing more: the volume
/// projects only the htpasswd key (not the password key), and the container's users are root,
/// who reads everything, and `www-data`, who must read it. The alternative, `fsGroup: 33` with
/// `0440`, is not used: a pod's `fsGroup` also applies to the FSx claim mounted in the same pod
/// (a recursive group change of the shared file system when the pod starts).
pub const HTPASSWD_MODE: i32 = 0o444;

/// The htpasswd line for `user` and `password`, as the Secret holds it and nginx reads it.
pub fn htpasswd(user: &str, password: &str) -> String {
    format!("{user}:{{PLAIN}}{password}\n")
}

/// What the TensorBoard objects are made from.
#[derive(Clone, Debug)]
pub struct TensorboardConfig {
    /// Namespace.
    pub namespace: String,
    /// The TensorBoard image.
    pub image: String,
    /// `imagePullPolicy`.
    pub pull_policy: String,
    /// Replicas.
    pub replicas: i32,
    /// `LoadBalancer` or `ClusterIP`.
    pub service_type: crate::config::ServiceType,
    /// The Secret with the htpasswd file.
    pub secret_name: String,
    /// The shared claim.
    pub claim_name: String,
    /// Where the claim is mounted.
    pub mount_path: String,
    /// TensorBoard's `--logdir`: the experiments directory.
    pub logdir: String,
}

fn labels() -> BTreeMap<String, String> {
    [
        ("app", "tensorboard-app"),
        ("app.kubernetes.io/name", "tensorboard"),
        ("app.kubernetes.io/managed-by", "trnkit"),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value.to_owned()))
    .collect()
}

fn selector() -> BTreeMap<String, String> {
    BTreeMap::from([("app".to_owned(), "tensorboard-app".to_owned())])
}

fn metadata(name: &str, namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        labels: Some(labels()),
        ..Default::default()
    }
}

/// The Deployment.
pub fn deployment(config: &TensorboardConfig) -> Deployment {
    Deployment {
        metadata: metadata(DEPLOYMENT, &config.namespace),
        spec: Some(DeploymentSpec {
            replicas: Some(config.replicas),
            selector: LabelSelector {
                match_labels: Some(selector()),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels()),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "app".to_owned(),
                        image: Some(config.image.clone()),
                        image_pull_policy: Some(config.pull_policy.clone()),
                        env: Some(vec![k8s_openapi::api::core::v1::EnvVar {
                            name: ecr_image::TENSORBOARD_LOGDIR_ENV.to_owned(),
                            value: Some(config.logdir.clone()),
                            value_from: None,
                        }]),
                        readiness_probe: Some(k8s_openapi::api::core::v1::Probe {
                            http_get: Some(k8s_openapi::api::core::v1::HTTPGetAction {
                                path: Some("/healthz".to_owned()),
                                port: IntOrString::Int(80),
                                ..Default::default()
                            }),
                            period_seconds: Some(10),
                            ..Default::default()
                        }),
                        ports: Some(vec![ContainerPort {
                            container_port: 80,
                            name: Some("http".to_owned()),
                            ..Default::default()
                        }]),
                        volume_mounts: Some(vec![
                            VolumeMount {
                                name: "persistent-storage".to_owned(),
                                mount_path: config.mount_path.clone(),
                                read_only: Some(true),
                                ..Default::default()
                            },
                            VolumeMount {
                                name: "htpasswd".to_owned(),
                                mount_path: HTPASSWD_DIR.to_owned(),
                                read_only: Some(true),
                                ..Default::default()
                            },
                        ]),
                        ..Default::default()
                    }],
                    volumes: Some(vec![
                        Volume {
                            name: "persistent-storage".to_owned(),
                            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                                claim_name: config.claim_name.clone(),
                                read_only: Some(true),
                            }),
                            ..Default::default()
                        },
                        Volume {
                            name: "htpasswd".to_owned(),
                            secret: Some(SecretVolumeSource {
                                secret_name: Some(config.secret_name.clone()),
                                items: Some(vec![k8s_openapi::api::core::v1::KeyToPath {
                                    key: HTPASSWD_KEY.to_owned(),
                                    path: HTPASSWD_KEY.to_owned(),
                                    mode: None,
                                }]),
                                default_mode: Some(HTPASSWD_MODE),
                                optional: None,
                            }),
                            ..Default::default()
                        },
                    ]),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

fn service(name: &str, service_type: &str, namespace: &str) -> Service {
    Service {
        metadata: metadata(name, namespace),
        spec: Some(ServiceSpec {
            type_: Some(service_type.to_owned()),
            selector: Some(selector()),
            ports: Some(vec![ServicePort {
                name: Some("nginx-proxy".to_owned()),
                port: 80,
                target_port: Some(IntOrString::Int(80)),
                protocol: Some("TCP".to_owned()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

/// The Services: always the ClusterIP one; the LoadBalancer one when configured.
pub fn services(config: &TensorboardConfig) -> Vec<Service> {
    let mut services = vec![service(SERVICE, "ClusterIP", &config.namespace)];
    if config.service_type == crate::config::ServiceType::LoadBalancer {
        services.push(service(LOAD_BALANCER, "LoadBalancer", &config.namespace));
    }
    services
}
