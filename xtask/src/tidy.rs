//! Tidy: the rules of `ARCHITECTURE.md` and `house-style.md` as tests, so that breaking one
//! fails `cargo test` instead of waiting for a review.
//!
//! - no leaf crate depends on another workspace crate (except the dev-only `test-support`, as
//!   a dev-dependency), and nothing depends on `xtask`;
//! - every crate takes the workspace lints and is not published;
//! - every Rust file opens with a `//!` comment;
//! - no library prints: no `println!`/`eprintln!`/`print!`/`dbg!` outside `xtask`;
//! - no `#[should_panic]`, and `#[ignore]` only with a reason naming the service it needs.

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    const LEAVES: [&str; 5] = ["mpijob", "neuron-cache", "fsx", "ecr-image", "pipeline"];
    const WORKSPACE_CRATES: [&str; 7] = [
        "mpijob",
        "neuron-cache",
        "fsx",
        "ecr-image",
        "pipeline",
        "test-support",
        "xtask",
    ];

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("xtask sits in the workspace root")
            .to_owned()
    }

    fn manifest(crate_dir: &Path) -> toml::Table {
        let text = fs_err::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
        text.parse().unwrap()
    }

    fn crate_dirs() -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = fs_err::read_dir(root().join("crates"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.join("Cargo.toml").is_file())
            .collect();
        dirs.push(root().join("xtask"));
        dirs.sort();
        dirs
    }

    fn dependency_names(table: &toml::Table, section: &str) -> Vec<String> {
        table
            .get(section)
            .and_then(|value| value.as_table())
            .map(|deps| deps.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs_err::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path.file_name().is_some_and(|name| name == "target") {
                    continue;
                }
                rust_files(&path, out);
            } else if path.extension().is_some_and(|extension| extension == "rs") {
                out.push(path);
            }
        }
    }

    fn all_rust_files() -> Vec<PathBuf> {
        let mut files = Vec::new();
        for dir in crate_dirs() {
            rust_files(&dir, &mut files);
        }
        files
    }

    #[test]
    fn leaf_crates_depend_on_no_workspace_crate_and_nothing_on_xtask() {
        let mut problems = Vec::new();
        for dir in crate_dirs() {
            let table = manifest(&dir);
            let name = table["package"]["name"].as_str().unwrap().to_owned();
            for section in ["dependencies", "build-dependencies", "dev-dependencies"] {
                for dependency in dependency_names(&table, section) {
                    if dependency == "xtask" {
                        problems.push(format!("{name} depends on xtask ({section})"));
                    }
                    let internal = WORKSPACE_CRATES.contains(&dependency.as_str());
                    let allowed = !LEAVES.contains(&name.as_str())
                        || (dependency == "test-support" && section == "dev-dependencies");
                    if internal && !allowed {
                        problems.push(format!(
                            "leaf crate {name} depends on {dependency} ({section})"
                        ));
                    }
                }
            }
        }
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn every_crate_takes_the_workspace_lints_and_is_not_published() {
        let mut problems = Vec::new();
        for dir in crate_dirs() {
            let table = manifest(&dir);
            let name = table["package"]["name"].as_str().unwrap().to_owned();
            let lints = table
                .get("lints")
                .and_then(|lints| lints.get("workspace"))
                .and_then(toml::Value::as_bool);
            if lints != Some(true) {
                problems.push(format!("{name}: [lints] workspace = true is missing"));
            }
            let publish = &table["package"].get("publish");
            let inherits = publish
                .and_then(|value| value.get("workspace"))
                .and_then(toml::Value::as_bool)
                == Some(true);
            if !inherits && publish.and_then(toml::Value::as_bool) != Some(false) {
                problems.push(format!(
                    "{name}: publish must be false (or publish.workspace = true)"
                ));
            }
        }
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn every_rust_file_opens_with_a_module_doc() {
        let problems: Vec<String> = all_rust_files()
            .into_iter()
            .filter(|path| {
                let text = fs_err::read_to_string(path).unwrap();
                !text.trim_start().starts_with("//!")
            })
            .map(|path| path.strip_prefix(root()).unwrap().display().to_string())
            .collect();
        assert!(
            problems.is_empty(),
            "files without a `//!` header: {problems:#?}"
        );
    }

    #[test]
    fn libraries_do_not_print() {
        let mut problems = Vec::new();
        for dir in crate_dirs() {
            if dir.ends_with("xtask") || dir.ends_with("test-support") {
                continue;
            }
            let mut files = Vec::new();
            rust_files(&dir.join("src"), &mut files);
            for path in files {
                let relative = path.strip_prefix(root()).unwrap().display().to_string();
                if relative.contains("/tests") || relative.ends_with("tests.rs") {
                    continue;
                }
                let text = fs_err::read_to_string(&path).unwrap();
                for (number, line) in text.lines().enumerate() {
                    let code = line.split("//").next().unwrap_or_default();
                    for banned in ["println!", "eprintln!", "print!(", "eprint!(", "dbg!("] {
                        if code.contains(banned) {
                            problems.push(format!("{relative}:{}: {banned}", number + 1));
                        }
                    }
                }
            }
        }
        assert!(
            problems.is_empty(),
            "libraries print through tracing or return values: {problems:#?}"
        );
    }

    #[test]
    fn no_should_panic_and_ignore_only_for_an_outside_service() {
        let mut problems = Vec::new();
        for path in all_rust_files() {
            let relative = path.strip_prefix(root()).unwrap().display().to_string();
            if relative.ends_with("tidy.rs") {
                continue;
            }
            let text = fs_err::read_to_string(&path).unwrap();
            for (number, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.starts_with("#[should_panic") {
                    problems.push(format!("{relative}:{}: #[should_panic]", number + 1));
                }
                if line.starts_with("#[ignore") && !line.starts_with("#[ignore = \"needs ") {
                    problems.push(format!(
                        "{relative}:{}: #[ignore] without `= \"needs <service>: ...\"`",
                        number + 1
                    ));
                }
            }
        }
        assert!(problems.is_empty(), "{problems:#?}");
    }
}
