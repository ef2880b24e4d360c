//! Pruning generated trees: the dry run lists exactly what the flags ask for, the real run
//! removes exactly that, fresh locks and links out of the root survive, and an interrupted
//! removal is finished by the next run. Also `verify` and `coverage`.

use std::time::Duration;

use super::tree::{FLAGS, Tree, VERSION, inspect_options};
use crate::prune::{Action, Outcome, PruneOptions, plan, prune};
use crate::{Error, State, coverage, inspect, verify};

fn fixture() -> Tree {
    let tree = Tree::with_four_states(Duration::from_secs(10 * 60), Duration::from_secs(5 * 3600));
    tree.entry(
        VERSION,
        "00000000000000000005",
        FLAGS,
        &[("model.hlo_module.pb", b"hlo")],
    );
    tree.entry(
        "2.20.0.0+aaaaaaaa",
        "00000000000000000006",
        FLAGS,
        &[("model.neff", b"n"), ("model.done", b"")],
    );
    tree.entry(
        "2.20.0.0+aaaaaaaa",
        "00000000000000000007",
        FLAGS,
        &[("model.log", b"Failed compilation")],
    );
    tree
}

fn paths(items: &[crate::Pruned]) -> Vec<(String, Action)> {
    items
        .iter()
        .map(|item| (item.entry.graph_key.clone(), item.action))
        .collect()
}

fn key(graph: &str, action: Action) -> (String, Action) {
    (graph.to_owned(), action)
}

#[test]
fn nothing_selected_is_an_error() {
    let tree = fixture();
    let report = inspect(tree.root(), &inspect_options()).unwrap();
    let error = plan(&report, &PruneOptions::default()).unwrap_err();
    assert!(matches!(error, Error::InvalidPrune { .. }));
    assert!(error.to_string().contains("--failed"), "{error}");
}

#[test]
fn dry_run_lists_exactly_what_the_flags_ask_for_and_changes_nothing() {
    let tree = fixture();
    let before = inspect(tree.root(), &inspect_options()).unwrap();

    let failed = PruneOptions {
        failed: true,
        dry_run: true,
        ..PruneOptions::default()
    };
    let report = prune(tree.root(), &failed, &inspect_options()).unwrap();
    assert_eq!(
        paths(&report.entries),
        // In path order: neuronxcc-2.20… sorts before neuronxcc-2.21….
        [
            key("00000000000000000007", Action::RemoveEntry),
            key("00000000000000000002", Action::RemoveEntry)
        ]
    );
    assert!(report.entries.iter().all(|item| !item.done));
    assert_eq!(
        report.bytes_freed,
        report
            .entries
            .iter()
            .map(|item| item.entry.bytes)
            .sum::<u64>()
    );

    let stale = PruneOptions {
        stale_locks_older_than: Some(Duration::from_secs(3600)),
        dry_run: true,
        ..PruneOptions::default()
    };
    let report = prune(tree.root(), &stale, &inspect_options()).unwrap();
    assert_eq!(
        paths(&report.entries),
        [key("00000000000000000004", Action::RemoveLocks)]
    );

    let keep = PruneOptions {
        keep_version: Some(VERSION.to_owned()),
        dry_run: true,
        ..PruneOptions::default()
    };
    let report = prune(tree.root(), &keep, &inspect_options()).unwrap();
    assert_eq!(
        paths(&report.entries),
        [
            key("00000000000000000006", Action::RemoveEntry),
            key("00000000000000000007", Action::RemoveEntry)
        ]
    );
    assert_eq!(
        report.entries[0].entry.state,
        State::Complete,
        "a complete entry goes only when asked"
    );

    let json = serde_json::to_value(&report).unwrap();
    let first = &json["entries"][0];
    for field in [
        "path",
        "compiler_version",
        "state",
        "bytes",
        "action",
        "reason",
    ] {
        assert!(first.get(field).is_some(), "{field} missing in {first}");
    }

    assert_eq!(
        inspect(tree.root(), &inspect_options()).unwrap(),
        before,
        "a dry run changes nothing"
    );
}

