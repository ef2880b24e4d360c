//! Progress on stderr: the one spinner style of every command, and the step spinner of
//! `deploy`. Hidden when `--quiet`, and drawn by `indicatif` only when stderr is a terminal.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A spinner with the elapsed time and `message`; hidden when `quiet`.
pub(crate) fn spinner(quiet: bool, message: impl Into<String>) -> ProgressBar {
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            .expect("a valid template"),
    );
    bar.set_message(message.into());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// The spinner of the deploy step that is running, shared between the runner's events and the
/// executor's status messages ("waiting for MPIJob … to succeed").
#[derive(Clone, Default)]
pub(crate) struct StepSpinner {
    quiet: bool,
    current: Arc<Mutex<Option<(String, ProgressBar)>>>,
}

impl StepSpinner {
    pub(crate) fn new(quiet: bool) -> Self {
        Self {
            quiet,
            current: Arc::default(),
        }
    }

    /// Starts the spinner of step `id`, replacing any other.
    pub(crate) fn start(&self, id: &str, title: &str) {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, bar)) = current.take() {
            bar.finish_and_clear();
        }
        *current = Some((id.to_owned(), spinner(self.quiet, format!("{id}: {title}"))));
    }

    /// Shows what the running step is doing now.
    pub(crate) fn status(&self, message: &str) {
        let current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((id, bar)) = current.as_ref() {
            bar.set_message(format!("{id}: {message}"));
        }
        tracing::debug!("{message}");
    }

    /// Removes the spinner (the step finished, or it prints lines of its own).
    pub(crate) fn stop(&self) {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, bar)) = current.take() {
            bar.finish_and_clear();
        }
    }
}
