//! The TensorBoard image (blueprint §3.2–3.3), without the password the blueprint baked in.
//!
//! nginx answers on port 80 with HTTP basic auth in front of TensorBoard. The credentials file
//! (`htpasswd` format) is **not** in the image: the pod mounts it from a Kubernetes Secret at
//! [`TENSORBOARD_HTPASSWD_DIR`]/[`TENSORBOARD_HTPASSWD_FILE`]. Without it the container refuses to
//! start, so TensorBoard is never served unauthenticated.
//!
//! Other changes from the blueprint: TensorBoard listens on 127.0.0.1 and nginx proxies to it in
//! the same pod (the blueprint proxied through the Service, so with two replicas a request could
//! reach the other pod's TensorBoard); versions are pinned; `/healthz` answers without
//! authentication for the probes.

use crate::context::ContextFile;
use crate::dockerfile::Dockerfile;
use crate::error::Result;
use crate::images::{ImageDefinition, check_pinned_image, check_value};

const IMAGE: &str = "tensorboard";

/// The directory where the pod mounts the Secret holding the credentials file.
pub const TENSORBOARD_HTPASSWD_DIR: &str = "/etc/nginx/auth";
/// The credentials file's name in that directory (the key in the Secret).
pub const TENSORBOARD_HTPASSWD_FILE: &str = "htpasswd";
/// The port nginx listens on.
pub const TENSORBOARD_PORT: u16 = 80;
/// The environment variable that sets TensorBoard's log directory.
pub const TENSORBOARD_LOGDIR_ENV: &str = "TENSORBOARD_LOGDIR";

/// The TensorBoard image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorboardImage {
    /// The base image, pinned by digest.
    pub base_image: String,
    /// The pip version installed over Ubuntu's.
    pub pip_version: String,
    /// TensorBoard.
    pub tensorboard_version: String,
    /// The default log directory (`TENSORBOARD_LOGDIR`); trnkit passes its layout's experiments directory.
    pub logdir: String,
}

impl Default for TensorboardImage {
    fn default() -> Self {
        Self {
            base_image: super::UBUNTU_JAMMY.to_owned(),
            pip_version: "24.3.1".to_owned(),
            tensorboard_version: "2.18.0".to_owned(),
            // A neutral default: the shared file system's layout is not this crate's to know.
            // trnkit passes the experiments directory of its layout, and the Deployment sets
            // TENSORBOARD_LOGDIR as well.
            logdir: "/var/lib/tensorboard".to_owned(),
        }
    }
}

impl TensorboardImage {
    /// Checks every value.
    pub fn validate(&self) -> Result<()> {
        check_pinned_image(IMAGE, "base_image", &self.base_image)?;
        check_value(IMAGE, "pip_version", &self.pip_version)?;
        check_value(IMAGE, "tensorboard_version", &self.tensorboard_version)?;
        check_value(IMAGE, "logdir", &self.logdir)
    }

    /// The rendered Dockerfile.
    pub fn dockerfile(&self) -> Result<Dockerfile> {
        self.validate()?;
        let mut file = Dockerfile::new();
        file.comment(
            "trnkit TensorBoard image: nginx with basic auth in front of TensorBoard.\n\
             Rendered by trnkit (crate ecr-image, TensorboardImage). It holds no credentials: mount\n\
             a Kubernetes Secret with an htpasswd file at /etc/nginx/auth/htpasswd.",
        );
        file.arg("BASE_IMAGE", &self.base_image)
            .from_image("${BASE_IMAGE}")
            .blank();
        file.label([
            ("org.opencontainers.image.title", "trnkit-tensorboard"),
            (
                "org.opencontainers.image.description",
                "TensorBoard behind nginx basic auth; credentials from a Secret",
            ),
        ]);
        file.arg("DEBIAN_FRONTEND", "noninteractive");
        file.run([
            "apt-get update",
            "apt-get install -y --no-install-recommends ca-certificates nginx python3 python3-pip",
            "rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/default",
        ]);
        file.arg("PIP_VERSION", &self.pip_version)
            .arg("TENSORBOARD_VERSION", &self.tensorboard_version);
        file.run([
            "python3 -m pip install --no-cache-dir \"pip==${PIP_VERSION}\"",
            "python3 -m pip install --no-cache-dir \"tensorboard==${TENSORBOARD_VERSION}\"",
        ]);
        file.copy("nginx.conf", "/etc/nginx/conf.d/tensorboard.conf");
        file.copy("entrypoint.sh", "/usr/local/bin/tensorboard-entrypoint");
        file.env([(TENSORBOARD_LOGDIR_ENV, self.logdir.as_str())]);
        file.expose(TENSORBOARD_PORT);
        file.entrypoint(["/usr/local/bin/tensorboard-entrypoint"]);
        file.check_no_secrets()?;
        Ok(file)
    }

