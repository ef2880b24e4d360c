//! Progress on stderr: the one spinner style of every command, the step spinner of `deploy`,
//! and [`show`], which prints the runner's events (for the local and the EKS deploy alike, so
//! neither command module reaches into the other). Hidden when `--quiet`.
//!
//! - On a terminal, `indicatif` draws the spinners, all in one [`MultiProgress`]; log lines go
//!   through [`LogWriter`], which lifts the spinners off the screen while a line is written, so
//!   no line is ever printed over a spinner.
//! - Elsewhere (CI logs, a file), nothing is drawn; instead the step spinner prints a plain
//!   status line at a steady interval ([`PLAIN_INTERVAL`]): what is awaited and for how long,
//!   so a two-hour wait is never two hours of silence.

use std::io::IsTerminal as _;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::deploy::plan::StepId;
use crate::deploy::run::Event;

/// How often a step's status is printed when stderr is not a terminal.
pub(crate) const PLAIN_INTERVAL: Duration = Duration::from_secs(60);

/// The one set of spinners of this process (drawn on stderr when it is a terminal).
pub(crate) fn multi() -> &'static MultiProgress {
    static MULTI: OnceLock<MultiProgress> = OnceLock::new();
    MULTI.get_or_init(|| {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        MultiProgress::with_draw_target(target)
    })
}

/// Whether colour may be used on stderr: a terminal, and `NO_COLOR` unset or empty
/// (<https://no-color.org>).
pub(crate) fn colour() -> bool {
    std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
}

/// The writer of log lines: stderr, with the spinners lifted while a line is written.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        multi().suspend(|| std::io::stderr().lock().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

/// A spinner with the elapsed time and `message`; hidden when `quiet`.
pub(crate) fn spinner(quiet: bool, message: impl Into<String>) -> ProgressBar {
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        multi().add(ProgressBar::new_spinner())
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
    current: Arc<Mutex<Option<Running>>>,
}

struct Running {
    id: String,
    bar: ProgressBar,
    started: Instant,
    /// When a plain status line was last printed (not on a terminal).
    printed: Instant,
}

/// The plain status line: `[12m30s] compile: waiting for ...`.
pub(crate) fn plain_status(id: &str, elapsed: Duration, message: &str) -> String {
    let seconds = elapsed.as_secs();
    let elapsed = match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h{:02}m", seconds / 3600, (seconds % 3600) / 60),
    };
    format!("[{elapsed}] {id}: {message}")
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
        if let Some(running) = current.take() {
            running.bar.finish_and_clear();
        }
        let now = Instant::now();
        *current = Some(Running {
            id: id.to_owned(),
            bar: spinner(self.quiet, format!("{id}: {title}")),
            started: now,
            printed: now,
        });
    }

    /// Shows what the running step is doing now; when stderr is not a terminal, prints it as
    /// a plain line at most every [`PLAIN_INTERVAL`] (and the first time).
    pub(crate) fn status(&self, message: &str) {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(running) = current.as_mut() {
            running
                .bar
                .set_message(format!("{}: {message}", running.id));
            let first = running.printed == running.started;
            if !self.quiet
                && !std::io::stderr().is_terminal()
                && (first || running.printed.elapsed() >= PLAIN_INTERVAL)
            {
                running.printed = Instant::now();
                let line = plain_status(&running.id, running.started.elapsed(), message);
                let _ = std::io::Write::write_all(
                    &mut std::io::stderr().lock(),
                    format!("{line}\n").as_bytes(),
                );
            }
        }
        tracing::debug!("{message}");
    }

    /// Removes the spinner (the step finished, or it prints lines of its own).
    pub(crate) fn stop(&self) {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(running) = current.take() {
            running.bar.finish_and_clear();
        }
    }
}

/// Prints one runner event; a running step shows a spinner with its elapsed time, except
/// the steps that print lines of their own (images draws its own bars, follow prints the log).
pub(crate) fn show(spinner: &StepSpinner, event: Event) {
    match event {
        Event::Started { id, title } => {
            spinner.stop();
            eprintln!("==> {id}: {title}");
            if !matches!(id, StepId::Images | StepId::Follow) {
                spinner.start(id.name(), &title);
            }
        }
        Event::UpToDate { id, summary } => eprintln!("    {id}: up to date ({summary})"),
        Event::NotSelected { id } => tracing::debug!("{id}: not selected"),
        Event::Finished { id, summary } => {
            spinner.stop();
            eprintln!("    {id}: done: {summary}");
        }
        Event::Failed { id, error } => {
            spinner.stop();
            eprintln!("    {id}: FAILED: {error}");
        }
    }
}