#[test]
fn prune_removes_failed_entries_and_stale_locks_but_never_fresh_locks() {
    let tree = fixture();
    let options = PruneOptions {
        failed: true,
        stale_locks_older_than: Some(Duration::from_secs(3600)),
        ..PruneOptions::default()
    };
    // The real clock is used for the re-check; the fixture's locks are dated against the fixed
    // clock, far in the future of the real one... so pin lock ages to the real clock instead.
    let real = crate::InspectOptions {
        now: std::time::SystemTime::now(),
        ..inspect_options()
    };
    let fresh_lock = tree.root().join(format!(
        "neuronxcc-{VERSION}/MODULE_00000000000000000003+{FLAGS}/model.hlo_module.pb.lock"
    ));
    let stale_lock = tree.root().join(format!(
        "neuronxcc-{VERSION}/MODULE_00000000000000000004+{FLAGS}/model.hlo_module.pb.lock"
    ));
    touch_ago(&fresh_lock, Duration::from_secs(600));
    touch_ago(&stale_lock, Duration::from_secs(5 * 3600));

    let report = prune(tree.root(), &options, &real).unwrap();
    assert!(
        report.entries.iter().all(|item| item.done),
        "{:#?}",
        report.entries
    );
    assert_eq!(report.entries.len(), 3);
    assert!(
        fresh_lock.exists(),
        "a lock younger than the threshold is never removed"
    );
    assert!(!stale_lock.exists());

    let after = inspect(tree.root(), &real).unwrap();
    let graphs: Vec<(&str, State)> = after
        .entries
        .iter()
        .map(|entry| (entry.graph_key.as_str(), entry.state))
        .collect();
    assert_eq!(
        graphs,
        [
            ("00000000000000000006", State::Complete),
            ("00000000000000000001", State::Complete),
            ("00000000000000000003", State::Locked),
            ("00000000000000000004", State::Incomplete),
            ("00000000000000000005", State::Incomplete),
        ]
    );
    assert!(
        after.skipped.is_empty(),
        "no leftovers: {:?}",
        after.skipped
    );
}

#[test]
fn keep_version_removes_other_versions_and_their_folder_but_refuses_a_typo() {
    let tree = fixture();
    let typo = PruneOptions {
        keep_version: Some("2.21".to_owned()),
        ..PruneOptions::default()
    };
    let error = prune(tree.root(), &typo, &inspect_options())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("would remove every entry") && error.contains(VERSION),
        "{error}"
    );

    let keep = PruneOptions {
        keep_version: Some(VERSION.to_owned()),
        ..PruneOptions::default()
    };
    let report = prune(tree.root(), &keep, &inspect_options()).unwrap();
    assert_eq!(report.entries.iter().filter(|item| item.done).count(), 2);
    assert!(
        !tree.root().join("neuronxcc-2.20.0.0+aaaaaaaa").exists(),
        "the emptied version folder goes too"
    );
    assert_eq!(
        inspect(tree.root(), &inspect_options())
            .unwrap()
            .summary
            .entries,
        5
    );
}

#[cfg(unix)]
#[test]
fn prune_never_touches_what_links_point_to() {
    use std::os::unix::fs::symlink;
    let outside = Tree::new();
    let outside_failed = outside.failed("00000000000000000009");
    let tree = fixture();
    let version_dir = tree.root().join(format!("neuronxcc-{VERSION}"));
    symlink(
        &outside_failed,
        version_dir.join(format!("MODULE_00000000000000000008+{FLAGS}")),
    )
    .unwrap();
    // A failed entry holding a link to an outside folder: removing the entry removes the link only.
    let failed = tree.root().join(format!(
        "neuronxcc-{VERSION}/MODULE_00000000000000000002+{FLAGS}"
    ));
    symlink(outside.root(), failed.join("escape")).unwrap();

    let options = PruneOptions {
        failed: true,
        keep_version: Some(VERSION.to_owned()),
        ..PruneOptions::default()
    };
    prune(tree.root(), &options, &inspect_options()).unwrap();
    assert!(!failed.exists());
    assert!(
        outside_failed.join("model.log").exists(),
        "the link's target survives"
    );
    assert!(outside.root().join(format!("neuronxcc-{VERSION}")).exists());
}

#[test]
fn an_interrupted_removal_is_finished_by_the_next_prune() {
    let tree = fixture();
    let version_dir = tree.root().join(format!("neuronxcc-{VERSION}"));
    let leftover = version_dir.join(format!(
        ".trnkit-removing-MODULE_00000000000000000002+{FLAGS}-4242"
    ));
    fs_err::rename(
        version_dir.join(format!("MODULE_00000000000000000002+{FLAGS}")),
        &leftover,
    )
    .unwrap();

    let report = inspect(tree.root(), &inspect_options()).unwrap();
    assert!(
        report
            .entries
            .iter()
            .all(|entry| entry.graph_key != "00000000000000000002"),
        "a parked folder is not an entry"
    );
    assert!(
        report
            .skipped
            .iter()
            .any(|skip| skip.reason.contains("interrupted prune")),
        "{:?}",
        report.skipped
    );

    let options = PruneOptions {
        failed: true,
        ..PruneOptions::default()
    };
    let pruned = prune(tree.root(), &options, &inspect_options()).unwrap();
    assert!(
        pruned
            .entries
            .iter()
            .any(|item| item.action == Action::FinishRemoval && item.done)
    );
    assert!(!leftover.exists());
}

