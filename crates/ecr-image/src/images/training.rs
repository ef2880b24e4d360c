//! The training image (blueprint §3.1, `Dockerfile.llama_pretrain`), with every version pinned.
//!
//! What changes from the blueprint, and why:
//! - The base image is pinned by digest (the blueprint used the moving `22.04_stable` tag).
//! - The Neuron apt packages, `torch`, `torch-neuronx`, `neuronx-cc`, pip, the EFA installer and
//!   `neuronx-nemo-megatron` are pinned; the blueprint installed whatever was current and cloned
//!   `neuronx-nemo-megatron` at HEAD. The defaults are the Neuron SDK 2.21.0 set, the release the
//!   `neuronx-nemo-megatron` commit `f4743ce` ("2.21_release", 2024-12-19) was made for.
//! - The Neuron apt repository is the one for the image's Ubuntu release (`jammy`); the blueprint
//!   used `focal` on a jammy image. Its key goes to a keyring (`apt-key` is deprecated).
//! - The EFA installer is a fixed version, checked against its GPG signature.
//! - `PATH` includes `/opt/aws/neuron/bin` for every process, not only for interactive shells,
//!   and `LD_LIBRARY_PATH` no longer starts with an empty entry.
//! - Every version is an `ARG` with its default declared just before the step that uses it, so
//!   changing one only rebuilds from that step on.

use crate::dockerfile::Dockerfile;
use crate::error::Result;
use crate::images::{ImageDefinition, check_pinned_image, check_value};

const IMAGE: &str = "training";

/// The Neuron system packages (from the Neuron apt repository), pinned by upstream version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeuronAptPackages {
    /// `aws-neuronx-runtime-lib`.
    pub runtime_lib: String,
    /// `aws-neuronx-collectives`.
    pub collectives: String,
    /// `aws-neuronx-tools` (`neuron-top`, `neuron-ls`).
    pub tools: String,
}

/// A git repository at a fixed commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitSource {
    /// Clone URL.
    pub repository: String,
    /// The full 40-digit commit id.
    pub commit: String,
}

/// The training image: Ubuntu 22.04, EFA userspace, the Neuron runtime, PyTorch Neuron and
/// `neuronx-nemo-megatron` built from a pinned commit, plus Open MPI and sshd for the MPI
/// Operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainingImage {
    /// The base image, pinned by digest.
    pub base_image: String,
    /// The Ubuntu release of the base image, for the Neuron apt repository.
    pub ubuntu_codename: String,
    /// The Python interpreter (`python3.10` on Ubuntu 22.04).
    pub python: String,
    /// The pip version installed over Ubuntu's.
    pub pip_version: String,
    /// The AWS EFA installer version (libfabric and friends, no kernel module).
    pub efa_installer_version: String,
    /// The Neuron apt repository.
    pub neuron_apt_repository: String,
    /// The Neuron pip repository.
    pub neuron_pip_repository: String,
    /// The Neuron system packages.
    pub neuron_apt: NeuronAptPackages,
    /// The PyTorch CPU wheel index.
    pub torch_index: String,
    /// `torch` (CPU build; `torch-neuronx` adds the XLA device).
    pub torch_version: String,
    /// `torch-neuronx`.
    pub torch_neuronx_version: String,
    /// `neuronx-cc`, the Neuron compiler.
    pub neuronx_cc_version: String,
    /// `python-etcd` (used by torchrun's etcd rendezvous).
    pub python_etcd_version: String,
    /// `protobuf`, pinned by `neuronx-nemo-megatron`'s instructions.
    pub protobuf_version: String,
    /// `neuronx-nemo-megatron`, built into NeMo and Apex wheels inside the image.
    pub neuronx_nemo_megatron: GitSource,
    /// The Neuron SDK release the versions above belong to (recorded as a label).
    pub neuron_sdk: String,
}

