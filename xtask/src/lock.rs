//! Exclusive locks for the commands that write shared state, so that two runs never interleave
//! their writes.
//!
//! - [`FileLock`]: an advisory `flock` on a file (the local work directory, a dataset prefix),
//!   released by the kernel when the process ends, however it ends. The file also records who
//!   holds it, for the message the second run prints.
//! - [`LeaseLock`]: a `coordination.k8s.io/v1` Lease next to the deploy state in the cluster,
//!   renewed while the holder runs and taken over only once it has expired, so a deploy killed
//!   on one machine does not block the next for longer than the lease's duration.
//!
//! A second run fails at once naming the holder, or waits with `--wait`.

use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams};

/// Who holds a lock: enough for a person to find the other run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// `user@host`.
    pub who: String,
    /// The process.
    pub pid: u32,
    /// The command, for example `deploy`.
    pub command: String,
    /// When it took the lock (RFC 3339).
    pub since: String,
}

impl Holder {
    /// This process, running `command`.
    pub fn this_process(command: &str) -> Self {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "someone".to_owned());
        let host = fs_err::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_owned())
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| "this machine".to_owned());
        Self {
            who: format!("{user}@{host}"),
            pid: std::process::id(),
            command: command.to_owned(),
            since: crate::deploy::state::now(),
        }
    }

    /// One line: `user@host, pid 42, "deploy", since 2026-12-01T14:00:00Z`.
    pub fn describe(&self) -> String {
        format!(
            "{}, pid {}, `{}`, since {}",
            self.who, self.pid, self.command, self.since
        )
    }

    fn encode(&self) -> String {
        format!(
            "who={}\npid={}\ncommand={}\nsince={}\n",
            self.who, self.pid, self.command, self.since
        )
    }

    fn decode(text: &str) -> Option<Self> {
        let field = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
                .map(str::to_owned)
        };
        Some(Self {
            who: field("who")?,
            pid: field("pid")?.parse().ok()?,
            command: field("command")?,
            since: field("since")?,
        })
    }
}

/// Why a lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another run holds it.
    #[error(
        "{what} is in use by another trnkit run ({holder}); wait for it to finish, or pass \
         --wait to wait for it"
    )]
    Held {
        /// What is locked (a path or an object).
        what: String,
        /// Who holds it, as far as recorded.
        holder: String,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock {}", path.display())]
    File {
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The Lease could not be read or written.
    #[error("cannot take the Lease {namespace}/{name} that keeps deploys apart")]
    Lease {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
}

/// An exclusive advisory lock on a file, held until dropped (or the process ends).
#[derive(Debug)]
pub struct FileLock {
    path: PathBuf,
    file: fs_err::File,
}

impl FileLock {
    /// Takes the lock on `path` (created if missing): at once, or failing with the holder;
    /// with `wait`, blocking until the holder lets go.
    pub fn acquire(path: &Path, holder: &Holder, wait: bool) -> Result<Self, LockError> {
        let io = |source| LockError::File {
            path: path.to_owned(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs_err::create_dir_all(parent).map_err(io)?;
        }
        let mut file = fs_err::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        match file.file().try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) if wait => {
                tracing::warn!(
                    "{} is in use by another trnkit run ({}); waiting for it",
                    path.display(),
                    read_holder(&mut file)
                );
                file.file().lock().map_err(io)?;
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(LockError::Held {
                    what: path.display().to_string(),
                    holder: read_holder(&mut file),
                });
            }
            Err(std::fs::TryLockError::Error(source)) => return Err(io(source)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        file.write_all(holder.encode().as_bytes()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(Self {
            path: path.to_owned(),
            file,
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = self.file.file().unlock();
    }
}

fn read_holder(file: &mut fs_err::File) -> String {
    let mut text = String::new();
    let _ = file.rewind();
    let _ = file.read_to_string(&mut text);
    Holder::decode(&text)
        .map(|holder| holder.describe())
        .unwrap_or_else(|| "holder unknown".to_owned())
}

/// How long a Lease lasts without renewal, and how often the holder renews it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTiming {
    /// A holder that has not renewed for this long is taken to be gone.
    pub duration: Duration,
    /// How often the holder renews.
    pub renew_every: Duration,
    /// With `--wait`: how often a waiting run looks again.
    pub poll_every: Duration,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(90),
            renew_every: Duration::from_secs(20),
            poll_every: Duration::from_secs(10),
        }
    }
}

/// A Lease held in the cluster; renewed in the background until dropped or released.
#[derive(Debug)]
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    renewer: tokio::task::JoinHandle<()>,
}

/// The Lease's holder identity: the holder's description.
fn identity(holder: &Holder) -> String {
    holder.describe()
}

fn lease_expired(lease: &Lease, now: Timestamp) -> bool {
    let Some(spec) = &lease.spec else { return true };
    let (Some(renewed), Some(seconds)) = (&spec.renew_time, spec.lease_duration_seconds) else {
        return true;
    };
    let expires = renewed
        .0
        .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(i64::from(
            seconds,
        )))
        .unwrap_or(renewed.0);
    expires < now
}

fn lease_object(name: &str, holder: &Holder, timing: LeaseTiming, transitions: i32) -> Lease {
    let now = MicroTime(Timestamp::now());
    Lease {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(
                [(
                    "app.kubernetes.io/managed-by".to_owned(),
                    "trnkit".to_owned(),
                )]
                .into(),
            ),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(identity(holder)),
            lease_duration_seconds: Some(
                i32::try_from(timing.duration.as_secs()).unwrap_or(i32::MAX),
            ),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..Default::default()
        }),
    }
}

