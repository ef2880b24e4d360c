//! Inspection of generated trees: every state, both file-name generations, and hostile trees
//! (symbolic links in and out of the root, unreadable folders, garbage names, half-written
//! entries). Also the stable `--json` shape.

use std::time::Duration;

use super::tree::{FLAGS, Tree, VERSION, inspect_options, set_age};
use crate::{Error, Naming, State, inspect};

fn state_of(report: &crate::CacheReport, graph: &str) -> State {
    report
        .entries
        .iter()
        .find(|entry| entry.graph_key == graph)
        .unwrap_or_else(|| panic!("no entry {graph} in {:#?}", report.entries))
        .state
}

#[test]
fn every_state_is_recognized() {
    let tree = Tree::with_four_states(Duration::from_secs(60), Duration::from_secs(3 * 3600));
    tree.entry(
        VERSION,
        "00000000000000000005",
        FLAGS,
        &[("model.hlo_module.pb", b"hlo")],
    );
    tree.entry(
        VERSION,
        "00000000000000000006",
        FLAGS,
        &[("model.hlo_module.pb", b"hlo"), ("model.neff", b"half")],
    );
    tree.entry(VERSION, "00000000000000000007", FLAGS, &[]);
    // Old SDK: model.hlo.pb, compile_flags.txt, a NEFF and no done marker.
    tree.entry(
        "2.12.54.0+f631c2365",
        "9219523464496887986",
        "2c2d707e",
        &[
            ("model.hlo.pb", b"hlo"),
            (
                "compile_flags.txt",
                b"--model-type=transformer --auto-cast=none",
            ),
            ("model.neff", b"neff"),
        ],
    );
    // Done marker without a NEFF: not complete.
    tree.entry(
        VERSION,
        "00000000000000000008",
        FLAGS,
        &[("model.hlo_module.pb", b"hlo"), ("model.done", b"")],
    );

    let report = inspect(tree.root(), &inspect_options()).unwrap();
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert_eq!(state_of(&report, "00000000000000000001"), State::Complete);
    assert_eq!(state_of(&report, "00000000000000000002"), State::Failed);
    assert_eq!(state_of(&report, "00000000000000000003"), State::Locked);
    assert_eq!(state_of(&report, "00000000000000000004"), State::StaleLock);
    assert_eq!(state_of(&report, "00000000000000000005"), State::Incomplete);
    assert_eq!(state_of(&report, "00000000000000000006"), State::Incomplete);
    assert_eq!(state_of(&report, "00000000000000000007"), State::Incomplete);
    assert_eq!(state_of(&report, "9219523464496887986"), State::Complete);
    assert_eq!(state_of(&report, "00000000000000000008"), State::Incomplete);

    let old = report
        .entries
        .iter()
        .find(|entry| entry.graph_key == "9219523464496887986")
        .unwrap();
    assert_eq!(old.naming, Naming::Legacy);
    assert_eq!(old.compiler_version, "2.12.54.0+f631c2365");
    assert_eq!(old.bytes, 3 + 41 + 4);
    let locked = report
        .entries
        .iter()
        .find(|entry| entry.graph_key == "00000000000000000003")
        .unwrap();
    assert_eq!(locked.lock_age_seconds, Some(60));
    assert_eq!(locked.files.locks, ["model.hlo_module.pb.lock"]);

    assert_eq!(report.summary.entries, 9);
    assert_eq!(report.summary.count(State::Complete), 2);
    assert_eq!(report.summary.count(State::Incomplete), 4);
    assert_eq!(report.summary.compiler_versions[VERSION], 8);
}

#[test]
fn the_youngest_lock_decides() {
    let tree = Tree::new();
    let entry = tree.locked("00000000000000000001", Duration::from_secs(5 * 3600));
    fs_err::write(entry.join("other.lock"), b"").unwrap();
    set_age(&entry.join("other.lock"), Duration::from_secs(30));
    let report = inspect(tree.root(), &inspect_options()).unwrap();
    assert_eq!(report.entries[0].state, State::Locked);
    assert_eq!(report.entries[0].lock_age_seconds, Some(30));
}

#[test]
fn json_shape_is_stable() {
    let tree = Tree::new();
    tree.complete("50a122f44c378e1567a4");
    tree.failed("9219523464496887986");
    tree.locked("00000000000000000003", Duration::from_secs(90));
    let report = inspect(tree.root(), &inspect_options()).unwrap();
    let json = serde_json::to_value(&report).unwrap();
    for entry in json["entries"].as_array().unwrap() {
        for field in ["path", "compiler_version", "state", "bytes"] {
            assert!(entry.get(field).is_some(), "{field} missing in {entry}");
        }
        assert!(
            !entry["path"].as_str().unwrap().starts_with('/'),
            "paths are relative"
        );
    }
    // The struct, not the `Value`: a `Value`'s key order depends on serde_json's
    // `preserve_order` feature, which other crates of the workspace may switch on.
    insta::assert_json_snapshot!(report, { ".root" => "[root]" });
}