#[test]
fn verify_checks_flags_files_and_neffs() {
    let tree = Tree::new();
    tree.complete("00000000000000000001");
    let renamed = tree.complete("00000000000000000002");
    fs_err::write(
        renamed.join("compile_flags.json"),
        br#"["--model-type=transformer"]"#,
    )
    .unwrap();
    let empty = tree.complete("00000000000000000003");
    fs_err::write(empty.join("model.neff"), b"").unwrap();
    let garbled = tree.complete("00000000000000000004");
    fs_err::write(
        garbled.join("compile_flags.json"),
        b"--model-type transformer",
    )
    .unwrap();
    tree.entry(
        "2.12.0.0+x",
        "9219523464496887986",
        "2c2d707e",
        &[
            ("model.hlo.pb", b"h"),
            (
                "compile_flags.txt",
                b"--model-type=transformer --auto-cast=none",
            ),
            ("model.neff", b"n"),
        ],
    );

    let report = inspect(tree.root(), &inspect_options()).unwrap();
    let problems = verify(tree.root(), &report);
    let found: Vec<(&str, &str)> = problems
        .iter()
        .map(|problem| {
            (
                problem.path.rsplit('/').next().unwrap(),
                problem.problem.as_str(),
            )
        })
        .collect();
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(
        found[0].0.contains("0002") && found[0].1.contains("but the folder says 725887e1"),
        "{found:?}"
    );
    assert!(
        found[1].0.contains("0003") && found[1].1.contains("empty"),
        "{found:?}"
    );
    assert!(
        found[2].0.contains("0004") && found[2].1.contains("not a JSON list"),
        "{found:?}"
    );
}

#[test]
fn coverage_says_whether_the_compile_job_can_be_skipped() {
    let tree = Tree::new();
    tree.complete("00000000000000000001");
    tree.complete("00000000000000000002");
    let report = inspect(tree.root(), &inspect_options()).unwrap();
    let blueprint = crate::parse_neuron_cc_flags(
        "--model-type transformer --distribution-strategy=llm-training --enable-mixed-precision-accumulation",
    )
    .unwrap();
    let ready = coverage(
        &report,
        &blueprint.key(),
        &blueprint.legacy_key(),
        Some(VERSION),
    );
    assert!(ready.is_ready(), "{ready:?}");
    assert!(
        ready.verdict().contains("can probably be skipped"),
        "{}",
        ready.verdict()
    );

    let other_compiler = coverage(
        &report,
        &blueprint.key(),
        &blueprint.legacy_key(),
        Some("2.22.0.0+b"),
    );
    assert!(!other_compiler.is_ready());
    assert!(other_compiler.verdict().contains("compile job is needed"));

    let spelled = crate::parse_neuron_cc_flags("--model-type=transformer").unwrap();
    assert_eq!(
        coverage(&report, &spelled.key(), &spelled.legacy_key(), None).complete,
        0
    );

    tree.failed("00000000000000000003");
    let report = inspect(tree.root(), &inspect_options()).unwrap();
    let with_failure = coverage(&report, &blueprint.key(), &blueprint.legacy_key(), None);
    assert!(!with_failure.is_ready());
    assert!(
        with_failure.verdict().contains("prune --failed"),
        "{}",
        with_failure.verdict()
    );
}

fn touch_ago(path: &std::path::Path, age: Duration) {
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.set_modified(std::time::SystemTime::now() - age)
        .unwrap();
}

fn real_clock() -> crate::InspectOptions {
    crate::InspectOptions {
        now: std::time::SystemTime::now(),
        ..inspect_options()
    }
}

fn yes(options: PruneOptions) -> PruneOptions {
    PruneOptions {
        dry_run: false,
        ..options
    }
}

