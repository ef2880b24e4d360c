//! Progress reporting: the library emits [`Event`]s, the caller decides how to show them.
//!
//! The crate never prints. The command line turns events into progress bars; tests collect them;
//! [`NoProgress`] drops them. Events never carry credentials.

use std::time::Duration;

/// Something that happened during a build or push.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The context was hashed; the content tag is known.
    ContextHashed {
        /// Regular files in the context.
        files: usize,
        /// Their total size in bytes.
        bytes: u64,
        /// The content tag derived from the context and options.
        tag: String,
    },
    /// Asking the registry whether it already holds a reference.
    CheckingRegistry {
        /// The reference.
        reference: String,
    },
    /// The registry already holds the content tag: nothing to build or push.
    AlreadyInRegistry {
        /// The reference.
        reference: String,
        /// Its manifest digest.
        digest: String,
    },
    /// The engine already holds an image with the content tag: no need to build it.
    AlreadyBuilt {
        /// The local reference.
        reference: String,
    },
    /// The build started.
    BuildStarted {
        /// The reference being built.
        reference: String,
    },
    /// The builder moved to a Dockerfile instruction.
    BuildStep {
        /// 1-based index of the step.
        index: u32,
        /// Number of steps.
        total: u32,
        /// The instruction, e.g. `RUN make`.
        instruction: String,
    },
    /// A line of build output.
    BuildOutput {
        /// The line, without its newline.
        line: String,
    },
    /// The image was built.
    Built {
        /// The engine's image id.
        image_id: String,
    },
    /// Pushing a reference started.
    PushStarted {
        /// The reference.
        reference: String,
    },
    /// Progress of a push, as the engine reports it (per layer, but without the layer's id).
    PushProgress {
        /// The engine's status (`Preparing`, `Pushing`, `Pushed`, `Layer already exists`, ...).
        status: String,
        /// Bytes sent so far, when known.
        current: Option<u64>,
        /// Layer size, when known.
        total: Option<u64>,
    },
    /// A transient push failure; the push will be tried again after `delay`.
    Retrying {
        /// The attempt that failed (1-based).
        attempt: u32,
        /// The maximum number of attempts.
        attempts: u32,
        /// How long until the next attempt.
        delay: Duration,
        /// The failure's message.
        message: String,
    },
    /// A reference was pushed.
    Pushed {
        /// The reference.
        reference: String,
        /// The manifest digest the registry stored.
        digest: String,
    },
    /// A human tag already pointed at the image.
    TagUnchanged {
        /// The reference.
        reference: String,
    },
}

/// Receives progress events. Implemented for closures `Fn(&Event)`.
pub trait Progress: Send + Sync {
    /// Called for each event, in order.
    fn event(&self, event: &Event);
}

impl<F: Fn(&Event) + Send + Sync> Progress for F {
    fn event(&self, event: &Event) {
        self(event);
    }
}

/// Ignores every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _event: &Event) {}
}
