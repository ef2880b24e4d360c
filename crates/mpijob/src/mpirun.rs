//! The launcher's `mpirun` command, assembled from typed parts.
//!
//! `-np` is never typed by hand: it is derived from the worker count and the slots per worker
//! when the command is rendered.

use serde::{Deserialize, Serialize};

/// An `mpirun` command line (Open MPI spelling).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mpirun {
    /// `--allow-run-as-root` (the Neuron images run as root).
    pub allow_run_as_root: bool,
    /// `-bind-to <value>`; the blueprint uses `none`.
    pub bind_to: Option<String>,
    /// `-map-by <value>`; the blueprint uses `slot`.
    pub map_by: Option<String>,
    /// Further `mpirun` options, one word each, placed before the `-x` options.
    pub extra_args: Vec<String>,
    /// `-x NAME`: variables of the launcher's environment forwarded to every rank.
    pub forward_env: Vec<String>,
    /// `-x NAME=VALUE`: variables set for every rank.
    pub set_env: Vec<(String, String)>,
    /// `-wdir <dir>`: the ranks' working directory.
    pub workdir: Option<String>,
    /// The program every rank runs, such as `./llama_7b.sh`.
    pub program: String,
    /// The program's arguments.
    pub args: Vec<String>,
}

impl Mpirun {
    /// A command that runs `program` with the blueprint's options
    /// (`--allow-run-as-root -bind-to none -map-by slot`).
    pub fn new(program: impl Into<String>) -> Self {
        Self {
            allow_run_as_root: true,
            bind_to: Some("none".to_owned()),
            map_by: Some("slot".to_owned()),
            extra_args: Vec::new(),
            forward_env: Vec::new(),
            set_env: Vec::new(),
            workdir: None,
            program: program.into(),
            args: Vec::new(),
        }
    }

    /// The argv, with `-np` set to `processes`.
    pub fn argv(&self, processes: i32) -> Vec<String> {
        let mut argv = vec!["mpirun".to_owned()];
        if self.allow_run_as_root {
            argv.push("--allow-run-as-root".to_owned());
        }
        argv.extend(["-np".to_owned(), processes.to_string()]);
        if let Some(bind_to) = &self.bind_to {
            argv.extend(["-bind-to".to_owned(), bind_to.clone()]);
        }
        if let Some(map_by) = &self.map_by {
            argv.extend(["-map-by".to_owned(), map_by.clone()]);
        }
        argv.extend(self.extra_args.iter().cloned());
        for name in &self.forward_env {
            argv.extend(["-x".to_owned(), name.clone()]);
        }
        for (name, value) in &self.set_env {
            argv.extend(["-x".to_owned(), format!("{name}={value}")]);
        }
        if let Some(workdir) = &self.workdir {
            argv.extend(["-wdir".to_owned(), workdir.clone()]);
        }
        argv.push(self.program.clone());
        argv.extend(self.args.iter().cloned());
        argv
    }
}

/// Reads `-np N` (or `-n`, `--np`, `-np=N`) from an `mpirun` argv, if present.
pub fn processes_in(argv: &[String]) -> Option<Result<i32, String>> {
    let mut words = argv.iter();
    while let Some(word) = words.next() {
        let value = match word.as_str() {
            "-np" | "--np" | "-n" | "--n" => words.next().map(String::as_str),
            other => match other.split_once('=') {
                Some(("-np" | "--np" | "-n" | "--n", value)) => Some(value),
                _ => continue,
            },
        };
        return Some(match value {
            Some(value) => value
                .parse::<i32>()
                .map_err(|_| format!("-np {value:?} is not a whole number")),
            None => Err("-np has no value".to_owned()),
        });
    }
    None
}