impl Default for TrainingImage {
    /// The Neuron SDK 2.21.0 set and `neuronx-nemo-megatron` at `f4743ce`.
    fn default() -> Self {
        Self {
            base_image: super::UBUNTU_JAMMY.to_owned(),
            ubuntu_codename: "jammy".to_owned(),
            python: "python3.10".to_owned(),
            pip_version: "24.3.1".to_owned(),
            efa_installer_version: "1.37.0".to_owned(),
            neuron_apt_repository: "https://apt.repos.neuron.amazonaws.com".to_owned(),
            neuron_pip_repository: "https://pip.repos.neuron.amazonaws.com".to_owned(),
            neuron_apt: NeuronAptPackages {
                runtime_lib: "2.23.110.0".to_owned(),
                collectives: "2.23.133.0".to_owned(),
                tools: "2.20.204.0".to_owned(),
            },
            torch_index: "https://download.pytorch.org/whl/cpu".to_owned(),
            torch_version: "1.13.1".to_owned(),
            torch_neuronx_version: "1.13.1.1.17.0".to_owned(),
            neuronx_cc_version: "2.16.345.0".to_owned(),
            python_etcd_version: "0.4.5".to_owned(),
            protobuf_version: "3.20.3".to_owned(),
            neuronx_nemo_megatron: GitSource {
                repository: "https://github.com/aws-neuron/neuronx-nemo-megatron.git".to_owned(),
                commit: "f4743cef5a1c8dc9eeb6b3d128e01693e041a9be".to_owned(),
            },
            neuron_sdk: "2.21.0".to_owned(),
        }
    }
}

/// Ubuntu packages of the blueprint's image (build tools, Python 3.10, git-lfs, ...).
const APT_PACKAGES: &[&str] = &[
    "build-essential",
    "ca-certificates",
    "cmake",
    "curl",
    "cython3",
    "ffmpeg",
    "git",
    "git-lfs",
    "gnupg2",
    "google-perftools",
    "gpg-agent",
    "inetutils-ping",
    "jq",
    "libbz2-dev",
    "libc6-dev",
    "libcap-dev",
    "libffi-dev",
    "libgdbm-dev",
    "libsqlite3-dev",
    "libssl-dev",
    "nano",
    "openssl",
    "pciutils",
    "python3-pip",
    "python3.10-dev",
    "python3.10-full",
    "software-properties-common",
    "tk-dev",
    "unzip",
    "vim",
    "wget",
    "zlib1g-dev",
];

impl TrainingImage {
    /// Checks every value.
    pub fn validate(&self) -> Result<()> {
        check_pinned_image(IMAGE, "base_image", &self.base_image)?;
        for (parameter, value) in [
            ("ubuntu_codename", &self.ubuntu_codename),
            ("python", &self.python),
            ("pip_version", &self.pip_version),
            ("efa_installer_version", &self.efa_installer_version),
            ("neuron_apt_repository", &self.neuron_apt_repository),
            ("neuron_pip_repository", &self.neuron_pip_repository),
            ("neuron_apt.runtime_lib", &self.neuron_apt.runtime_lib),
            ("neuron_apt.collectives", &self.neuron_apt.collectives),
            ("neuron_apt.tools", &self.neuron_apt.tools),
            ("torch_index", &self.torch_index),
            ("torch_version", &self.torch_version),
            ("torch_neuronx_version", &self.torch_neuronx_version),
            ("neuronx_cc_version", &self.neuronx_cc_version),
            ("python_etcd_version", &self.python_etcd_version),
            ("protobuf_version", &self.protobuf_version),
            (
                "neuronx_nemo_megatron.repository",
                &self.neuronx_nemo_megatron.repository,
            ),
            ("neuron_sdk", &self.neuron_sdk),
        ] {
            check_value(IMAGE, parameter, value)?;
        }
        super::validate_commit(&self.neuronx_nemo_megatron.commit)
    }

