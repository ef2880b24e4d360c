//! The staging image: trnkit's own `trnkit-stage` binary (tokenizer and dataset download,
//! JSONL merge, tokenization into Megatron's indexed format) on a small Debian base, to stage
//! data inside the cluster next to FSx.
//!
//! The binary is built on the workstation (`cargo build -p xtask --bin trnkit-stage`) and
//! copied in, so the image needs no Rust toolchain. It must be a Linux x86-64 executable linked
//! against a glibc no newer than the base image's (Debian 12: glibc 2.36), or statically
//! linked (`--target x86_64-unknown-linux-musl`).

use std::io::Read as _;
use std::path::{Path, PathBuf};

use crate::context::{ContextFile, FileSource};
use crate::dockerfile::Dockerfile;
use crate::error::{Error, Result};
use crate::images::{ImageDefinition, check_pinned_image};

const IMAGE: &str = "stager";

/// The binary's name in the build context.
pub const STAGE_BINARY_NAME: &str = "trnkit-stage";
/// Where the binary is installed in the image (also its entrypoint).
pub const STAGER_BINARY_PATH: &str = "/usr/local/bin/trnkit-stage";

/// The staging image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagerImage {
    /// The base image, pinned by digest.
    pub base_image: String,
    /// The `trnkit-stage` executable to copy in.
    pub binary: PathBuf,
}

impl StagerImage {
    /// The staging image for `binary`, on Debian 12 (bookworm) slim pinned by digest.
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        Self {
            base_image: "public.ecr.aws/docker/library/debian:bookworm-20260918-slim@sha256:\
                         3783cc01769c7b2b1b83a5c5ad96c815348e28ed7da68e2e3687004faa906251"
                .to_owned(),
            binary: binary.into(),
        }
    }

    /// The rendered Dockerfile (does not look at the binary).
    pub fn dockerfile(&self) -> Result<Dockerfile> {
        check_pinned_image(IMAGE, "base_image", &self.base_image)?;
        let mut file = Dockerfile::new();
        file.comment(
            "trnkit staging image: the trnkit-stage binary, which downloads and tokenizes the\n\
             dataset inside the cluster. Rendered by trnkit (crate ecr-image, StagerImage).\n\
             It holds no secret: a Hugging Face token, if needed, comes from a Kubernetes Secret.",
        );
        file.arg("BASE_IMAGE", &self.base_image)
            .from_image("${BASE_IMAGE}")
            .blank();
        file.label([
            ("org.opencontainers.image.title", "trnkit-stager"),
            (
                "org.opencontainers.image.description",
                "trnkit's dataset staging and tokenization tool",
            ),
        ]);
        file.arg("DEBIAN_FRONTEND", "noninteractive");
        file.comment("CA certificates for HTTPS downloads.");
        file.run([
            "apt-get update",
            "apt-get install -y --no-install-recommends ca-certificates",
            "rm -rf /var/lib/apt/lists/*",
        ]);
        file.copy(STAGE_BINARY_NAME, STAGER_BINARY_PATH);
        file.entrypoint([STAGER_BINARY_PATH]);
        file.check_no_secrets()?;
        Ok(file)
    }

    /// The rendered image: the Dockerfile and the binary (checked to be a Linux x86-64
    /// executable).
    pub fn definition(&self) -> Result<ImageDefinition> {
        check_linux_x86_64_executable(&self.binary)?;
        Ok(ImageDefinition {
            name: IMAGE,
            dockerfile: self.dockerfile()?,
            files: vec![ContextFile {
                path: STAGE_BINARY_NAME.to_owned(),
                source: FileSource::Path(self.binary.clone()),
                mode: 0o755,
            }],
        })
    }
}

/// Checks the ELF header: 64-bit, little-endian, x86-64, executable or shared object.
fn check_linux_x86_64_executable(path: &Path) -> Result<()> {
    let invalid = |reason: &str| Error::InvalidInputFile {
        image: IMAGE.to_owned(),
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let mut header = [0u8; 20];
    let mut file = fs_err::File::open(path).map_err(|source| Error::ReadContext {
        path: path.to_owned(),
        source,
    })?;
    file.read_exact(&mut header)
        .map_err(|_| invalid("it is too short to be an executable"))?;
    if &header[..4] != b"\x7fELF" {
        return Err(invalid(
            "it is not an ELF executable: build trnkit-stage for Linux",
        ));
    }
    if header[4] != 2 || header[5] != 1 {
        return Err(invalid("it is not a 64-bit little-endian ELF file"));
    }
    let kind = u16::from_le_bytes([header[16], header[17]]);
    if kind != 2 && kind != 3 {
        return Err(invalid(
            "it is not an executable (ELF type is neither EXEC nor DYN)",
        ));
    }
    let machine = u16::from_le_bytes([header[18], header[19]]);
    if machine != 0x3e {
        return Err(invalid(
            "it is not built for x86-64: build with --target x86_64-unknown-linux-gnu",
        ));
    }
    Ok(())
}