#[test]
fn an_older_than_below_the_minimum_is_refused_before_anything_is_read() {
    let tree = fixture();
    for older_than in [Duration::ZERO, Duration::from_secs(60)] {
        let options = PruneOptions {
            stale_locks_older_than: Some(older_than),
            ..PruneOptions::default()
        };
        let error = prune(tree.root(), &options, &real_clock()).unwrap_err();
        assert!(matches!(error, Error::InvalidPrune { .. }), "{error}");
        assert!(
            error.to_string().contains("below the minimum of 10m"),
            "{error}"
        );
    }
    // Nothing was read or removed: the root need not even exist for the refusal.
    let options = PruneOptions {
        stale_locks_older_than: Some(Duration::ZERO),
        keep_version: Some(VERSION.to_owned()),
        ..PruneOptions::default()
    };
    assert!(matches!(
        prune(&tree.root().join("missing"), &options, &real_clock()),
        Err(Error::InvalidPrune { .. })
    ));
    let stale_lock = tree.root().join(format!(
        "neuronxcc-{VERSION}/MODULE_00000000000000000004+{FLAGS}/model.hlo_module.pb.lock"
    ));
    assert!(stale_lock.exists());
}

#[test]
fn the_preview_is_the_default_and_changes_nothing() {
    let tree = fixture();
    let options = PruneOptions {
        failed: true,
        dry_run: true,
        ..PruneOptions::default()
    };
    let report = prune(tree.root(), &options, &real_clock()).unwrap();
    assert_eq!(report.entries.len(), 2);
    assert!(
        report
            .entries
            .iter()
            .all(|item| item.outcome == Outcome::WouldRemove && !item.done)
    );
    assert_eq!((report.removed, report.kept, report.failed), (0, 0, 0));
    assert_eq!(
        inspect(tree.root(), &inspect_options())
            .unwrap()
            .summary
            .count(State::Failed),
        2
    );
}

#[test]
fn a_lock_a_process_holds_is_never_removed_whatever_its_age() {
    let tree = fixture();
    let stale_entry = tree.root().join(format!(
        "neuronxcc-{VERSION}/MODULE_00000000000000000004+{FLAGS}"
    ));
    let stale_lock = stale_entry.join("model.hlo_module.pb.lock");
    touch_ago(&stale_lock, Duration::from_secs(5 * 3600));
    // Another version's entry, with an old lock a compiler holds.
    let other = tree.entry(
        "2.20.0.0+aaaaaaaa",
        "00000000000000000008",
        FLAGS,
        &[
            ("model.hlo_module.pb", b"h"),
            ("model.hlo_module.pb.lock", b""),
        ],
    );
    touch_ago(
        &other.join("model.hlo_module.pb.lock"),
        Duration::from_secs(5 * 3600),
    );

    // A live compiler: an exclusive flock on each lock file (another open file description, so
    // it conflicts with prune's attempt even in this process).
    let compiler = fs_err::File::open(&stale_lock).unwrap();
    compiler.file().try_lock().unwrap();
    let other_compiler = fs_err::File::open(other.join("model.hlo_module.pb.lock")).unwrap();
    other_compiler.file().try_lock().unwrap();

    let options = yes(PruneOptions {
        stale_locks_older_than: Some(Duration::from_secs(3600)),
        keep_version: Some(VERSION.to_owned()),
        ..PruneOptions::default()
    });
    let report = prune(tree.root(), &options, &real_clock()).unwrap();
    assert!(stale_lock.exists(), "a held lock is never removed");
    assert!(
        other.join("model.hlo_module.pb").exists(),
        "nor the entry it protects"
    );
    let locks = report
        .entries
        .iter()
        .find(|item| item.action == Action::RemoveLocks)
        .unwrap();
    assert_eq!(locks.outcome, Outcome::Kept, "{locks:#?}");
    assert!(
        locks.locks_kept[0].contains("held by a running process"),
        "{locks:#?}"
    );
    let entry = report
        .entries
        .iter()
        .find(|item| item.entry.graph_key == "00000000000000000008")
        .unwrap();
    assert_eq!(entry.outcome, Outcome::Kept, "{entry:#?}");
    assert!(
        entry
            .message
            .as_deref()
            .unwrap()
            .contains("held by a running process")
            && entry
                .message
                .as_deref()
                .unwrap()
                .contains("nothing was changed"),
        "{entry:#?}"
    );
    assert_eq!(report.failed, 0);

    // The compilers are gone: now the locks go.
    drop((compiler, other_compiler));
    let report = prune(tree.root(), &options, &real_clock()).unwrap();
    assert!(!stale_lock.exists());
    assert!(!other.exists());
    assert_eq!(report.removed, 2, "{:#?}", report.entries);
}

