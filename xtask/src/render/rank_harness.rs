//! Test harness: run what a rank of a rendered MPIJob runs, on copies of the real training
//! scripts in a sandbox directory, with `mpirun`'s environment reproduced. The render tests
//! (flags reach the compiler) and the run-identity tests (the run resumes in its directory)
//! both drive the real scripts through it; each lays out its own sandbox and stubs, whose
//! output file (`$SEEN`) this returns.

use std::path::Path;

use super::Manifest;

/// The launcher's `mpirun` argv and its plain env of a rendered MPIJob.
pub(crate) fn launcher(manifest: &Manifest) -> (Vec<String>, Vec<(String, String)>) {
    let container =
        &manifest.value["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0];
    let command = container["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|word| word.as_str().unwrap().to_owned())
        .collect();
    let env = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|variable| {
            Some((
                variable["name"].as_str()?.to_owned(),
                variable["value"].as_str()?.to_owned(),
            ))
        })
        .collect();
    (command, env)
}

/// Runs the program `mpirun` would start for a rank of `manifest`, in `dir` (`trnkit-rank`
/// copied there; `through_wrapper = false` runs the script directly, as the blueprint does),
/// with the `-x` variables `mpirun` passes plus `rank_env` (the launcher pod's `POD_UID` is
/// `launcher_uid`), the stubs of `dir/stubs` first on the `PATH`; returns what the stubs wrote
/// to `$SEEN`.
pub(crate) fn run_rank(
    manifest: &Manifest,
    dir: &Path,
    through_wrapper: bool,
    mut rank_env: Vec<(String, String)>,
    launcher_uid: Option<&str>,
) -> String {
    let (command, env) = launcher(manifest);
    // mpirun [options] -wdir DIR PROGRAM ARGS...; -x NAME=VALUE sets, -x NAME forwards.
    let wdir = command.iter().position(|word| word == "-wdir").unwrap();
    let mut program: Vec<String> = command[wdir + 2..].to_vec();
    assert_eq!(program[0], super::rank::PATH, "{command:?}");
    program[0] = dir.join("trnkit-rank").display().to_string();
    if !through_wrapper {
        program.remove(0);
    }
    let mut words = command.iter();
    while let Some(word) = words.next() {
        if word != "-x" {
            continue;
        }
        let variable = words.next().unwrap();
        match (variable.split_once('='), launcher_uid) {
            (Some((name, value)), _) => rank_env.push((name.to_owned(), value.to_owned())),
            // POD_UID comes from the launcher pod's metadata.uid (the downward API).
            (None, Some(uid)) if variable == "POD_UID" => {
                rank_env.push((variable.clone(), uid.to_owned()));
            }
            (None, _) => {
                if let Some((_, value)) = env.iter().find(|(name, _)| name == variable) {
                    rank_env.push((variable.clone(), value.clone()));
                }
            }
        }
    }
    let seen = dir.join("seen");
    let _ = fs_err::remove_file(&seen);
    #[allow(clippy::disallowed_methods)]
    let status = std::process::Command::new("bash")
        .arg("-c")
        // `ulimit -n 65535` in train_setup.sh may exceed this machine's hard limit.
        .arg("ulimit() { :; }; export -f ulimit; exec \"$@\"")
        .arg("rank")
        .args(&program)
        .current_dir(dir)
        .env_clear()
        .env(
            "PATH",
            format!("{}:/usr/bin:/bin", dir.join("stubs").display()),
        )
        .env("HOME", dir)
        .env("SEEN", &seen)
        .envs(rank_env)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "{program:?} failed: {status}");
    fs_err::read_to_string(&seen).unwrap()
}