    /// The rendered Dockerfile.
    pub fn dockerfile(&self) -> Result<Dockerfile> {
        self.validate()?;
        let mut file = Dockerfile::new();
        file.comment(
            "trnkit training image: Llama-2 pretraining on Trainium with neuronx-nemo-megatron.\n\
             Rendered by trnkit (crate ecr-image, TrainingImage). Every version is pinned; change\n\
             them in the TrainingImage definition, which also changes the content-addressed tag.\n\
             It holds no secret: credentials reach the pods at run time.",
        );
        file.arg("BASE_IMAGE", &self.base_image)
            .from_image("${BASE_IMAGE}")
            .blank();
        file.label([
            ("org.opencontainers.image.title", "trnkit-training"),
            (
                "org.opencontainers.image.description",
                "Llama-2 pretraining on AWS Trainium with neuronx-nemo-megatron and the MPI Operator",
            ),
            ("trnkit.neuron-sdk", self.neuron_sdk.as_str()),
            ("trnkit.neuronx-nemo-megatron.commit", self.neuronx_nemo_megatron.commit.as_str()),
        ]);
        file.arg("DEBIAN_FRONTEND", "noninteractive")
            .arg("PYTHON", &self.python);
        file.env([
            ("PYTHONDONTWRITEBYTECODE", "1"),
            ("PYTHONUNBUFFERED", "1"),
            ("PYTHONIOENCODING", "UTF-8"),
            ("LANG", "C.UTF-8"),
            ("LC_ALL", "C.UTF-8"),
            (
                "LD_LIBRARY_PATH",
                "/opt/aws/neuron/lib:/opt/amazon/efa/lib:/opt/amazon/efa/lib64:/opt/amazon/openmpi/lib64:/usr/local/lib",
            ),
            ("PATH", "/opt/aws/neuron/bin:${PATH}"),
        ]);
        file.blank()
            .comment("Build tools and Python (Ubuntu packages, fixed by the base image's digest).");
        file.run([
            "apt-get update".to_owned(),
            format!(
                "apt-get install -y --no-install-recommends {}",
                APT_PACKAGES.join(" ")
            ),
            "rm -rf /var/lib/apt/lists/*".to_owned(),
        ]);

        file.blank().comment(
            "EFA userspace (libfabric): the kernel driver is on the host. The tarball is checked\n\
             against its GPG signature.",
        );
        file.arg("EFA_INSTALLER_VERSION", &self.efa_installer_version);
        file.run([
            "cd /tmp",
            "curl -fsSLO https://efa-installer.amazonaws.com/aws-efa-installer-${EFA_INSTALLER_VERSION}.tar.gz",
            "curl -fsSLO https://efa-installer.amazonaws.com/aws-efa-installer-${EFA_INSTALLER_VERSION}.tar.gz.sig",
            "curl -fsSL https://efa-installer.amazonaws.com/aws-efa-installer.key | gpg --import",
            "gpg --verify aws-efa-installer-${EFA_INSTALLER_VERSION}.tar.gz.sig aws-efa-installer-${EFA_INSTALLER_VERSION}.tar.gz",
            "tar -xf aws-efa-installer-${EFA_INSTALLER_VERSION}.tar.gz",
            "cd aws-efa-installer",
            "apt-get update",
            "./efa_installer.sh -y -g -d --skip-kmod --skip-limit-conf --no-verify",
            "cd /",
            "rm -rf /tmp/aws-efa-installer* /var/lib/apt/lists/*",
        ]);

        file.blank()
            .comment("Neuron runtime, collectives and tools (no driver: it is on the host).");
        file.arg("NEURON_APT_REPO", &self.neuron_apt_repository)
            .arg("UBUNTU_CODENAME", &self.ubuntu_codename)
            .arg(
                "AWS_NEURONX_RUNTIME_LIB_VERSION",
                &self.neuron_apt.runtime_lib,
            )
            .arg(
                "AWS_NEURONX_COLLECTIVES_VERSION",
                &self.neuron_apt.collectives,
            )
            .arg("AWS_NEURONX_TOOLS_VERSION", &self.neuron_apt.tools);
        file.run([
            "curl -fsSL ${NEURON_APT_REPO}/GPG-PUB-KEY-AMAZON-AWS-NEURON.PUB | gpg --dearmor -o /usr/share/keyrings/neuron.gpg",
            "echo \"deb [signed-by=/usr/share/keyrings/neuron.gpg] ${NEURON_APT_REPO} ${UBUNTU_CODENAME} main\" > /etc/apt/sources.list.d/neuron.list",
            "apt-get update",
            "apt-get install -y --no-install-recommends \
             \"aws-neuronx-runtime-lib=${AWS_NEURONX_RUNTIME_LIB_VERSION}*\" \
             \"aws-neuronx-collectives=${AWS_NEURONX_COLLECTIVES_VERSION}*\" \
             \"aws-neuronx-tools=${AWS_NEURONX_TOOLS_VERSION}*\"",
            "rm -rf /var/lib/apt/lists/*",
        ]);

        file.blank()
            .comment("pip, and the CA bundle where Amazon Linux tools look for it.");
        file.arg("PIP_VERSION", &self.pip_version);
        file.run([
            "${PYTHON} -m pip install --no-cache-dir \"pip==${PIP_VERSION}\"",
            "mkdir -p /etc/pki/tls/certs",
            "cp /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt",
        ]);

        file.blank().comment("PyTorch Neuron.");
        file.arg("NEURON_PIP_REPO", &self.neuron_pip_repository)
            .arg("TORCH_INDEX", &self.torch_index)
            .arg("TORCH_VERSION", &self.torch_version)
            .arg("TORCH_NEURONX_VERSION", &self.torch_neuronx_version)
            .arg("NEURONX_CC_VERSION", &self.neuronx_cc_version)
            .arg("PYTHON_ETCD_VERSION", &self.python_etcd_version);
        file.run([
            "${PYTHON} -m pip config set global.extra-index-url ${NEURON_PIP_REPO}",
            "${PYTHON} -m pip install --no-cache-dir \"torch==${TORCH_VERSION}+cpu\" --index-url ${TORCH_INDEX}",
            "${PYTHON} -m pip install --no-cache-dir \"torch-neuronx==${TORCH_NEURONX_VERSION}\" \
             \"neuronx-cc==${NEURONX_CC_VERSION}\" \"python-etcd==${PYTHON_ETCD_VERSION}\"",
        ]);

        file.blank().comment(
            "Open MPI and sshd for the MPI Operator: the launcher reaches the workers over ssh.",
        );
        file.run([
            "apt-get update",
            "apt-get install -y --no-install-recommends openmpi-bin openssh-client openssh-server",
            "mkdir -p /var/run/sshd",
            "echo \"    UserKnownHostsFile /dev/null\" >> /etc/ssh/ssh_config",
            "echo \"    StrictHostKeyChecking no\" >> /etc/ssh/ssh_config",
            "sed -i 's/#\\(StrictModes \\).*/\\1no/g' /etc/ssh/sshd_config",
            "echo \"export TERM=screen\" >> /root/.bashrc",
            "rm -rf /var/lib/apt/lists/*",
        ]);

        file.blank().comment(
            "neuronx-nemo-megatron at a fixed commit: NeMo and Apex wheels, their requirements, the\n\
             nodelist helper the MPI jobs run, and NeMo's C++ dataset helpers.",
        );
        file.arg(
            "NEURONX_NEMO_MEGATRON_REPOSITORY",
            &self.neuronx_nemo_megatron.repository,
        )
        .arg(
            "NEURONX_NEMO_MEGATRON_COMMIT",
            &self.neuronx_nemo_megatron.commit,
        )
        .arg("PROTOBUF_VERSION", &self.protobuf_version);
        file.run([
            "git init -q /neuronx-nemo-megatron",
            "cd /neuronx-nemo-megatron",
            "git remote add origin ${NEURONX_NEMO_MEGATRON_REPOSITORY}",
            "git fetch -q --depth 1 origin ${NEURONX_NEMO_MEGATRON_COMMIT}",
            "git checkout -q --detach FETCH_HEAD",
            "test \"$(git rev-parse HEAD)\" = \"${NEURONX_NEMO_MEGATRON_COMMIT}\"",
            "bash ./build.sh",
            "${PYTHON} -m pip install --no-cache-dir ./build/*.whl",
            "${PYTHON} -m pip install --no-cache-dir -r requirements.txt \"torch==${TORCH_VERSION}\" \"protobuf==${PROTOBUF_VERSION}\"",
            "cp ./k8s/docker/nodelist_helper.py /",
            "make -C /usr/local/lib/${PYTHON}/dist-packages/nemo/collections/nlp/data/language_modeling/megatron/",
            "rm -rf /root/.cache",
        ]);

        file.blank()
            .comment("git-lfs, to clone datasets from the Hugging Face hub.");
        file.run(["git lfs install"]);
        file.workdir("/").cmd(["/bin/bash"]);
        file.check_no_secrets()?;
        Ok(file)
    }

    /// The rendered image: the Dockerfile alone (nothing is copied from the context).
    pub fn definition(&self) -> Result<ImageDefinition> {
        Ok(ImageDefinition {
            name: IMAGE,
            dockerfile: self.dockerfile()?,
            files: Vec::new(),
        })
    }
}