#[test]
fn keep_version_never_touches_a_young_lock_whatever_the_inspection_threshold() {
    let tree = fixture();
    let other = tree.entry(
        "2.20.0.0+aaaaaaaa",
        "00000000000000000008",
        FLAGS,
        &[
            ("model.hlo_module.pb", b"h"),
            ("model.hlo_module.pb.lock", b""),
        ],
    );
    touch_ago(
        &other.join("model.hlo_module.pb.lock"),
        Duration::from_secs(30 * 60),
    );
    // A caller whose inspection calls anything older than a minute stale.
    let eager = crate::InspectOptions {
        stale_after: Duration::from_secs(60),
        ..real_clock()
    };
    let options = yes(PruneOptions {
        keep_version: Some(VERSION.to_owned()),
        ..PruneOptions::default()
    });
    let report = prune(tree.root(), &options, &eager).unwrap();
    assert!(
        other.join("model.hlo_module.pb.lock").exists(),
        "a 30-minute-old lock is young for keep-version (2 h without --older-than)"
    );
    assert!(
        report
            .entries
            .iter()
            .all(|item| item.entry.graph_key != "00000000000000000008"),
        "{:#?}",
        report.entries
    );
    // The pure plan agrees, whatever threshold the report was made with.
    let inspected = inspect(tree.root(), &eager).unwrap();
    assert!(
        plan(&inspected, &options)
            .unwrap()
            .iter()
            .all(|item| item.entry.graph_key != "00000000000000000008")
    );
}

/// Sets or clears the immutable attribute (`chattr +i`), which stops even root from unlinking;
/// `false` when the file system or the process's capabilities do not allow it.
fn set_immutable(path: &std::path::Path, on: bool) -> bool {
    use rustix::fs::IFlags;
    let Ok(file) = fs_err::File::open(path) else {
        return false;
    };
    let Ok(flags) = rustix::fs::ioctl_getflags(&file) else {
        return false;
    };
    let flags = if on {
        flags | IFlags::IMMUTABLE
    } else {
        flags - IFlags::IMMUTABLE
    };
    rustix::fs::ioctl_setflags(&file, flags).is_ok()
}

/// Under `CI=true` a test that needs privileges fails without them; elsewhere it says so.
fn unavailable(what: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{what} is needed under CI=true"
    );
    #[allow(clippy::print_stderr)]
    {
        eprintln!("skipped: {what} is not available here");
    }
}

#[test]
fn one_failure_does_not_stop_the_others_and_the_report_says_what_state_it_left() {
    let tree = fixture();
    let stuck = tree.failed("00000000000000000011");
    let stuck_file = stuck.join("model.log");
    if !set_immutable(&stuck_file, true) {
        unavailable("the immutable attribute (CAP_LINUX_IMMUTABLE on ext4/xfs/btrfs)");
        return;
    }
    struct Unfreeze(std::path::PathBuf);
    impl Drop for Unfreeze {
        fn drop(&mut self) {
            for entry in walk(self.0.parent().unwrap().parent().unwrap()) {
                set_immutable(&entry, false);
            }
        }
    }
    let _unfreeze = Unfreeze(stuck.clone());

    let options = yes(PruneOptions {
        failed: true,
        ..PruneOptions::default()
    });
    let report = prune(tree.root(), &options, &real_clock()).unwrap();
    assert_eq!(
        (report.removed, report.kept, report.failed),
        (2, 0, 1),
        "{:#?}",
        report.entries
    );
    let failed = report
        .entries
        .iter()
        .find(|item| item.outcome == Outcome::Failed)
        .unwrap();
    assert_eq!(failed.entry.graph_key, "00000000000000000011");
    let message = failed.message.as_deref().unwrap();
    assert!(
        message.contains(".trnkit-removing-MODULE_00000000000000000011")
            && message.contains("no longer an entry")
            && message.contains("next `cache prune` finishes")
            && !message.contains("nothing was changed"),
        "{message}"
    );
    assert!(!failed.done);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["failed"], 1);
    assert_eq!(json["entries"][2]["outcome"], "failed", "{json:#}");
    // The others went, and the stuck one is no longer an entry anyone reads.
    let after = inspect(tree.root(), &real_clock()).unwrap();
    assert_eq!(
        after.summary.count(State::Failed),
        0,
        "{:#?}",
        after.entries
    );
    assert!(
        after
            .skipped
            .iter()
            .any(|skip| skip.reason.contains("interrupted prune"))
    );

    // Once the cause is gone, a rerun finishes the removal.
    drop(_unfreeze);
    let report = prune(tree.root(), &options, &real_clock()).unwrap();
    assert!(
        report
            .entries
            .iter()
            .any(|item| item.action == Action::FinishRemoval && item.outcome == Outcome::Removed),
        "{:#?}",
        report.entries
    );
    assert!(
        inspect(tree.root(), &real_clock())
            .unwrap()
            .skipped
            .is_empty()
    );
}

