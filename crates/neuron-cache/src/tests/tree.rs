//! A builder of cache trees for tests: entries in every state, with controlled lock ages.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The compiler version most test entries use.
pub(super) const VERSION: &str = "2.21.33363.0+82129205";
/// The blueprint's flags key.
pub(super) const FLAGS: &str = "725887e1";
/// A fixed "now" for lock ages.
pub(super) fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

pub(super) struct Tree {
    pub(super) directory: tempfile::TempDir,
}

impl Tree {
    pub(super) fn new() -> Self {
        Self {
            directory: tempfile::tempdir().unwrap(),
        }
    }

    pub(super) fn root(&self) -> &Path {
        self.directory.path()
    }

    /// Creates `neuronxcc-<version>/MODULE_<graph>+<flags>/` with `files` (name, contents).
    pub(super) fn entry(
        &self,
        version: &str,
        graph: &str,
        flags: &str,
        files: &[(&str, &[u8])],
    ) -> PathBuf {
        let path = self
            .root()
            .join(format!("neuronxcc-{version}"))
            .join(format!("MODULE_{graph}+{flags}"));
        fs_err::create_dir_all(&path).unwrap();
        for (name, contents) in files {
            fs_err::write(path.join(name), contents).unwrap();
        }
        path
    }

    /// A tree with entries 1 (complete), 2 (failed), 3 (locked `young` ago) and 4 (locked `old`
    /// ago).
    pub(super) fn with_four_states(young: Duration, old: Duration) -> Self {
        let tree = Self::new();
        tree.complete("00000000000000000001");
        tree.failed("00000000000000000002");
        tree.locked("00000000000000000003", young);
        tree.locked("00000000000000000004", old);
        tree
    }

    pub(super) fn complete(&self, graph: &str) -> PathBuf {
        self.entry(
            VERSION,
            graph,
            FLAGS,
            &[
                ("model.hlo_module.pb", b"hlo"),
                (
                    "compile_flags.json",
                    br#"["--model-type", "transformer", "--distribution-strategy=llm-training", "--enable-mixed-precision-accumulation"]"#,
                ),
                ("model.neff", b"neff-bytes"),
                ("model.done", b""),
            ],
        )
    }

    pub(super) fn failed(&self, graph: &str) -> PathBuf {
        self.entry(
            VERSION,
            graph,
            FLAGS,
            &[
                ("model.hlo_module.pb", b"hlo"),
                ("model.log", b"Failed compilation with ['neuronx-cc', ...]"),
            ],
        )
    }

    /// An entry being compiled, its lock `age` old (relative to [`now`]).
    pub(super) fn locked(&self, graph: &str, age: Duration) -> PathBuf {
        let path = self.entry(
            VERSION,
            graph,
            FLAGS,
            &[
                ("model.hlo_module.pb", b"hlo"),
                ("model.hlo_module.pb.lock", b""),
            ],
        );
        set_age(&path.join("model.hlo_module.pb.lock"), age);
        path
    }
}

pub(super) fn set_age(path: &Path, age: Duration) {
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.set_modified(now() - age).unwrap();
}

pub(super) fn inspect_options() -> crate::InspectOptions {
    crate::InspectOptions {
        stale_after: Duration::from_secs(2 * 3600),
        now: now(),
        threads: 2,
        sizes: true,
    }
}