#[cfg(unix)]
#[test]
fn symbolic_links_are_never_followed() {
    use std::os::unix::fs::symlink;
    let outside = Tree::new();
    let outside_entry = outside.failed("00000000000000000009");
    let tree = Tree::new();
    let real = tree.complete("00000000000000000001");
    // A version folder that is a link out of the root.
    symlink(
        outside.root().join(format!("neuronxcc-{VERSION}")),
        tree.root().join("neuronxcc-9.9.9"),
    )
    .unwrap();
    // An entry that is a link out of the root.
    let version_dir = real.parent().unwrap();
    symlink(
        &outside_entry,
        version_dir.join(format!("MODULE_00000000000000000002+{FLAGS}")),
    )
    .unwrap();
    // A link loop.
    symlink(
        version_dir.join(format!("MODULE_00000000000000000003+{FLAGS}")),
        version_dir.join(format!("MODULE_00000000000000000003+{FLAGS}")),
    )
    .unwrap_or(());
    // An entry whose NEFF is a link to a big file outside: it is not a NEFF, and not counted.
    let linked = tree.entry(
        VERSION,
        "00000000000000000004",
        FLAGS,
        &[("model.hlo_module.pb", b"hlo"), ("model.done", b"")],
    );
    fs_err::write(outside.root().join("big"), vec![0u8; 100_000]).unwrap();
    symlink(outside.root().join("big"), linked.join("model.neff")).unwrap();

    let report = inspect(tree.root(), &inspect_options()).unwrap();
    let paths: Vec<&str> = report
        .entries
        .iter()
        .map(|entry| entry.path.as_str())
        .collect();
    assert_eq!(paths.len(), 2, "{paths:?}");
    assert_eq!(state_of(&report, "00000000000000000001"), State::Complete);
    let linked = report
        .entries
        .iter()
        .find(|entry| entry.graph_key == "00000000000000000004")
        .unwrap();
    assert_eq!(
        linked.state,
        State::Incomplete,
        "a linked model.neff is not a NEFF"
    );
    assert_eq!(linked.files.symlinks, ["model.neff"]);
    assert!(
        linked.bytes < 1000,
        "the link's target is not counted: {}",
        linked.bytes
    );
    let skipped: Vec<(&str, &str)> = report
        .skipped
        .iter()
        .map(|skip| (skip.path.as_str(), skip.reason.as_str()))
        .collect();
    assert!(
        skipped.contains(&("neuronxcc-9.9.9", "symbolic link (not followed)")),
        "{skipped:?}"
    );
    assert!(
        skipped.iter().any(
            |(path, reason)| path.ends_with("MODULE_00000000000000000002+725887e1")
                && reason.contains("symbolic link")
        ),
        "{skipped:?}"
    );
}

#[test]
fn garbage_names_are_skipped_and_reported() {
    let tree = Tree::new();
    tree.complete("00000000000000000001");
    let version_dir = tree.root().join(format!("neuronxcc-{VERSION}"));
    for name in [
        "MODULE_xyz+725887e1",
        "MODULE_123",
        "MODULE_123+7258",
        "MODULE_+725887e1",
        "random",
        ".hidden",
        "MODULE_12+725887eg",
    ] {
        fs_err::create_dir_all(version_dir.join(name)).unwrap();
    }
    fs_err::write(
        version_dir.join(format!("MODULE_00000000000000000002+{FLAGS}")),
        b"a file, not a folder",
    )
    .unwrap();
    fs_err::write(tree.root().join("neuronxcc-1.0"), b"a file").unwrap();
    fs_err::create_dir_all(tree.root().join("neuronxcc-")).unwrap();
    fs_err::create_dir_all(tree.root().join("lost+found")).unwrap();
    fs_err::create_dir_all(tree.root().join("neuron-compile-cache")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let name = std::ffi::OsStr::from_bytes(b"MODULE_\xff\xfe+725887e1");
        fs_err::create_dir_all(version_dir.join(name)).unwrap();
    }

    let report = inspect(tree.root(), &inspect_options()).unwrap();
    assert_eq!(report.entries.len(), 1);
    let skipped: Vec<&str> = report
        .skipped
        .iter()
        .map(|skip| skip.path.as_str())
        .collect();
    for expected in [
        "neuronxcc-1.0",
        "neuronxcc-",
        "lost+found",
        "neuron-compile-cache",
        "neuronxcc-2.21.33363.0+82129205/MODULE_xyz+725887e1",
        "neuronxcc-2.21.33363.0+82129205/MODULE_00000000000000000002+725887e1",
        "neuronxcc-2.21.33363.0+82129205/random",
    ] {
        assert!(skipped.contains(&expected), "{expected} not in {skipped:?}");
    }
    assert_eq!(report.skipped.len(), 13, "{skipped:?}");
    assert!(
        report.notes[0].contains("older neuron_parallel_compile"),
        "{:?}",
        report.notes
    );
}

