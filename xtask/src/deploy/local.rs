//! The embedded local profile: with no cluster configured, `deploy` does here what can run
//! here, for real, and plans the rest.
//!
//! - storage: lays out `<work_dir>/shared` exactly like `/shared`;
//! - staging: writes a generated sample corpus, trains a small tokenizer on it, merges the
//!   JSONL files as the blueprint does and tokenizes them with the real pipeline;
//! - compile: lays out the compile cache and inspects it with `neuron-cache`, as the cluster
//!   step does before deciding whether the compile job must run;
//! - images, train, TensorBoard, follow: rendered and validated (by `deploy` before the run),
//!   reported as what the cluster would do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use fsx::SharedLayout;

use super::plan::{Step, StepId};
use super::run::{Executor, StepOutput};
use super::sample;
use super::state::StepRecord;
use crate::config::Config;

/// Sample size: files x documents per file. About 1.5 MB of text.
const SAMPLE_FILES: usize = 4;
const SAMPLE_DOCUMENTS: usize = 1500;
const SAMPLE_SEED: u64 = 1234;
const SAMPLE_VOCAB: usize = 2000;

/// Runs the local profile's steps.
pub struct LocalExecutor {
    /// The configuration.
    pub config: Config,
    /// The local mirror of `/shared`.
    pub layout: SharedLayout,
    /// Where manifests and Dockerfiles were written.
    pub work_dir: PathBuf,
    /// Tokenization threads.
    pub workers: usize,
}

fn sha256_file(path: &Path) -> anyhow::Result<String> {
    Ok(pipeline::stage::sha256_file(path)?.0)
}

/// The name of the mark the compile step leaves in the cache it inspected (`neuron-cache`
/// passes over the root's `.trnkit-` files).
const CACHE_MARK: &str = ".trnkit-inspected";

/// Marks the cache directory the compile step inspected with a value unique to this
/// inspection, and returns it: a cache deleted and laid out again has no mark (an inode number
/// would not do: a new directory may get the old one's).
fn mark_directory(path: &Path) -> anyhow::Result<String> {
    let mark = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or_default()
    );
    crate::files::write_atomic(&path.join(CACHE_MARK), &mark)?;
    Ok(mark)
}

/// The mark [`mark_directory`] left, if it is still there.
fn directory_mark(path: &Path) -> Option<String> {
    fs_err::read_to_string(path.join(CACHE_MARK)).ok()
}

/// The directories the storage step lays out; a later run re-lays them out when one is gone.
fn storage_dirs(layout: &SharedLayout) -> [PathBuf; 3] {
    [
        layout.data_dir(),
        layout.experiments(),
        layout.compile_cache(),
    ]
}

impl LocalExecutor {
    /// Every file the staging step produces: the tokenized datasets, the tokenizer's files and
    /// the training code's place. Each is recorded with its SHA-256, and the step is up to date
    /// only while every one of them is still there, unchanged.
    fn staging_outputs(&self) -> anyhow::Result<Vec<PathBuf>> {
        let mut outputs = Vec::new();
        for key in &self.config.data.json_keys {
            let prefix = self.layout.dataset_prefix(key)?;
            for extension in ["bin", "idx"] {
                let mut name = prefix.clone().into_os_string();
                name.push(format!(".{extension}"));
                outputs.push(PathBuf::from(name));
            }
        }
        let mut tokenizer_files: Vec<PathBuf> = fs_err::read_dir(self.layout.tokenizer_dir())?
            .map(|entry| entry.map(|entry| entry.path()))
            .collect::<Result<_, _>>()?;
        tokenizer_files.retain(|path| path.is_file());
        tokenizer_files.sort();
        outputs.extend(tokenizer_files);
        outputs.push(self.checkout_marker());
        Ok(outputs)
    }

    fn checkout_marker(&self) -> PathBuf {
        self.layout.code_checkout().join("TRNKIT_LOCAL_PROFILE.txt")
    }

    fn staging(&self) -> anyhow::Result<StepOutput> {
        let layout = &self.layout;
        let corpus = sample::write_corpus(
            &layout.raw_data_dir(),
            SAMPLE_FILES,
            SAMPLE_DOCUMENTS,
            SAMPLE_SEED,
        )
        .context("cannot write the sample corpus")?;
        sample::train_tokenizer(&corpus, &layout.tokenizer_dir(), SAMPLE_VOCAB)
            .context("cannot train the sample tokenizer")?;

        // Merge the files in sorted order, as the blueprint's `cat *.jsonl` does.
        let merged = layout.merged_jsonl();
        pipeline::stage::merge_jsonl(&corpus, &merged)?;

        // The training code is checked out inside the cluster; locally its place is laid out.
        fs_err::create_dir_all(layout.training_workdir())?;
        crate::files::write_atomic(
            &self.checkout_marker(),
            format!(
                "In the cluster, the staging job checks out neuronx-nemo-megatron {} here.\n",
                self.config.image.nemo_ref
            ),
        )?;

        let mode = self.config.data.pipeline_mode();
        let tokenizer = pipeline::Tokenizer::from_path(
            &layout.tokenizer_dir(),
            mode,
            self.config.data.need_pad_id,
        )?;
        let mut tokenize = pipeline::TokenizeConfig::new(
            vec![merged.display().to_string()],
            layout.output_prefix(),
        );
        tokenize.json_keys = self.config.data.json_keys.clone();
        tokenize.mode = mode;
        tokenize.append_eod = self.config.data.append_eod;
        tokenize.workers = self.workers.max(1);
        let report = pipeline::tokenize(&tokenize, &tokenizer, &pipeline::NoProgress)?;

        let mut outputs = BTreeMap::new();
        for path in self.staging_outputs()? {
            outputs.insert(path.display().to_string(), sha256_file(&path)?);
        }
        Ok(StepOutput {
            summary: format!(
                "{} documents, {} tokens from {} sample files into {}",
                report.documents,
                report.tokens,
                corpus.len(),
                layout.output_prefix().display()
            ),
            outputs,
        })
    }

