//! The list of script variables, derived from copies of the real scripts.

use super::{SCRIPT_VARIABLES, SCRIPTS, ScriptVariable};

/// The three scripts at the pinned commit, unmodified (Apache-2.0, `tests/data/upstream/`).
pub(crate) const SOURCES: [(&str, &str); 3] = [
    (
        "llama_7b.sh",
        include_str!("../../../tests/data/upstream/llama_7b.sh"),
    ),
    (
        "test_llama.sh",
        include_str!("../../../tests/data/upstream/test_llama.sh"),
    ),
    (
        "train_setup.sh",
        include_str!("../../../tests/data/upstream/train_setup.sh"),
    ),
];

/// The branches an EKS MPIJob's ranks take: mpirun sets `OMPI_COMM_WORLD_RANK`, and
/// `train_setup.sh` sets `training_precision="bf16SR"` just before it tests it.
const TAKEN: &[&str] = &[
    "[ -v OMPI_COMM_WORLD_RANK ]",
    "[[ $training_precision == \"bf16SR\" ]]",
];

/// The branch only the compile job takes (`-x COMPILE=1`).
const COMPILE_ONLY: &str = "[ \"$COMPILE\" = \"1\" ]";

/// One assignment found in a script, with the conditions of the `if` blocks around it.
#[derive(Debug)]
struct Assignment {
    name: String,
    line: u32,
    conditions: Vec<String>,
    default_only: bool,
}

fn is_name(text: &str) -> bool {
    text.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The condition of `if COND; then` / `elif COND` (with `then` here or on the next line).
fn condition(rest: &str) -> String {
    let rest = rest.trim();
    let rest = rest.strip_suffix("then").unwrap_or(rest).trim_end();
    rest.strip_suffix(';').unwrap_or(rest).trim().to_owned()
}

/// Every `NAME=`, `export NAME=` and `: ${NAME:=…}` of a shell script, with its `if` context.
fn assignments(text: &str) -> Vec<Assignment> {
    let mut found = Vec::new();
    let mut frames: Vec<String> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = u32::try_from(index + 1).expect("short scripts");
        let code = raw.trim();
        if code.is_empty() || code.starts_with('#') {
            continue;
        }
        let first = code.split_whitespace().next().unwrap_or("");
        match first {
            "if" => {
                frames.push(condition(&code[2..]));
                continue;
            }
            "elif" => {
                if let Some(frame) = frames.last_mut() {
                    *frame = condition(&code[4..]);
                }
                continue;
            }
            "else" => {
                if let Some(frame) = frames.last_mut() {
                    *frame = "else".to_owned();
                }
                continue;
            }
            "fi" => {
                frames.pop();
                continue;
            }
            _ => {}
        }
        if let Some(rest) = code.strip_prefix(": ${") {
            let end = rest.find([':', '=', '}']).unwrap_or(rest.len());
            if is_name(&rest[..end]) {
                found.push(Assignment {
                    name: rest[..end].to_owned(),
                    line,
                    conditions: frames.clone(),
                    default_only: true,
                });
            }
            continue;
        }
        let code = code.strip_prefix("export ").unwrap_or(code).trim_start();
        if let Some((name, _)) = code.split_once('=')
            && is_name(name)
        {
            found.push(Assignment {
                name: name.to_owned(),
                line,
                conditions: frames.clone(),
                default_only: false,
            });
        }
    }
    found
}

/// The assignments that overwrite a variable on an EKS MPIJob's path, in the compiled list's
/// form.
fn derived() -> Vec<ScriptVariable> {
    let mut out = Vec::new();
    for (script, text) in SOURCES {
        for assignment in assignments(text) {
            if assignment.default_only {
                continue;
            }
            let taken = assignment
                .conditions
                .iter()
                .all(|c| TAKEN.contains(&c.as_str()) || c == COMPILE_ONLY);
            if !taken {
                continue;
            }
            out.push(ScriptVariable {
                name: String::leak(assignment.name),
                script,
                line: assignment.line,
                compile_only: assignment.conditions.iter().any(|c| c == COMPILE_ONLY),
            });
        }
    }
    out
}

#[test]
fn the_list_is_derived_from_the_scripts() {
    let derived = derived();
    let listed: Vec<String> = derived
        .iter()
        .map(|v| {
            let kind = if v.compile_only { "compile" } else { "always" };
            format!("    {kind}({:?}, {:?}, {}),", v.name, v.script, v.line)
        })
        .collect();
    assert_eq!(
        SCRIPT_VARIABLES,
        derived.as_slice(),
        "the list of script variables is out of date; it should read:\n{}",
        listed.join("\n")
    );
}

#[test]
fn the_branches_the_list_assumes_are_in_the_scripts() {
    let setup = SOURCES[2].1;
    for condition in TAKEN.iter().chain([&COMPILE_ONLY]) {
        assert!(
            setup.contains(condition),
            "{condition} is not in train_setup.sh"
        );
    }
    assert!(setup.contains("\ntraining_precision=\"bf16SR\"\n"));
    assert!(SOURCES[0].1.contains("\n./test_llama.sh\n"));
    assert!(SOURCES[1].1.contains("\nsource ./train_setup.sh\n"));
    assert_eq!(SOURCES.map(|(name, _)| name), SCRIPTS);
}

#[test]
fn the_parser_tells_assignments_from_defaults_and_branches() {
    let found = assignments(
        "export A=1\nB=2 # note\n: ${C:=3}\nif [ -v X ]\nthen\n  export D=4\nelif [ -v Y ]; then\n  E=5\nelse\n  F=6\nfi\n# G=7\n",
    );
    let summary: Vec<(String, u32, Vec<String>, bool)> = found
        .into_iter()
        .map(|a| (a.name, a.line, a.conditions, a.default_only))
        .collect();
    assert_eq!(
        summary,
        [
            ("A".to_owned(), 1, vec![], false),
            ("B".to_owned(), 2, vec![], false),
            ("C".to_owned(), 3, vec![], true),
            ("D".to_owned(), 6, vec!["[ -v X ]".to_owned()], false),
            ("E".to_owned(), 8, vec!["[ -v Y ]".to_owned()], false),
            ("F".to_owned(), 10, vec!["else".to_owned()], false),
        ]
    );
}

#[test]
fn the_scripts_overwrite_what_the_issue_names() {
    use super::overwritten;
    for name in [
        "NEURON_CC_FLAGS",
        "TP",
        "SEQ_LENGTH",
        "FI_PROVIDER",
        "XLA_USE_BF16",
        "NEURON_RT_EXEC_TIMEOUT",
        "MALLOC_ARENA_MAX",
    ] {
        assert!(overwritten(name, "./llama_7b.sh").is_some(), "{name}");
    }
    // Defaults and the compile job's own settings are not overwritten for the train job.
    for name in ["GBS", "TRAIN_ITERS", "UBS", "XLA_DOWNCAST_BF16"] {
        assert_eq!(overwritten(name, "./llama_7b.sh"), None, "{name}");
    }
    // test_llama.sh only defaults SEQ_LENGTH; llama_7b.sh exports it.
    assert_eq!(overwritten("SEQ_LENGTH", "./test_llama.sh"), None);
    assert!(overwritten("NEURON_CC_FLAGS", "./test_llama.sh").is_some());
}