/// An unreadable entry folder is reported and the walk goes on. Root ignores permission bits,
/// and the tests run as root on the development machines: then the folder reads fine and the
/// test checks that instead (and says so).
#[cfg(unix)]
#[test]
fn unreadable_folders_are_reported_not_fatal() {
    use std::os::unix::fs::PermissionsExt;
    let tree = Tree::new();
    tree.complete("00000000000000000001");
    let locked_out = tree.failed("00000000000000000002");
    std::fs::set_permissions(&locked_out, std::fs::Permissions::from_mode(0o000)).unwrap();
    let privileged = std::fs::read_dir(&locked_out).is_ok();
    let report = inspect(tree.root(), &inspect_options());
    std::fs::set_permissions(&locked_out, std::fs::Permissions::from_mode(0o755)).unwrap();
    let report = report.unwrap();
    if privileged {
        #[allow(clippy::print_stderr)]
        {
            eprintln!(
                "running with privileges that ignore permission bits: the folder was readable"
            );
        }
        assert_eq!(report.entries.len(), 2);
        assert_eq!(state_of(&report, "00000000000000000002"), State::Failed);
    } else {
        assert_eq!(report.entries.len(), 1);
        assert!(
            report.skipped[0].reason.contains("unreadable folder"),
            "{:?}",
            report.skipped
        );
    }
}

#[test]
fn a_missing_or_wrong_root_is_an_error_that_says_what_to_check() {
    let tree = Tree::new();
    let missing = tree.root().join("nope");
    let error = inspect(&missing, &inspect_options()).unwrap_err();
    assert!(matches!(error, Error::InspectRoot { .. }));
    assert!(
        error.to_string().contains("NEURON_COMPILE_CACHE_URL"),
        "{error}"
    );
    let file = tree.root().join("file");
    fs_err::write(&file, b"").unwrap();
    assert!(matches!(
        inspect(&file, &inspect_options()),
        Err(Error::RootNotADirectory { .. })
    ));
    let empty = inspect(tree.root(), &inspect_options()).unwrap();
    assert_eq!(empty.summary.entries, 0);
    assert_eq!(
        empty.summary.states.len(),
        5,
        "every state is listed, even at zero"
    );
}

#[test]
fn many_entries_are_classified_the_same_in_parallel() {
    let tree = Tree::new();
    for index in 0..600u32 {
        let graph = format!("{index:020}");
        match index % 3 {
            0 => tree.complete(&graph),
            1 => tree.failed(&graph),
            _ => tree.locked(&graph, Duration::from_secs(u64::from(index) * 60)),
        };
    }
    let serial = inspect(
        tree.root(),
        &crate::InspectOptions {
            threads: 1,
            ..inspect_options()
        },
    )
    .unwrap();
    let parallel = inspect(
        tree.root(),
        &crate::InspectOptions {
            threads: 4,
            ..inspect_options()
        },
    )
    .unwrap();
    assert_eq!(serial, parallel);
    assert_eq!(serial.summary.count(State::Complete), 200);
    assert_eq!(serial.summary.count(State::Failed), 200);
    // Locks of 2, 5, 8 … minutes; 120 minutes and older are stale.
    let stale = (0..600u64)
        .filter(|index| index % 3 == 2 && index * 60 >= 7200)
        .count();
    assert_eq!(serial.summary.count(State::StaleLock), stale);
    assert_eq!(serial.summary.count(State::Locked), 200 - stale);
}

#[test]
fn without_sizes_the_states_are_the_same_and_bytes_are_zero() {
    let tree = Tree::with_four_states(Duration::from_secs(60), Duration::from_secs(3 * 3600));
    tree.entry(
        VERSION,
        "00000000000000000005",
        FLAGS,
        &[("model.hlo_module.pb", b"hlo"), ("model.neff", b"half")],
    );
    let sized = inspect(tree.root(), &inspect_options()).unwrap();
    let unsized_report = inspect(
        tree.root(),
        &crate::InspectOptions {
            sizes: false,
            ..inspect_options()
        },
    )
    .unwrap();
    assert!(sized.sizes_measured && !unsized_report.sizes_measured);
    let states = |report: &crate::CacheReport| {
        report
            .entries
            .iter()
            .map(|entry| (entry.graph_key.clone(), entry.state))
            .collect::<Vec<_>>()
    };
    assert_eq!(states(&sized), states(&unsized_report));
    assert!(sized.summary.bytes > 0);
    assert_eq!(unsized_report.summary.bytes, 0);
    assert_eq!(
        unsized_report.entries[2].lock_age_seconds,
        Some(60),
        "lock ages are still measured"
    );
    assert_eq!(unsized_report.entries[0].files.neff_bytes, None);
    assert!(unsized_report.entries[0].files.neff);
}

#[test]
fn trnkit_files_at_the_root_are_passed_over_and_other_files_reported() {
    let dir = tempfile::tempdir().unwrap();
    fs_err::write(dir.path().join(".trnkit-inspected"), "mark").unwrap();
    fs_err::write(dir.path().join("notes.txt"), "x").unwrap();
    let report = crate::inspect(dir.path(), &crate::InspectOptions::default()).unwrap();
    let skipped: Vec<&str> = report
        .skipped
        .iter()
        .map(|item| item.path.as_str())
        .collect();
    assert_eq!(skipped, ["notes.txt"]);
}
