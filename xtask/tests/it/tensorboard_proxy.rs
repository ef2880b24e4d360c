//! TensorBoard's basic auth through real nginx (Debian's; `scripts/test` installs it), set up as
//! the pod runs it: the TensorBoard image's own nginx site, a root master with `www-data`
//! workers (the image's Debian `nginx.conf`), and the htpasswd Secret laid out as the kubelet
//! lays it out with the rendered Deployment's `defaultMode` (and `fsGroup`, if any). A stub HTTP
//! server stands in for TensorBoard.
//!
//! It once failed: with `defaultMode: 0440` the root-owned file was unreadable for the workers,
//! so the right password got HTTP 500 while no password still got 401. The second case below
//! keeps that configuration and checks that this harness sees the 500.

#![allow(clippy::print_stderr)]

use std::os::unix::fs::{PermissionsExt as _, symlink};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use test_support::http_stub::HttpStub;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use xtask::config::Config;
use xtask::images::ImageName;

const USER: &str = "admin";
const PASSWORD: &str = "correct-horse-battery-staple";
const STUB_BODY: &str = "tensorboard stub";

/// How the kubelet mounts the htpasswd Secret, read from the rendered Deployment.
#[derive(Debug, Clone, Copy)]
struct SecretMount {
    /// The file's mode: the item's `mode`, else the volume's `defaultMode`, else 0644.
    mode: u32,
    /// The pod's `fsGroup`.
    fs_group: Option<u32>,
}

fn rendered_mount(config: &Config) -> SecretMount {
    let tensorboard = xtask::render::tensorboard_config(config, "tensorboard:test").unwrap();
    let deployment = xtask::tensorboard::deployment(&tensorboard);
    let pod = deployment.spec.unwrap().template.spec.unwrap();
    let volume = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|volume| {
            volume
                .secret
                .as_ref()
                .and_then(|s| s.secret_name.as_deref())
                == Some(&tensorboard.secret_name)
        })
        .expect("the Deployment mounts the htpasswd Secret");
    let secret = volume.secret.unwrap();
    let item_mode = secret
        .items
        .iter()
        .flatten()
        .find(|item| item.key == xtask::tensorboard::HTPASSWD_KEY)
        .and_then(|item| item.mode);
    let mode = item_mode.or(secret.default_mode).unwrap_or(0o644);
    SecretMount {
        mode: u32::try_from(mode).unwrap(),
        fs_group: pod
            .security_context
            .and_then(|context| context.fs_group)
            .map(|gid| u32::try_from(gid).unwrap()),
    }
}

/// Lays the Secret out as the kubelet's atomic writer does: the file in a timestamped directory,
/// `..data` pointing at it, and the key a symlink through `..data`. Root owns the file; with an
/// `fsGroup` its group is that group and it is group-readable (as the kubelet's ownership pass
/// makes it).
fn lay_out_secret(volume: &Path, mount: SecretMount, htpasswd: &str) -> anyhow::Result<()> {
    let timestamped = volume.join("..2026_12_01_14_00_00.123456789");
    fs_err::create_dir_all(&timestamped)?;
    fs_err::set_permissions(&timestamped, std::fs::Permissions::from_mode(0o755))?;
    let file = timestamped.join(xtask::tensorboard::HTPASSWD_KEY);
    fs_err::write(&file, htpasswd)?;
    let mut mode = mount.mode;
    if let Some(gid) = mount.fs_group {
        std::os::unix::fs::chown(&file, Some(0), Some(gid))?;
        mode |= 0o440;
    }
    fs_err::set_permissions(&file, std::fs::Permissions::from_mode(mode))?;
    symlink(timestamped.file_name().unwrap(), volume.join("..data"))?;
    symlink(
        Path::new("..data").join(xtask::tensorboard::HTPASSWD_KEY),
        volume.join(xtask::tensorboard::HTPASSWD_KEY),
    )?;
    Ok(())
}

/// The TensorBoard image's nginx site, from its definition.
fn image_site(config: &Config) -> String {
    let image = xtask::images::image(config, ImageName::Tensorboard, None).unwrap();
    let file = image
        .definition
        .files
        .iter()
        .find(|file| file.path == "nginx.conf")
        .expect("the TensorBoard image has an nginx.conf");
    let ecr_image::FileSource::Bytes(bytes) = &file.source else {
        panic!("nginx.conf is generated")
    };
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Replaces the one occurrence of `from` (the test fails if the site changed shape).
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "{from:?} in:\n{text}");
    text.replacen(from, to, 1)
}

/// A free port on loopback.
async fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// TensorBoard's stand-in: answers every request with 200 and [`STUB_BODY`].
async fn stub() -> HttpStub {
    HttpStub::serve(|_| {
        Some(format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{STUB_BODY}",
            STUB_BODY.len()
        ))
    })
    .await
}