impl LeaseLock {
    /// Takes the Lease `name`: creates it, or takes over one that expired; fails naming the
    /// holder of a live one, or with `wait` looks again every `timing.poll_every`.
    pub async fn acquire(
        api: Api<Lease>,
        namespace: &str,
        name: &str,
        holder: &Holder,
        wait: bool,
        timing: LeaseTiming,
    ) -> Result<Self, LockError> {
        let error = |source| LockError::Lease {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source,
        };
        loop {
            let taken = match api.get_opt(name).await.map_err(error)? {
                None => match api
                    .create(
                        &PostParams::default(),
                        &lease_object(name, holder, timing, 0),
                    )
                    .await
                {
                    Ok(_) => true,
                    Err(kube::Error::Api(status)) if status.code == 409 => false,
                    Err(source) => return Err(error(source)),
                },
                Some(current) if lease_expired(&current, Timestamp::now()) => {
                    let transitions = current
                        .spec
                        .as_ref()
                        .and_then(|spec| spec.lease_transitions)
                        .unwrap_or(0)
                        .saturating_add(1);
                    if let Some(previous) = current
                        .spec
                        .as_ref()
                        .and_then(|spec| spec.holder_identity.clone())
                    {
                        tracing::warn!(
                            "the Lease {namespace}/{name} of {previous} expired (that run ended without releasing it); taking it over"
                        );
                    }
                    let mut lease = lease_object(name, holder, timing, transitions);
                    lease.metadata.resource_version = current.metadata.resource_version;
                    match api.replace(name, &PostParams::default(), &lease).await {
                        Ok(_) => true,
                        Err(kube::Error::Api(status)) if status.code == 409 => false,
                        Err(source) => return Err(error(source)),
                    }
                }
                Some(current) => {
                    let holder_now = current
                        .spec
                        .and_then(|spec| spec.holder_identity)
                        .unwrap_or_else(|| "holder unknown".to_owned());
                    if !wait {
                        return Err(LockError::Held {
                            what: format!("the deploy state (Lease {namespace}/{name})"),
                            holder: holder_now,
                        });
                    }
                    tracing::warn!(
                        "the deploy state (Lease {namespace}/{name}) is in use by {holder_now}; waiting"
                    );
                    false
                }
            };
            if taken {
                let renewer = tokio::spawn(renew(api.clone(), name.to_owned(), timing));
                return Ok(Self {
                    api,
                    name: name.to_owned(),
                    renewer,
                });
            }
            tokio::time::sleep(timing.poll_every).await;
        }
    }

    /// Lets go: stops renewing and deletes the Lease, so the next run need not wait.
    pub async fn release(self) {
        self.renewer.abort();
        if let Err(error) = self.api.delete(&self.name, &DeleteParams::default()).await {
            tracing::warn!(
                "could not delete the Lease {} (the next run takes it over once it expires): {error}",
                self.name
            );
        }
    }
}

impl Drop for LeaseLock {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

async fn renew(api: Api<Lease>, name: String, timing: LeaseTiming) {
    loop {
        tokio::time::sleep(timing.renew_every).await;
        let result = async {
            let mut lease = api.get(&name).await?;
            if let Some(spec) = lease.spec.as_mut() {
                spec.renew_time = Some(MicroTime(Timestamp::now()));
            }
            api.replace(&name, &PostParams::default(), &lease).await
        }
        .await;
        if let Err(error) = result {
            tracing::warn!("could not renew the Lease {name}: {error}");
        }
    }
}

#[cfg(test)]
mod tests;
