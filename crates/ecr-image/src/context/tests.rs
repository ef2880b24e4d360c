//! Unit tests for build contexts: `.dockerignore`, determinism, and the tar written.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;

use super::*;

fn write(root: &Path, relative: &str, text: &str) {
    let path = root.join(relative);
    fs_err::create_dir_all(path.parent().unwrap()).unwrap();
    fs_err::write(path, text).unwrap();
}

fn sample(root: &Path) {
    write(root, "Dockerfile", "FROM scratch\nCOPY app /app\n");
    write(root, "app/main.txt", "hello");
    write(root, "app/data/big.bin", "0123456789");
    write(root, "target/debug/junk", "junk");
    write(root, "target/keep.txt", "kept");
    write(root, "notes.md", "# notes");
    write(root, "docs/guide.md", "guide");
    write(
        root,
        ".dockerignore",
        "# build output\ntarget\n!target/keep.txt\n*.md\nDockerfile\n.dockerignore\n",
    );
}

/// The tar's entries as path -> contents (directories as "<dir>").
fn tar_entries(context: &BuildContext) -> (BTreeMap<String, String>, ContextDigest) {
    let mut bytes = Vec::new();
    let digest = context.write_tar(&mut bytes).unwrap();
    let mut archive = tar::Archive::new(bytes.as_slice());
    let mut entries = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        assert_eq!(entry.header().mtime().unwrap(), 0, "{path}");
        assert_eq!(entry.header().uid().unwrap(), 0, "{path}");
        let mut text = String::new();
        if entry.header().entry_type().is_dir() {
            text.push_str("<dir>");
        } else {
            entry.read_to_string(&mut text).unwrap();
        }
        entries.insert(path, text);
    }
    (entries, digest)
}

#[test]
fn honours_dockerignore_but_always_sends_the_dockerfile_and_dockerignore() {
    let dir = tempfile::tempdir().unwrap();
    sample(dir.path());
    let context = BuildContext::from_directory(dir.path(), None).unwrap();
    assert_eq!(context.dockerfile(), "Dockerfile");
    let paths: Vec<&str> = context.paths().collect();
    assert_eq!(
        paths,
        [
            ".dockerignore",
            "Dockerfile",
            "app",
            "app/data",
            "app/data/big.bin",
            "app/main.txt",
            "docs",
            // `*.md` is anchored at the root: docs/guide.md stays, notes.md goes.
            "docs/guide.md",
            "target/keep.txt",
        ]
    );
    assert_eq!(context.file_count(), 6);

    let (entries, digest) = tar_entries(&context);
    assert_eq!(entries["app/main.txt"], "hello");
    assert_eq!(entries["target/keep.txt"], "kept");
    assert_eq!(entries["app/"], "<dir>");
    assert!(!entries.contains_key("notes.md") && !entries.contains_key("target/debug/junk"));
    assert_eq!(digest, context.digest().unwrap());
}

#[test]
fn the_digest_follows_contents_modes_and_names_but_not_times() {
    let dir = tempfile::tempdir().unwrap();
    sample(dir.path());
    let digest = |root: &Path| {
        BuildContext::from_directory(root, None)
            .unwrap()
            .digest()
            .unwrap()
    };
    let first = digest(dir.path());
    assert!(first.as_str().starts_with("sha256:") && first.as_str().len() == 71);

    // Same files, new modification time: same digest.
    write(dir.path(), "app/main.txt", "hello");
    assert_eq!(digest(dir.path()), first);
    // An ignored file changes nothing.
    write(dir.path(), "target/debug/junk", "other junk");
    assert_eq!(digest(dir.path()), first);

    write(dir.path(), "app/main.txt", "hello!");
    let changed = digest(dir.path());
    assert_ne!(changed, first);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let path = dir.path().join("app/main.txt");
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_ne!(digest(dir.path()), changed);
    }

    fs_err::rename(
        dir.path().join("app/main.txt"),
        dir.path().join("app/renamed.txt"),
    )
    .unwrap();
    assert_ne!(digest(dir.path()), changed);
}

#[test]
fn a_dockerfile_outside_the_context_gets_a_fixed_name() {
    let context_dir = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    write(context_dir.path(), "file.txt", "x");
    write(other.path(), "Build.dockerfile", "FROM scratch\n");
    let context = BuildContext::from_directory(
        context_dir.path(),
        Some(&other.path().join("Build.dockerfile")),
    )
    .unwrap();
    assert_eq!(context.dockerfile(), ".trnkit.Dockerfile");
    let (entries, _) = tar_entries(&context);
    assert_eq!(entries[".trnkit.Dockerfile"], "FROM scratch\n");

    // A Dockerfile inside the context keeps its relative path.
    write(
        context_dir.path(),
        "docker/App.dockerfile",
        "FROM scratch\n",
    );
    let context = BuildContext::from_directory(
        context_dir.path(),
        Some(&context_dir.path().join("docker/App.dockerfile")),
    )
    .unwrap();
    assert_eq!(context.dockerfile(), "docker/App.dockerfile");
}

#[test]
fn missing_context_or_dockerfile_are_specific_errors() {
    let dir = tempfile::tempdir().unwrap();
    let error = BuildContext::from_directory(&dir.path().join("nope"), None).unwrap_err();
    assert!(matches!(error, Error::ContextNotFound { .. }), "{error}");
    let error = BuildContext::from_directory(dir.path(), None).unwrap_err();
    assert!(
        matches!(&error, Error::DockerfileNotFound { path } if path.ends_with("Dockerfile")),
        "{error}"
    );
    assert!(error.to_string().contains("build options"), "{error}");
}

#[test]
fn a_changed_context_is_refused_before_the_tar_is_complete() {
    let dir = tempfile::tempdir().unwrap();
    sample(dir.path());
    let context = BuildContext::from_directory(dir.path(), None).unwrap();
    let before = context.digest().unwrap();
    write(dir.path(), "app/main.txt", "HELLO");
    let error = context
        .write_tar_checked(Vec::new(), Some(&before))
        .unwrap_err();
    assert!(matches!(error, Error::ContextChanged { .. }), "{error}");
    // A file that shrank is refused too (its tar entry would be short).
    write(dir.path(), "app/main.txt", "h");
    let error = context.write_tar(Vec::new()).unwrap_err();
    assert!(matches!(error, Error::ContextChanged { .. }), "{error}");
}

#[test]
fn generated_contexts_are_deterministic() {
    let make = || {
        BuildContext::from_files(
            "test image",
            "FROM scratch\nCOPY b /b\n",
            [
                ContextFile::text("b", "bee", 0o755),
                ContextFile::text("a/x.conf", "x", 0o644),
            ],
        )
        .unwrap()
    };
    let (entries, digest) = tar_entries(&make());
    assert_eq!(
        entries.keys().collect::<Vec<_>>(),
        ["Dockerfile", "a/x.conf", "b"]
    );
    assert_eq!(make().digest().unwrap(), digest);
    let mut first = Vec::new();
    let mut second = Vec::new();
    make().write_tar(&mut first).unwrap();
    make().write_tar(&mut second).unwrap();
    assert_eq!(first, second, "the same files give byte-identical tars");
}