/// `GET path` on `port` with optional basic credentials: the status code and the body.
async fn get(
    port: u16,
    path: &str,
    credentials: Option<(&str, &str)>,
) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    let mut request = format!("GET {path} HTTP/1.0\r\nHost: tensorboard\r\n");
    if let Some((user, password)) = credentials {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        request.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("not an HTTP response: {response:?}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_owned();
    Ok((status, body))
}

/// nginx as the pod runs it, stopped (master and workers) when dropped.
struct Nginx {
    binary: PathBuf,
    conf: PathBuf,
    master: tokio::process::Child,
    error_log: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // A killed master would leave its workers behind: ask it to stop them, and wait for it.
        #[allow(clippy::disallowed_methods)] // Drop cannot await; nginx -s stop returns at once.
        let _ = std::process::Command::new(&self.binary)
            .current_dir("/")
            .arg("-c")
            .arg(&self.conf)
            .args(["-s", "stop"])
            .stderr(std::process::Stdio::null())
            .status();
        for _ in 0..100 {
            if !matches!(self.master.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.master.start_kill();
    }
}

impl Nginx {
    async fn start(binary: &Path, dir: &Path, site: &str) -> anyhow::Result<(Self, u16)> {
        let port = free_port().await;
        let site = replace_once(
            site,
            &format!("listen {} ", ecr_image::TENSORBOARD_PORT),
            &format!("listen 127.0.0.1:{port} "),
        );
        fs_err::write(dir.join("tensorboard.conf"), site)?;
        let error_log = dir.join("error.log");
        // Debian's /etc/nginx/nginx.conf as the image has it (root master, www-data workers),
        // with its paths moved into the test's directory.
        let conf = dir.join("nginx.conf");
        fs_err::write(
            &conf,
            format!(
                "user www-data;\n\
                 worker_processes 1;\n\
                 daemon off;\n\
                 pid {dir}/nginx.pid;\n\
                 error_log {log} info;\n\
                 events {{ worker_connections 64; }}\n\
                 http {{\n\
                 \x20   access_log off;\n\
                 \x20   client_body_temp_path {dir}/client_body;\n\
                 \x20   proxy_temp_path {dir}/proxy;\n\
                 \x20   include {dir}/tensorboard.conf;\n\
                 }}\n",
                dir = dir.display(),
                log = error_log.display(),
            ),
        )?;
        let master = tokio::process::Command::new(binary)
            .current_dir(dir)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(&error_log)
            // Nothing of nginx's may hold the test's output open.
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut nginx = Self {
            binary: binary.to_owned(),
            conf,
            master,
            error_log,
        };
        for _ in 0..100 {
            if let Ok((200, _)) = get(port, "/healthz", None).await {
                return Ok((nginx, port));
            }
            if let Some(status) = nginx.master.try_wait()? {
                anyhow::bail!("nginx exited ({status}): {}", nginx.log());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("nginx did not answer /healthz within 10s: {}", nginx.log())
    }

    fn log(&self) -> String {
        fs_err::read_to_string(&self.error_log).unwrap_or_default()
    }
}

/// The statuses of: no credentials, the right ones, a wrong password, `/healthz`; and the body
/// the right credentials got.
#[derive(Debug, PartialEq, Eq)]
struct Answers {
    anonymous: u16,
    right: u16,
    wrong: u16,
    health: u16,
    right_body: String,
}

async fn answers(nginx: &Path, mount: SecretMount) -> anyhow::Result<Answers> {
    let dir = tempfile::tempdir()?;
    // www-data must reach the files, as it reaches the pod's mount.
    fs_err::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let config = Config::default();
    let volume = dir.path().join("auth");
    lay_out_secret(
        &volume,
        mount,
        &xtask::tensorboard::htpasswd(USER, PASSWORD),
    )?;
    let upstream = stub().await;
    let site = replace_once(
        &image_site(&config),
        ecr_image::TENSORBOARD_HTPASSWD_DIR,
        &volume.display().to_string(),
    );
    let site = replace_once(&site, "http://127.0.0.1:6006", &upstream.url());
    let (server, port) = Nginx::start(nginx, dir.path(), &site).await?;
    let (right, right_body) = get(port, "/", Some((USER, PASSWORD))).await?;
    let result = Answers {
        anonymous: get(port, "/", None).await?.0,
        right,
        wrong: get(port, "/", Some((USER, "wrong-password"))).await?.0,
        health: get(port, "/healthz", None).await?.0,
        right_body,
    };
    if result.right != 200 {
        eprintln!("nginx's error log:\n{}", server.log());
    }
    drop(server);
    Ok(result)
}

/// Root is needed for what the pod does: a root master whose workers switch to `www-data`.
fn root() -> Option<()> {
    // SAFETY-free check: /proc/self/status names the effective uid.
    let status = fs_err::read_to_string("/proc/self/status").ok()?;
    let euid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))?;
    if euid == "0" {
        Some(())
    } else {
        test_support::services::missing(
            "root (nginx's master must switch its workers to www-data)",
            "the tests run as a normal user",
        )?;
        None
    }
}

#[tokio::test]
async fn the_right_password_reaches_tensorboard_and_others_get_401() {
    let Some(nginx) = test_support::services::nginx() else {
        return;
    };
    if root().is_none() {
        return;
    }
    let mount = rendered_mount(&Config::default());
    let fixed = answers(&nginx, mount).await.unwrap();
    assert_eq!(
        fixed,
        Answers {
            anonymous: 401,
            right: 200,
            wrong: 401,
            health: 200,
            right_body: STUB_BODY.to_owned(),
        },
        "with the rendered mount {mount:?}"
    );

    // The configuration this test caught: root-owned, 0440, no fsGroup. The probe still passes
    // and strangers still get 401, but the right password gets 500.
    let broken = answers(
        &nginx,
        SecretMount {
            mode: 0o440,
            fs_group: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (broken.anonymous, broken.right, broken.health),
        (401, 500, 200),
        "{broken:?}"
    );
}