    /// The rendered image: the Dockerfile, the nginx configuration and the entrypoint script.
    pub fn definition(&self) -> Result<ImageDefinition> {
        Ok(ImageDefinition {
            name: IMAGE,
            dockerfile: self.dockerfile()?,
            files: vec![
                ContextFile::text("nginx.conf", nginx_conf(), 0o644),
                ContextFile::text("entrypoint.sh", entrypoint(), 0o755),
            ],
        })
    }
}

/// The nginx site: basic auth with the mounted credentials, proxying to TensorBoard in the pod.
pub(crate) fn nginx_conf() -> String {
    format!(
        "# Generated by trnkit. Basic auth in front of TensorBoard. The credentials file is\n\
         # mounted from a Kubernetes Secret at run time; the image holds none.\n\
         server {{\n\
         \x20   listen {TENSORBOARD_PORT} default_server;\n\
         \x20   location = /healthz {{\n\
         \x20       access_log off;\n\
         \x20       default_type text/plain;\n\
         \x20       return 200 \"ok\\n\";\n\
         \x20   }}\n\
         \x20   location / {{\n\
         \x20       auth_basic \"TensorBoard\";\n\
         \x20       auth_basic_user_file {TENSORBOARD_HTPASSWD_DIR}/{TENSORBOARD_HTPASSWD_FILE};\n\
         \x20       proxy_pass http://127.0.0.1:6006;\n\
         \x20       proxy_http_version 1.1;\n\
         \x20       proxy_set_header Host $host;\n\
         \x20       proxy_read_timeout 900;\n\
         \x20   }}\n\
         }}\n"
    )
}

/// The entrypoint: refuse to start without credentials, then run TensorBoard and nginx and stop
/// when either stops (so Kubernetes restarts the pod).
pub(crate) fn entrypoint() -> String {
    format!(
        "#!/bin/bash\n\
         # Generated by trnkit. Starts TensorBoard on 127.0.0.1:6006 and nginx on port {TENSORBOARD_PORT}.\n\
         set -euo pipefail\n\
         credentials={TENSORBOARD_HTPASSWD_DIR}/{TENSORBOARD_HTPASSWD_FILE}\n\
         if [ ! -s \"$credentials\" ]; then\n\
         \x20   echo \"tensorboard: no credentials at $credentials: mount a Kubernetes Secret holding an htpasswd file there; refusing to serve TensorBoard without authentication\" >&2\n\
         \x20   exit 1\n\
         fi\n\
         tensorboard --logdir \"${{{TENSORBOARD_LOGDIR_ENV}}}\" --host 127.0.0.1 --port 6006 &\n\
         nginx -g 'daemon off;' &\n\
         trap 'kill $(jobs -p) 2>/dev/null || true' TERM INT\n\
         # Stop as soon as either process stops.\n\
         wait -n || true\n\
         echo \"tensorboard: a process exited; stopping\" >&2\n\
         kill $(jobs -p) 2>/dev/null || true\n\
         exit 1\n"
    )
}
