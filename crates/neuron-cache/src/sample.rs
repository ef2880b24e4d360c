//! A synthetic compile cache, for benchmarks and demonstrations: `count` entries over two
//! compiler versions, 90 % complete, 5 % failed, 3 % locked and 2 % incomplete, each file ten
//! bytes. `cargo bench -p neuron-cache` and `cargo xtask bench cache` inspect one.

use std::path::Path;

use crate::{Error, Result};

/// The files of entry `index` (its state follows from `index % 100`).
fn files(index: usize) -> &'static [&'static str] {
    match index % 100 {
        0..=89 => &[
            "model.hlo_module.pb",
            "compile_flags.json",
            "model.neff",
            "model.done",
        ],
        90..=94 => &["model.hlo_module.pb", "compile_flags.json", "model.log"],
        95..=97 => &[
            "model.hlo_module.pb",
            "compile_flags.json",
            "model.hlo_module.pb.lock",
        ],
        _ => &["model.hlo_module.pb"],
    }
}

/// How many files [`generate`] writes for `count` entries.
pub fn file_count(count: usize) -> usize {
    (0..count).map(|index| files(index).len()).sum()
}

/// Writes `count` entries under `root` on every core; returns how many files it wrote.
pub fn generate(root: &Path, count: usize) -> Result<usize> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let write = |worker: usize| -> Result<()> {
        for index in (worker..count).step_by(threads) {
            let version = if index % 10 == 0 {
                "2.20.0.0+aaaaaaaa"
            } else {
                "2.21.33363.0+82129205"
            };
            let entry = root
                .join(format!("neuronxcc-{version}"))
                .join(format!("MODULE_{index:020}+725887e1"));
            fs_err::create_dir_all(&entry).map_err(|source| Error::WriteSample {
                path: entry.clone(),
                source,
            })?;
            for file in files(index) {
                let path = entry.join(file);
                fs_err::write(&path, b"0123456789").map_err(|source| Error::WriteSample {
                    path: path.clone(),
                    source,
                })?;
            }
        }
        Ok(())
    };
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|worker| scope.spawn(move || write(worker)))
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().unwrap_or(Ok(())))
            .collect::<Result<Vec<()>>>()
    })?;
    Ok(file_count(count))
}

#[cfg(test)]
mod tests {
    use crate::{InspectOptions, State};

    #[test]
    fn the_sample_has_the_documented_mix_of_states() {
        let dir = tempfile::tempdir().unwrap();
        let files = super::generate(dir.path(), 200).unwrap();
        assert_eq!(files, super::file_count(200));
        let report = crate::inspect(dir.path(), &InspectOptions::default()).unwrap();
        assert_eq!(report.summary.entries, 200);
        assert_eq!(report.summary.count(State::Complete), 180);
        assert_eq!(report.summary.count(State::Failed), 10);
        assert_eq!(report.summary.count(State::Incomplete), 4);
    }
}