fn walk(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for child in fs_err::read_dir(root).into_iter().flatten().flatten() {
        let path = child.path();
        if child.file_type().is_ok_and(|kind| kind.is_dir()) {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

/// A bind mount, unmounted when dropped.
struct BindMount(std::path::PathBuf);

impl BindMount {
    fn new(source: &std::path::Path, target: &std::path::Path) -> Option<Self> {
        #[allow(clippy::disallowed_methods)]
        let status = std::process::Command::new("mount")
            .arg("--bind")
            .arg(source)
            .arg(target)
            .current_dir("/")
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        status.success().then(|| Self(target.to_owned()))
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        #[allow(clippy::disallowed_methods)]
        let _ = std::process::Command::new("umount")
            .arg(&self.0)
            .current_dir("/")
            .status();
    }
}

#[test]
fn prune_never_crosses_a_bind_mount_and_changes_nothing_in_that_entry() {
    let outside = Tree::new();
    fs_err::write(outside.root().join("precious"), b"data").unwrap();
    let tree = fixture();
    let failed = tree.root().join(format!(
        "neuronxcc-{VERSION}/MODULE_00000000000000000002+{FLAGS}"
    ));
    fs_err::create_dir(failed.join("mnt")).unwrap();
    let Some(mount) = BindMount::new(outside.root(), &failed.join("mnt")) else {
        unavailable("mount --bind (root with CAP_SYS_ADMIN)");
        return;
    };
    // An entry of another version that is itself a mount point.
    let other = tree.root().join(format!(
        "neuronxcc-2.20.0.0+aaaaaaaa/MODULE_00000000000000000007+{FLAGS}"
    ));
    let Some(other_mount) = BindMount::new(outside.root(), &other) else {
        unavailable("mount --bind");
        return;
    };

    let options = yes(PruneOptions {
        failed: true,
        keep_version: Some(VERSION.to_owned()),
        ..PruneOptions::default()
    });
    let report = prune(tree.root(), &options, &real_clock()).unwrap();
    assert!(
        outside.root().join("precious").exists(),
        "nothing behind a mount is removed"
    );
    let mounted = report
        .entries
        .iter()
        .find(|item| item.entry.graph_key == "00000000000000000007")
        .unwrap();
    assert_eq!(mounted.outcome, Outcome::Failed, "{mounted:#?}");
    assert!(
        mounted.message.as_deref().unwrap().contains("mount point"),
        "{mounted:#?}"
    );
    let item = report
        .entries
        .iter()
        .find(|item| item.entry.graph_key == "00000000000000000002")
        .unwrap();
    assert_eq!(item.outcome, Outcome::Failed, "{item:#?}");
    let message = item.message.as_deref().unwrap();
    assert!(
        message.contains("mount point") && message.contains("nothing was changed"),
        "{message}"
    );
    assert!(failed.join("model.log").exists(), "the entry is left whole");
    // The other items went on: the complete entry of the other version was removed.
    assert_eq!(
        (report.removed, report.failed),
        (1, 2),
        "{:#?}",
        report.entries
    );
    drop(other_mount);
    drop(mount);
    assert!(outside.root().join("precious").exists());
}

#[test]
fn same_mount_compares_the_device_and_the_mount_id() {
    use crate::FsId;
    let root = FsId {
        dev: 2049,
        mount_id: Some(31),
    };
    assert!(root.same_mount(root));
    // A bind mount of a folder of the same file system: same device, its own mount.
    assert!(!root.same_mount(FsId {
        dev: 2049,
        mount_id: Some(77)
    }));
    // Another device.
    assert!(!root.same_mount(FsId {
        dev: 2050,
        mount_id: Some(31)
    }));
    // Without mount ids (old kernels), the device decides.
    assert!(root.same_mount(FsId {
        dev: 2049,
        mount_id: None
    }));
    assert!(!root.same_mount(FsId {
        dev: 7,
        mount_id: None
    }));
}
