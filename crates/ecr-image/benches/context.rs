//! Measures how fast a build context is hashed (the cost of a re-run that skips the build) and
//! written as a tar (the cost of streaming it to the engine), on a generated 256 MiB context of
//! 64 files plus 2,000 small ones. Prints the figures; run with `cargo bench -p ecr-image`.

#![allow(clippy::print_stdout)]

use std::io::Write as _;
use std::time::Instant;

use ecr_image::BuildContext;

const BIG_FILES: usize = 64;
const BIG_FILE_BYTES: usize = 4 << 20;
const SMALL_FILES: usize = 2_000;

fn fill(buffer: &mut [u8], mut state: u64) {
    for chunk in buffer.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let bytes = state.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

fn main() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut buffer = vec![0u8; BIG_FILE_BYTES];
    for index in 0..BIG_FILES {
        fill(&mut buffer, index as u64 + 1);
        fs_err::write(dir.path().join(format!("big-{index:03}.bin")), &buffer).expect("write");
    }
    fs_err::create_dir_all(dir.path().join("src/nested")).expect("mkdir");
    for index in 0..SMALL_FILES {
        let mut file =
            fs_err::File::create(dir.path().join(format!("src/nested/file-{index:05}.txt")))
                .expect("create");
        writeln!(file, "small file {index}").expect("write");
    }
    fs_err::write(dir.path().join("Dockerfile"), "FROM scratch\nCOPY . /\n").expect("write");
    fs_err::write(dir.path().join(".dockerignore"), "src/nested/file-0000*\n").expect("write");

    let total = (BIG_FILES * BIG_FILE_BYTES) as f64 / (1 << 20) as f64;
    for round in 1..=3 {
        let started = Instant::now();
        let context = BuildContext::from_directory(dir.path(), None).expect("context");
        let listed = started.elapsed();
        let digest = context.digest().expect("digest");
        let hashed = started.elapsed();
        let tar_started = Instant::now();
        let written = context.write_tar(std::io::sink()).expect("tar");
        let tarred = tar_started.elapsed();
        assert_eq!(digest, written);
        println!(
            "round {round}: {} files, {total:.0} MiB: list {:.1} ms, list+hash {:.0} ms ({:.0} MiB/s), tar+hash {:.0} ms ({:.0} MiB/s)",
            context.file_count(),
            listed.as_secs_f64() * 1e3,
            hashed.as_secs_f64() * 1e3,
            total / hashed.as_secs_f64(),
            tarred.as_secs_f64() * 1e3,
            total / tarred.as_secs_f64(),
        );
    }
}