    fn compile(&self) -> anyhow::Result<StepOutput> {
        let root = self.layout.compile_cache();
        fs_err::create_dir_all(&root)?;
        // The same question the cluster's cache check asks: the effective flags, under the
        // training image's compiler.
        let flags = neuron_cache::parse_neuron_cc_flags(crate::checks::effective_neuron_cc_flags(
            &self.config.training,
        ))?;
        let compiler = crate::images::training_image(&self.config).neuronx_cc_version;
        let report = neuron_cache::inspect(&root, &neuron_cache::InspectOptions::default())?;
        let coverage =
            neuron_cache::coverage(&report, &flags.key(), &flags.legacy_key(), Some(&compiler));
        let summary = if self.config.training.force_compile {
            format!(
                "force_compile is set: in the cluster the compile job {} would run whatever the cache holds ({})",
                self.config.training.compile_job_name,
                coverage.verdict()
            )
        } else if coverage.is_ready() {
            format!(
                "the compile cache holds {} complete entries for flags key {}: the compile job would be skipped",
                coverage.complete,
                flags.key()
            )
        } else {
            format!(
                "the compile cache at {} holds no complete entry for flags key {}: in the cluster the compile job {} would run",
                root.display(),
                flags.key(),
                self.config.training.compile_job_name
            )
        };
        Ok(StepOutput {
            summary,
            outputs: BTreeMap::from([
                ("flags_key".to_owned(), flags.key()),
                ("cache_root".to_owned(), mark_directory(&root)?),
            ]),
        })
    }
}

impl LocalExecutor {
    /// A copy for a blocking thread (the executor's fields are plain values).
    fn detached(&self) -> Self {
        Self {
            config: self.config.clone(),
            layout: self.layout.clone(),
            work_dir: self.work_dir.clone(),
            workers: self.workers,
        }
    }
}

impl Executor for LocalExecutor {
    async fn execute(
        &mut self,
        step: &Step,
        _previous: Option<&StepRecord>,
    ) -> anyhow::Result<StepOutput> {
        let rendered = |what: &str| StepOutput {
            summary: format!(
                "{what} (rendered and validated under {}; nothing applied locally)",
                self.work_dir.display()
            ),
            outputs: BTreeMap::new(),
        };
        match step.id {
            StepId::Preflight => {
                fs_err::create_dir_all(&self.work_dir)?;
                Ok(StepOutput {
                    summary: "local profile: no cluster configured (cluster.target = \"local\"); cluster steps are planned and rendered, not applied".to_owned(),
                    outputs: BTreeMap::new(),
                })
            }
            StepId::Images => Ok(rendered(&format!("{} Dockerfiles", step.actions.len()))),
            StepId::Storage => {
                for dir in storage_dirs(&self.layout) {
                    fs_err::create_dir_all(&dir)?;
                }
                Ok(StepOutput {
                    summary: format!("laid out {} like /shared", self.layout.root().display()),
                    outputs: BTreeMap::new(),
                })
            }
            StepId::Staging => {
                let executor = self.detached();
                tokio::task::spawn_blocking(move || executor.staging()).await?
            }
            StepId::Compile => {
                let executor = self.detached();
                tokio::task::spawn_blocking(move || executor.compile()).await?
            }
            StepId::Train => Ok(rendered(&format!(
                "the MPIJob {}",
                self.config.training.train_job_name
            ))),
            StepId::Tensorboard => Ok(rendered("TensorBoard's Deployment and Services")),
            StepId::Follow => Ok(StepOutput {
                summary: format!(
                    "in the cluster: follow the launcher of {} and {}/<run name>/0/log",
                    self.config.training.train_job_name,
                    self.layout
                        .rebase(SharedLayout::IN_CLUSTER_ROOT)
                        .experiments()
                        .display()
                ),
                outputs: BTreeMap::new(),
            }),
        }
    }

    /// What each step left must still be there: the storage step's directories, every file
    /// staging produced (unchanged), the compile cache. Otherwise the step runs again.
    async fn still_valid(&mut self, step: &Step, record: &StepRecord) -> bool {
        match step.id {
            StepId::Storage => storage_dirs(&self.layout).iter().all(|dir| dir.is_dir()),
            StepId::Staging => {
                let outputs = record.outputs.clone();
                let check = move || {
                    !outputs.is_empty()
                        && outputs.iter().all(|(path, digest)| {
                            sha256_file(Path::new(path)).is_ok_and(|actual| &actual == digest)
                        })
                };
                tokio::task::spawn_blocking(check).await.unwrap_or(false)
            }
            StepId::Compile => record.outputs.get("cache_root").is_some_and(|recorded| {
                directory_mark(&self.layout.compile_cache()).is_some_and(|mark| &mark == recorded)
            }),
            _ => true,
        }
    }
}
