//! Tests of atomic writes and of the output directories trnkit may replace.

use std::path::Path;

use super::*;

fn generate(dir: &Path, files: &[(&str, &str)]) -> Result<PathBuf, OutputError> {
    let mut out = OutputDir::begin(dir)?;
    for (name, text) in files {
        out.write(Path::new(name), text)?;
    }
    out.commit()
}

#[test]
fn a_new_directory_is_written_with_its_marker() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("out");
    generate(
        &dir,
        &[("a.yaml", "a"), ("images/training/Dockerfile", "FROM x")],
    )
    .unwrap();
    assert_eq!(fs_err::read_to_string(dir.join("a.yaml")).unwrap(), "a");
    assert_eq!(
        fs_err::read_to_string(dir.join(MARKER)).unwrap(),
        "a.yaml\nimages/training/Dockerfile\n"
    );
}

#[test]
fn a_directory_trnkit_wrote_is_replaced_whole() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("out");
    generate(&dir, &[("old.yaml", "1"), ("keep.yaml", "1")]).unwrap();
    generate(&dir, &[("keep.yaml", "2")]).unwrap();
    assert!(
        !dir.join("old.yaml").exists(),
        "files of the last run that are not written again go"
    );
    assert_eq!(fs_err::read_to_string(dir.join("keep.yaml")).unwrap(), "2");
    let leftovers: Vec<_> = fs_err::read_dir(temp.path()).unwrap().collect();
    assert_eq!(
        leftovers.len(),
        1,
        "no staging or old directory is left beside it"
    );
}

#[test]
fn an_empty_directory_is_used() {
    let temp = tempfile::tempdir().unwrap();
    generate(temp.path(), &[("a.yaml", "a")]).unwrap();
    assert!(temp.path().join("a.yaml").is_file());
}

#[test]
fn a_directory_with_a_file_of_the_user_is_refused_and_left_alone() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("d");
    fs_err::create_dir(&dir).unwrap();
    fs_err::write(dir.join("notes.md"), "mine").unwrap();
    let error = generate(&dir, &[("a.yaml", "a")]).unwrap_err();
    assert!(matches!(&error, OutputError::Foreign { foreign, .. } if foreign == &["notes.md"]));
    assert!(error.to_string().contains("notes.md"), "{error}");
    assert_eq!(
        fs_err::read_to_string(dir.join("notes.md")).unwrap(),
        "mine"
    );
    assert!(!dir.join("a.yaml").exists());
    let siblings: Vec<_> = fs_err::read_dir(temp.path()).unwrap().collect();
    assert_eq!(siblings.len(), 1, "no staging directory is left behind");
}

#[test]
fn a_file_added_inside_a_generated_directory_is_protected() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("out");
    generate(&dir, &[("images/training/Dockerfile", "FROM x")]).unwrap();
    fs_err::write(dir.join("images/training/notes.md"), "mine").unwrap();
    let error = generate(&dir, &[("a.yaml", "a")]).unwrap_err();
    assert!(
        error.to_string().contains("images/training/notes.md"),
        "{error}"
    );
    assert!(dir.join("images/training/notes.md").is_file());
}

#[test]
fn a_repository_root_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    fs_err::create_dir(temp.path().join(".git")).unwrap();
    fs_err::write(temp.path().join(".git/HEAD"), "ref").unwrap();
    for hook in 0..7 {
        fs_err::write(temp.path().join(format!(".git/hook-{hook}")), "x").unwrap();
    }
    let error = generate(temp.path(), &[("a.yaml", "a")]).unwrap_err();
    assert!(error.to_string().contains(".git/HEAD"), "{error}");
    assert!(error.to_string().contains("and 3 more"), "{error}");
    assert!(temp.path().join(".git/HEAD").is_file());
}

#[test]
fn an_existing_file_is_not_turned_into_a_directory() {
    let temp = tempfile::tempdir().unwrap();
    let file = temp.path().join("f");
    fs_err::write(&file, "mine").unwrap();
    let error = generate(&file, &[("a.yaml", "a")]).unwrap_err();
    assert!(matches!(error, OutputError::NotADirectory { .. }));
    assert_eq!(fs_err::read_to_string(&file).unwrap(), "mine");
}

#[test]
fn concurrent_atomic_writes_never_share_a_temporary_file() {
    let temp = tempfile::tempdir().unwrap();
    let path = temp.path().join("state.json");
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let path = path.clone();
            std::thread::spawn(move || {
                let text = format!("{writer}").repeat(100_000);
                for _ in 0..20 {
                    write_atomic(&path, &text).unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let text = fs_err::read_to_string(&path).unwrap();
    let first = text.chars().next().unwrap();
    assert_eq!(text.len(), 100_000);
    assert!(
        text.chars().all(|c| c == first),
        "the file is one writer's whole text"
    );
    let names: Vec<_> = fs_err::read_dir(temp.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "no temporary file is left");
}
