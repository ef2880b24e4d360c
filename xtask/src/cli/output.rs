//! One output convention for every command that reports something: `-o/--output text|json|yaml`
//! (as kubectl's), and one wording for the destructive commands' preview.
//!
//! JSON is one document (pretty-printed) with the fields each command documents; durations
//! are numbers of seconds. YAML is the same document as YAML. `--json`, hidden, is an alias of
//! `-o json` (the older flag of `cache`, `dataset inspect` and `tokenize`).
//!
//! The destructive commands (`cleanup`, `fsx delete`, `cache prune`) take [`ConfirmArgs`]: without
//! `--yes` they print a [`Preview`] and exit 0. `cache prune -o json` prints its richer report
//! with the preview's `command`, `would_remove` and `keeps` added (its `removed` is a count).

use serde::Serialize;

/// How a report is printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON document.
    Json,
    /// One YAML document.
    Yaml,
}

/// The `-o/--output` flag, flattened into each reporting command.
///
/// `--json` (hidden) is an alias of `-o json`, for the scripts and Jobs written before `-o`
/// (deploy's cache-check Job runs `trnkit-stage cache inspect --coverage-only --json`). An
/// explicit `-o` wins over it.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct OutputArgs {
    /// Output format: text, json (one document) or yaml.
    #[arg(
        long = "output",
        short = 'o',
        value_enum,
        default_value_t = Format::Text,
        default_value_if("json", clap::builder::ArgPredicate::IsPresent, "json")
    )]
    pub output: Format,
    /// The same as `-o json`.
    #[arg(long, hide = true)]
    pub json: bool,
}

impl OutputArgs {
    /// `-o json`, as an argument value (for tests and for commands built in code).
    pub const JSON: Self = Self {
        output: Format::Json,
        json: false,
    };

    /// The format asked for.
    pub fn format(self) -> Format {
        self.output
    }

    /// Whether the output is one document for a program (json or yaml): spinners and progress
    /// bars stay off, and lines for people go to stderr.
    pub fn is_document(self) -> bool {
        self.output != Format::Text
    }
}

/// Prints `report` as the format asks: `text` calls `text`, the others serialize `report`.
pub fn emit<T: Serialize>(format: Format, report: &T, text: impl FnOnce()) -> anyhow::Result<()> {
    match format {
        Format::Text => text(),
        Format::Json => out!("{}", serde_json::to_string_pretty(report)?),
        Format::Yaml => out!("{}", serde_saphyr::to_string(report)?.trim_end()),
    }
    Ok(())
}

/// The `--yes/-y` flag of the destructive commands.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct ConfirmArgs {
    /// Do it. Without it, the command only previews what it would remove, changes nothing and
    /// exits 0.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// What a destructive command would remove, for the preview (text or `-o json|yaml`).
#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    /// The command, e.g. `cleanup`.
    pub command: String,
    /// Every item it would remove, in words (`MPIJob default/llama2-train`).
    pub would_remove: Vec<String>,
    /// What it keeps, in words.
    pub keeps: Vec<String>,
    /// Whether anything was removed (always false in a preview).
    pub removed: bool,
}

impl Preview {
    /// Prints the preview in the one wording every destructive command uses.
    pub fn print(&self, format: Format) -> anyhow::Result<()> {
        emit(format, self, || {
            if self.would_remove.is_empty() {
                out!("{}: nothing to remove", self.command);
            } else {
                out!(
                    "{} would remove {} item(s):",
                    self.command,
                    self.would_remove.len()
                );
                for item in &self.would_remove {
                    out!("  {item}");
                }
            }
            for kept in &self.keeps {
                out!("kept: {kept}");
            }
            if !self.would_remove.is_empty() {
                out!("nothing was removed: run again with --yes (-y) to remove them");
            }
        })
    }
}
