//! `--kubeconfig` and `--context` choose the server as kubectl's flags do.

use clap::Parser as _;

use crate::cli::Cli;
use crate::config::Config;
use test_support::fake_apiserver::FakeApiServer;

fn kubeconfig(first: &str, second: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Config
current-context: first
clusters:
- name: first
  cluster: {{ server: "{first}" }}
- name: second
  cluster: {{ server: "{second}" }}
contexts:
- name: first
  context: {{ cluster: first, user: nobody }}
- name: second
  context: {{ cluster: second, user: nobody, namespace: team }}
users:
- name: nobody
  user: {{}}
"#
    )
}

#[tokio::test]
async fn context_chooses_the_server_of_that_context() {
    let first = FakeApiServer::start().await;
    let second = FakeApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    fs_err::write(&path, kubeconfig(first.url(), second.url())).unwrap();
    let path_arg = path.display().to_string();

    let cli = Cli::try_parse_from([
        "xtask",
        "--kubeconfig",
        &path_arg,
        "--context",
        "second",
        "-n",
        "ml",
        "status",
    ])
    .unwrap();
    let mut config = Config::default();
    cli.global.apply_overrides(&mut config);
    assert_eq!(config.cluster.kube_context, "second");
    assert_eq!(config.cluster.namespace, "ml");
    super::client(&config).await.unwrap();
    assert!(
        first.requests().is_empty(),
        "the current context's server is not asked"
    );
    assert!(
        !second.requests().is_empty(),
        "the chosen context's server is asked"
    );

    // Without --context, the kubeconfig's current context.
    let cli = Cli::try_parse_from(["xtask", "--kubeconfig", &path_arg, "status"]).unwrap();
    let mut config = Config::default();
    cli.global.apply_overrides(&mut config);
    super::client(&config).await.unwrap();
    assert!(!first.requests().is_empty());
}

#[tokio::test]
async fn an_unknown_context_is_named_with_how_to_list_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    fs_err::write(
        &path,
        kubeconfig("http://127.0.0.1:1", "http://127.0.0.1:2"),
    )
    .unwrap();
    let mut config = Config::default();
    config.cluster.kubeconfig = Some(path);
    config.cluster.kube_context = "nope".to_owned();
    let Err(error) = super::client(&config).await else {
        panic!("an unknown context must be refused");
    };
    assert!(format!("{error:#}").contains("\"nope\""), "{error:#}");
}
