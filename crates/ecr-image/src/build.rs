//! Building an image through the engine's `/build` endpoint.
//!
//! The context is written as a tar on a blocking thread and streamed to the engine in chunks, so
//! a large context is never held in memory. While writing, the context is hashed again; if the
//! files changed since the content tag was computed, the upload is aborted, because the tag
//! would no longer describe the image. Build output is parsed into step and output events, and a
//! failed instruction is reported with the step and the last lines of its output.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::query_parameters::BuildImageOptionsBuilder;
use bytes::Bytes;
use futures::StreamExt as _;
use tokio::sync::mpsc;

use crate::context::{BuildContext, ContextDigest};
use crate::engine::{engine_message, local_image_id};
use crate::error::{Error, Result};
use crate::progress::{Event, Progress};
use crate::reference::BuildOptions;

/// How many lines of output a build failure reports.
const TAIL_LINES: usize = 20;

/// Size of the chunks the context tar is streamed in.
const CHUNK_BYTES: usize = 256 * 1024;

/// An image the engine built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    /// The name it was tagged with.
    pub reference: String,
    /// The engine's image id (`sha256:...`).
    pub image_id: String,
}

/// Builds `context` and tags the result as `reference`.
///
/// `expected` is the digest the content tag was derived from; when the files no longer match it,
/// the build is aborted with [`Error::ContextChanged`].
#[tracing::instrument(skip_all, fields(reference = %reference))]
pub async fn build(
    docker: &Docker,
    context: &BuildContext,
    options: &BuildOptions,
    reference: &str,
    expected: Option<&ContextDigest>,
    progress: &dyn Progress,
) -> Result<BuiltImage> {
    options.check()?;
    progress.event(&Event::BuildStarted {
        reference: reference.to_owned(),
    });

    let (sender, receiver) = mpsc::channel::<io::Result<Bytes>>(8);
    let writer_context = context.clone();
    let expected = expected.cloned();
    let writer = tokio::task::spawn_blocking(move || {
        let error_sender = sender.clone();
        let result = write_context(
            &writer_context,
            ChannelWriter::new(sender),
            expected.as_ref(),
        );
        if result.is_err() {
            // Abort the upload so the engine does not build a truncated context.
            let _ = error_sender
                .blocking_send(Err(io::Error::other("the build context could not be sent")));
        }
        result
    });
    let body = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    });

    let build_args: HashMap<&str, &str> = options
        .build_args
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let mut builder = BuildImageOptionsBuilder::default()
        .dockerfile(context.dockerfile())
        .t(reference)
        .rm(true)
        .forcerm(true)
        .nocache(options.no_cache)
        .platform(&options.platform)
        .buildargs(&build_args);
    if let Some(target) = &options.target {
        builder = builder.target(target);
    }

    let mut stream =
        docker.build_image(builder.build(), None, Some(bollard::body_try_stream(body)));
    let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES);
    let mut step: Option<String> = None;
    let mut image_id: Option<String> = None;
    let mut failure: Option<Error> = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(text) = info.stream.as_deref() {
                    for line in text
                        .lines()
                        .map(str::trim_end)
                        .filter(|line| !line.is_empty())
                    {
                        if let Some((index, total, instruction)) = parse_step(line) {
                            step = Some(line.trim().to_owned());
                            progress.event(&Event::BuildStep {
                                index,
                                total,
                                instruction,
                            });
                        } else {
                            progress.event(&Event::BuildOutput {
                                line: line.to_owned(),
                            });
                        }
                        if tail.len() == TAIL_LINES {
                            tail.pop_front();
                        }
                        tail.push_back(line.to_owned());
                    }
                }
                if let Some(status) = info.status.as_deref() {
                    progress.event(&Event::BuildOutput {
                        line: status.to_owned(),
                    });
                }
                if let Some(id) = info.aux.and_then(|aux| aux.id) {
                    image_id = Some(id);
                }
            }
            Err(error) => {
                failure = Some(build_error(
                    error,
                    context,
                    reference,
                    step.take(),
                    &mut tail,
                ));
                break;
            }
        }
    }
    drop(stream);

    // A context that could not be read or changed under us explains any engine error.
    match writer.await {
        Ok(Err(error)) => return Err(error),
        Ok(Ok(())) => {}
        Err(join) => {
            return Err(Error::ReadContext {
                path: context.description().into(),
                source: io::Error::other(join.to_string()),
            });
        }
    }
    if let Some(error) = failure {
        return Err(error);
    }
    let image_id = match image_id {
        Some(id) => id,
        None => local_image_id(docker, reference)
            .await?
            .ok_or_else(|| Error::BuildFailed {
                image: reference.to_owned(),
                step: None,
                message: "the engine finished without producing an image".to_owned(),
                tail: tail.iter().cloned().collect(),
            })?,
    };
    progress.event(&Event::Built {
        image_id: image_id.clone(),
    });
    Ok(BuiltImage {
        reference: reference.to_owned(),
        image_id,
    })
}

fn write_context(
    context: &BuildContext,
    writer: ChannelWriter,
    expected: Option<&ContextDigest>,
) -> Result<()> {
    context.write_tar_checked(writer, expected)?;
    Ok(())
}

fn build_error(
    error: DockerError,
    context: &BuildContext,
    reference: &str,
    step: Option<String>,
    tail: &mut VecDeque<String>,
) -> Error {
    match engine_message(&error) {
        Some((_, message)) if message.contains("Cannot locate specified Dockerfile") => {
            Error::DockerfileNotFound {
                path: format!("{}/{}", context.description(), context.dockerfile()).into(),
            }
        }
        Some((status, message))
            if status.is_none() || status == Some(500) || status == Some(400) =>
        {
            Error::BuildFailed {
                image: reference.to_owned(),
                step,
                message: message.trim().to_owned(),
                tail: tail.drain(..).collect(),
            }
        }
        _ => Error::Docker {
            operation: "build",
            target: reference.to_owned(),
            source: error,
        },
    }
}

/// Parses `Step 2/5 : RUN make` into `(2, 5, "RUN make")`.
pub(crate) fn parse_step(line: &str) -> Option<(u32, u32, String)> {
    let rest = line.trim().strip_prefix("Step ")?;
    let (counts, instruction) = rest.split_once(" : ")?;
    let (index, total) = counts.split_once('/')?;
    Some((
        index.parse().ok()?,
        total.parse().ok()?,
        instruction.trim().to_owned(),
    ))
}

/// An `io::Write` that sends fixed-size chunks to an async channel (from a blocking thread).
struct ChannelWriter {
    sender: mpsc::Sender<io::Result<Bytes>>,
    buffer: Vec<u8>,
}

impl ChannelWriter {
    fn new(sender: mpsc::Sender<io::Result<Bytes>>) -> Self {
        Self {
            sender,
            buffer: Vec::with_capacity(CHUNK_BYTES),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(CHUNK_BYTES),
        ));
        self.sender.blocking_send(Ok(chunk)).map_err(|_| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the docker engine stopped reading the build context",
            )
        })
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= CHUNK_BYTES {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

#[cfg(test)]
mod tests;
