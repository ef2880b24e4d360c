//! The node check Job's shape (snapshot, and the worker's scheduling and requests), its
//! script run under bash on stubbed tools, and the verdict over the pods' reports.

use std::path::Path;

use k8s_openapi::api::core::v1::PodSpec;

use super::*;
use crate::config::{Config, TolerationConfig};
use crate::render::Manifest;

fn compile_job(config: &Config) -> MPIJob {
    let jobs = crate::render::llama2_config(
        config,
        "registry/training:tag",
        mpijob::LauncherGate::WaitForWorkersReady,
    )
    .unwrap();
    mpijob::llama2::compile_job(&jobs).unwrap()
}

fn pod_spec(job: &Job) -> &PodSpec {
    job.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
}

#[test]
fn node_check_job_snapshot() {
    let job = job(&compile_job(&Config::default())).unwrap();
    insta::assert_snapshot!(Manifest::from_object(&job).unwrap().to_yaml());
}

#[test]
fn one_pod_per_worker_node_with_the_workers_scheduling_and_requests() {
    let mut config = Config::default();
    config.training.workers = 3;
    config.training.efa_interfaces_per_worker = 4;
    config.training.node_selector = [(
        "node.kubernetes.io/instance-type".to_owned(),
        "trn1.32xlarge".to_owned(),
    )]
    .into();
    config.training.tolerations = vec![TolerationConfig {
        key: "aws.amazon.com/neuron".to_owned(),
        operator: crate::config::TolerationOperator::Exists,
        value: String::new(),
        effect: crate::config::TaintEffect::NoSchedule,
    }];
    config.training.priority_class = "training".to_owned();
    let mpijob = compile_job(&config);
    let worker = mpijob.spec.mpi_replica_specs[mpijob::types::WORKER]
        .template
        .spec
        .clone()
        .unwrap();
    let check = job(&mpijob).unwrap();
    let spec = check.spec.as_ref().unwrap();
    assert_eq!(spec.completion_mode.as_deref(), Some("Indexed"));
    assert_eq!(spec.completions, Some(3));
    assert_eq!(spec.parallelism, Some(3));
    assert_eq!(spec.backoff_limit_per_index, Some(0));
    assert_eq!(spec.backoff_limit, None);
    let pod = pod_spec(&check);
    assert_eq!(pod.node_selector, worker.node_selector);
    assert!(pod.node_selector.is_some());
    assert_eq!(pod.tolerations, worker.tolerations);
    assert!(!pod.tolerations.as_ref().unwrap().is_empty());
    assert_eq!(pod.priority_class_name.as_deref(), Some("training"));
    let container = &pod.containers[0];
    assert_eq!(container.resources, worker.containers[0].resources);
    assert_eq!(container.image, worker.containers[0].image);
    let env = |name: &str| {
        container
            .env
            .as_ref()
            .unwrap()
            .iter()
            .find(|variable| variable.name == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(env("EXPECTED_NEURON_DEVICES").value.as_deref(), Some("16"));
    assert_eq!(env("EXPECTED_EFA_INTERFACES").value.as_deref(), Some("4"));
    let node = env("NODE_NAME").value_from.unwrap().field_ref.unwrap();
    assert_eq!(node.field_path, "spec.nodeName");
    // Never two pods of the check on one node.
    let terms = pod
        .affinity
        .as_ref()
        .unwrap()
        .pod_anti_affinity
        .as_ref()
        .unwrap()
        .required_during_scheduling_ignored_during_execution
        .as_ref()
        .unwrap();
    assert_eq!(terms[0].topology_key, "kubernetes.io/hostname");
    let selected = terms[0]
        .label_selector
        .as_ref()
        .unwrap()
        .match_labels
        .as_ref()
        .unwrap();
    let labels = check
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref()
        .unwrap();
    assert!(
        selected
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
    );
}

#[test]
fn the_compile_step_runs_the_check_first_unless_switched_off() {
    let rendered = |config: &Config| {
        crate::deploy::bundle::render_all(
            config,
            None,
            None,
            Path::new("/nonexistent/trnkit-stage"),
        )
        .unwrap()
        .compile
        .iter()
        .map(|manifest| manifest.name.clone())
        .collect::<Vec<_>>()
    };
    let mut config = Config::default();
    assert_eq!(
        rendered(&config),
        [
            JOB_NAME,
            crate::staging::CACHE_CHECK_JOB_NAME,
            "test-mpi-compile"
        ]
    );
    // A forced compile skips the cache check, not the node check.
    config.training.force_compile = true;
    assert_eq!(rendered(&config), [JOB_NAME, "test-mpi-compile"]);
    config.training.force_compile = false;
    config.training.node_check = false;
    assert_eq!(
        rendered(&config),
        [crate::staging::CACHE_CHECK_JOB_NAME, "test-mpi-compile"]
    );
}

#[test]
fn the_script_is_valid_bash() {
    #[allow(clippy::disallowed_methods)]
    let output = std::process::Command::new("bash")
        .args(["-n", "-c", SCRIPT])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A node as the script sees it: `devices` device files, what `neuron-ls --json-output`
/// lists (`None`: it fails) and how many EFA devices `fi_info -p efa` lists.
struct FakeNode {
    devices: usize,
    neuron_ls: Option<usize>,
    efa: usize,
}

/// Runs the script on `node` (16 devices and 8 EFA interfaces requested) and returns its
/// exit code and output.
fn run(node: &FakeNode) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let dev = dir.path().join("dev");
    let bin = dir.path().join("bin");
    fs_err::create_dir_all(&dev).unwrap();
    fs_err::create_dir_all(&bin).unwrap();
    for index in 0..node.devices {
        fs_err::write(dev.join(format!("neuron{index}")), "").unwrap();
    }
    let neuron_ls = match node.neuron_ls {
        Some(count) => {
            let devices: Vec<String> = (0..count)
                .map(|index| format!("{{\"neuron_device\": {index}, \"nc_count\": 2}}"))
                .collect();
            format!("#!/bin/sh\necho '[{}]'\n", devices.join(", "))
        }
        None => "#!/bin/sh\necho 'nrt: failed to open device' >&2\nexit 1\n".to_owned(),
    };
    // Two endpoints (rdm, dgrm) would be listed per interface; `-t FI_EP_RDM` keeps one.
    let mut fi_info = String::from("#!/bin/sh\n");
    for index in 0..node.efa {
        fi_info.push_str(&format!(
            "echo 'provider: efa'\necho '    fabric: efa'\necho '    domain: rdmap{index}s27-rdm'\necho '    type: FI_EP_RDM'\n"
        ));
    }
    fs_err::write(bin.join("neuron-ls"), neuron_ls).unwrap();
    fs_err::write(bin.join("fi_info"), fi_info).unwrap();
    #[allow(clippy::disallowed_methods)]
    let chmod = std::process::Command::new("chmod")
        .args(["+x", "bin/neuron-ls", "bin/fi_info"])
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(chmod.success());
    #[allow(clippy::disallowed_methods)]
    let output = std::process::Command::new("bash")
        .args(["-c", SCRIPT])
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("TRNKIT_NODE_CHECK_DEV", &dev)
        .env("NODE_NAME", "ip-10-1-2-3.us-west-2.compute.internal")
        .env("EXPECTED_NEURON_DEVICES", "16")
        .env("EXPECTED_EFA_INTERFACES", "8")
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn a_healthy_node_passes_and_each_fault_fails_naming_the_node() {
    let (code, out) = run(&FakeNode {
        devices: 16,
        neuron_ls: Some(16),
        efa: 8,
    });
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.trim(),
        "trnkit-node-check: OK node=ip-10-1-2-3.us-west-2.compute.internal neuron_devices=16 efa_interfaces=8"
    );
    for (node, why) in [
        (
            FakeNode {
                devices: 15,
                neuron_ls: Some(16),
                efa: 8,
            },
            "15 Neuron device(s) in",
        ),
        (
            FakeNode {
                devices: 16,
                neuron_ls: None,
                efa: 8,
            },
            "neuron-ls failed: nrt: failed to open device",
        ),
        (
            FakeNode {
                devices: 16,
                neuron_ls: Some(12),
                efa: 8,
            },
            "neuron-ls lists 12 Neuron device(s), 16 requested",
        ),
        (
            FakeNode {
                devices: 16,
                neuron_ls: Some(16),
                efa: 0,
            },
            "fi_info -p efa lists 0 EFA interface(s), 8 requested",
        ),
    ] {
        let (code, out) = run(&node);
        assert_eq!(code, 1, "{out}");
        let line = out.trim();
        assert!(
            line.starts_with(
                "trnkit-node-check: FAIL node=ip-10-1-2-3.us-west-2.compute.internal: "
            ),
            "{line}"
        );
        assert!(line.contains(why), "{why} in {line}");
    }
}

fn report(pod: &str, node: &str, exit_code: i32, log: &str) -> PodReport {
    PodReport {
        pod: pod.to_owned(),
        node: Some(node.to_owned()),
        exit_code: Some(exit_code),
        log: log.to_owned(),
    }
}

#[test]
fn the_verdict_names_every_failed_node() {
    let ok = |node: &str| format!("{OK_PREFIX} node={node} neuron_devices=16 efa_interfaces=8");
    let healthy: Vec<PodReport> = (0..4)
        .map(|index| {
            let node = format!("trn1-{index}");
            report(&format!("check-{index}"), &node, 0, &ok(&node))
        })
        .collect();
    assert_eq!(
        verdict(&healthy, 4),
        Ok("4 node(s) passed the node check (Neuron devices and EFA interfaces): trn1-0, trn1-1, trn1-2, trn1-3".to_owned())
    );
    // Three of four: a node short is a failure, not a pass.
    let error = verdict(&healthy[..3], 4).unwrap_err();
    assert!(error.contains("only 3 of 4"), "{error}");

    let mut broken = healthy.clone();
    broken[2] = report(
        "check-2",
        "trn1-2",
        1,
        &format!("{FAIL_PREFIX} node=trn1-2: fi_info -p efa lists 0 EFA interface(s), 8 requested"),
    );
    // A pod that died without a result line counts by its exit code.
    broken[3] = report("check-3", "trn1-3", 137, "starting\nKilled");
    let error = verdict(&broken, 4).unwrap_err();
    assert!(
        error.starts_with("2 node(s) failed the node check"),
        "{error}"
    );
    assert!(
        error
            .contains("trn1-2: fi_info -p efa lists 0 EFA interface(s), 8 requested (pod check-2)"),
        "{error}"
    );
    assert!(
        error.contains(
            "trn1-3: the check exited with code 137 (pod check-3); last lines: starting | Killed"
        ),
        "{error}"
    );
    assert!(!error.contains("trn1-0"), "{error}");
    // A retried pod on the same node names it once.
    let mut retried = broken.clone();
    retried.push(report(
        "check-2-retry",
        "trn1-2",
        1,
        &format!("{FAIL_PREFIX} node=trn1-2: fi_info -p efa lists 0 EFA interface(s), 8 requested"),
    ));
    assert_eq!(failures(&retried).len(), 2, "{:?}", failures(&retried));
}
