//! The analysis of a training log, built incrementally: an [`Analyzer`] is fed raw lines as
//! they stream (or a whole file) and answers with an [`Analysis`] at any moment.
//!
//! The rules come from real logs (the excerpts under `observe/testdata/`, each with its source):
//! NeMo's progress bar (`Epoch 0: 3%| 565/20101 [2:12:19<76:15:08, 14.05s/it, loss=nan,
//! reduced_train_loss=3.910, global_step=564.0, consumed_samples=1.45e+5, throughput=19.00]`),
//! the Neuron compile cache's wrapper lines, the collectives' (`CCOM`/`NCCL`) network
//! lines, the Neuron runtime's errors and Python tracebacks. Unknown values stay `None`.

use serde::Serialize;

use super::line;

/// How the collectives reach the other nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// The OFI plugin selected the EFA provider.
    Efa,
    /// OFI/EFA failed to initialize, or the collectives fell back to sockets.
    Tcp,
}

/// The category of a condition that waiting cannot fix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fatal {
    /// A Neuron runtime failure, such as a NEFF that failed to load.
    Runtime,
    /// A collective or bootstrap timeout (the "retrying" ones too: in practice they are hangs).
    CollectivesTimeout,
    /// The Neuron compiler failed.
    CompileFailed,
    /// The runtime rejected a NEFF as invalid (broken, or of an unsupported version).
    NeffInvalid,
    /// Device memory could not be allocated.
    Oom,
    /// Any other Python traceback.
    Traceback,
}

impl Fatal {
    /// The category's name, as in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Fatal::Runtime => "runtime",
            Fatal::CollectivesTimeout => "collectives_timeout",
            Fatal::CompileFailed => "compile_failed",
            Fatal::NeffInvalid => "neff_invalid",
            Fatal::Oom => "oom",
            Fatal::Traceback => "traceback",
        }
    }
}

/// The Neuron compile cache's events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CacheEvents {
    /// "Using a cached neff" lines: graphs loaded from the cache instead of compiled.
    pub cached_neff_hits: u64,
    /// "Got a cached failed neff" lines: graphs whose earlier compilation failed, skipped.
    pub cached_failed: u64,
    /// The last count of locked entries `neuron_parallel_compile` reported.
    pub locked: Option<u64>,
}

/// What a log says about the run. Serialized, it is `logs analyze`'s JSON object.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Analysis {
    /// The last `global_step=` NeMo reported.
    pub last_global_step: Option<u64>,
    /// The total of the last progress counter `i/N`.
    pub total_steps: Option<u64>,
    /// The last `s/it`, or the inverse of `it/s`.
    pub seconds_per_step: Option<f64>,
    /// The last finite training loss: `reduced_train_loss`, else the trainer's `loss`.
    pub loss: Option<f64>,
    /// The last `throughput=`.
    pub throughput: Option<f64>,
    /// The last `consumed_samples=`.
    pub consumed_samples: Option<f64>,
    /// EFA or TCP, when the collectives said.
    pub network: Option<Network>,
    /// The compile cache's events.
    pub cache: CacheEvents,
    /// The first fatal condition's category.
    pub fatal: Option<Fatal>,
    /// The training loss was NaN at least once.
    pub nan_loss: bool,
}

/// What one fed line carried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fed {
    /// A progress record (a counter `i/N` or a `global_step=`): the run is moving.
    pub progress: bool,
}

/// Lines kept as evidence, at most.
const EVIDENCE_LINES: usize = 12;
/// Lines before a fatal line kept as its context.
const CONTEXT_LINES: usize = 3;

/// The incremental analysis: feed it lines, ask it for the [`Analysis`] at any time.
#[derive(Clone, Debug, Default)]
pub struct Analyzer {
    last_global_step: Option<u64>,
    total_steps: Option<u64>,
    seconds_per_step: Option<f64>,
    reduced_loss: Option<f64>,
    reduced_seen: bool,
    reduced_nan: bool,
    trainer_loss: Option<f64>,
    trainer_nan: bool,
    throughput: Option<f64>,
    consumed_samples: Option<f64>,
    efa: bool,
    tcp: bool,
    cache: CacheEvents,
    specific_fatal: Option<Fatal>,
    traceback: bool,
    records: usize,
    traceback_at: Option<usize>,
    context: Vec<String>,
    fatal_evidence: Vec<String>,
    traceback_evidence: Vec<String>,
    network_evidence: Vec<String>,
}

/// The analysis of a whole text.
pub fn analyze(text: &str) -> Analysis {
    read(text).analysis()
}

/// An analyzer fed every line of `text` (for its evidence as well as its analysis).
pub fn read(text: &str) -> Analyzer {
    let mut analyzer = Analyzer::default();
    for raw in text.lines() {
        analyzer.feed(raw);
    }
    analyzer
}

impl Analyzer {
    /// Feeds one raw line (which may hold several carriage-return-separated records).
    pub fn feed(&mut self, raw: &str) -> Fed {
        let mut fed = Fed::default();
        for record in line::records(raw) {
            fed.progress |= self.feed_record(&record);
        }
        fed
    }

    /// The analysis of everything fed so far.
    pub fn analysis(&self) -> Analysis {
        let (loss, nan_loss) = if self.reduced_seen {
            (self.reduced_loss, self.reduced_nan)
        } else {
            (self.trainer_loss, self.trainer_nan)
        };
        Analysis {
            last_global_step: self.last_global_step,
            total_steps: self.total_steps,
            seconds_per_step: self.seconds_per_step,
            loss,
            throughput: self.throughput,
            consumed_samples: self.consumed_samples,
            network: if self.tcp {
                Some(Network::Tcp)
            } else if self.efa {
                Some(Network::Efa)
            } else {
                None
            },
            cache: self.cache,
            fatal: self
                .specific_fatal
                .or(self.traceback.then_some(Fatal::Traceback)),
            nan_loss,
        }
    }

    /// The lines that show the fatal condition (with a little context before it).
    pub fn fatal_evidence(&self) -> &[String] {
        if self.specific_fatal.is_some() {
            &self.fatal_evidence
        } else {
            &self.traceback_evidence
        }
    }

    /// The lines that decided the network (the TCP ones when there are any).
    pub fn network_evidence(&self) -> &[String] {
        &self.network_evidence
    }

    /// Records fed since the first traceback started, if one did: a traceback's specific cause
    /// (a runtime error, an allocation failure) may follow it by a few lines.
    pub fn records_since_traceback(&self) -> Option<usize> {
        self.traceback_at.map(|at| self.records - at)
    }

    fn feed_record(&mut self, record: &str) -> bool {
        self.records += 1;
        let mut progress = false;

        let count = |value: &f64| value.is_finite() && *value >= 0.0;
        if let Some(step) = last_number(record, "global_step=").filter(count) {
            self.last_global_step = Some(step as u64);
            progress = true;
        }
        if let Some((_, total)) = last_counter(record) {
            self.total_steps = Some(total);
            progress = true;
            if let Some(seconds) = last_rate(record) {
                self.seconds_per_step = Some(seconds);
            }
        }
        for value in numbers(record, "reduced_train_loss=") {
            self.reduced_seen = true;
            if value.is_nan() {
                self.reduced_nan = true;
            } else if value.is_finite() {
                self.reduced_loss = Some(value);
            }
        }
        for value in numbers(record, "loss=")
            .into_iter()
            .chain(numbers(record, "'loss': "))
        {
            if value.is_nan() {
                self.trainer_nan = true;
            } else if value.is_finite() {
                self.trainer_loss = Some(value);
            }
        }
        if let Some(value) = last_number(record, "throughput=").filter(|v| v.is_finite()) {
            self.throughput = Some(value);
        }
        if let Some(value) = last_number(record, "consumed_samples=").filter(|v| v.is_finite()) {
            self.consumed_samples = Some(value);
        }

        self.cache.cached_neff_hits += record.matches("Using a cached neff").count() as u64;
        self.cache.cached_failed += record.matches("Got a cached failed neff").count() as u64;
        if let Some(locked) = last_number(record, "locked are ").filter(count) {
            self.cache.locked = Some(locked as u64);
        }

        match network_of(record) {
            Some(Network::Tcp) => {
                if !self.tcp {
                    self.network_evidence.clear();
                }
                self.tcp = true;
                if self.network_evidence.len() < EVIDENCE_LINES {
                    self.network_evidence.push(record.to_owned());
                }
            }
            Some(Network::Efa) => {
                if !self.efa && !self.tcp {
                    self.network_evidence.push(record.to_owned());
                }
                self.efa = true;
            }
            None => {}
        }

        if self.specific_fatal.is_none() {
            if let Some(fatal) = specific_fatal_of(record) {
                self.specific_fatal = Some(fatal);
                self.fatal_evidence = self.context.clone();
                self.fatal_evidence.push(record.to_owned());
            }
        } else if self.fatal_evidence.len() < EVIDENCE_LINES && is_error_line(record) {
            self.fatal_evidence.push(record.to_owned());
        }
        if record.contains("Traceback (most recent call last)") && !self.traceback {
            self.traceback = true;
            self.traceback_at = Some(self.records);
        }
        if self.traceback && self.traceback_evidence.len() < EVIDENCE_LINES {
            self.traceback_evidence.push(record.to_owned());
        }

        self.context.push(record.to_owned());
        if self.context.len() > CONTEXT_LINES {
            self.context.remove(0);
        }
        progress
    }
}

/// Whether an error line more belongs to a fatal condition's evidence.
fn is_error_line(record: &str) -> bool {
    record.contains("ERROR") || record.contains("WARN") || record.contains("Error")
}

/// The network a record reports, if any.
fn network_of(record: &str) -> Option<Network> {
    let lower = record.to_ascii_lowercase();
    const TCP: [&str; 6] = [
        "aws-ofi-nccl initialization failed",
        "ofi plugin initnet() failed",
        "using network socket",
        "couldn't find any optimal provider",
        "ofi nccl failure",
        "falling back to socket",
    ];
    const EFA: [&str; 3] = [
        "selected provider is efa",
        "using network aws libfabric",
        "using network libfabric",
    ];
    if TCP.iter().any(|pattern| lower.contains(pattern)) {
        Some(Network::Tcp)
    } else if EFA.iter().any(|pattern| lower.contains(pattern)) {
        Some(Network::Efa)
    } else {
        None
    }
}

/// The fatal category of a record, other than a plain traceback. The more specific categories
/// are checked first: an invalid NEFF's line also names `nrt_load`.
fn specific_fatal_of(record: &str) -> Option<Fatal> {
    let lower = record.to_ascii_lowercase();
    let any = |patterns: &[&str]| patterns.iter().any(|pattern| record.contains(pattern));
    if any(&[
        "Failed to alloc DEVICE memory",
        "Allocation Failure",
        "dmem_alloc_internal",
        "RESOURCE_EXHAUSTED",
    ]) || (record.contains("Failed to allocate")
        && (record.contains("DEVICE") || record.contains(" on ND ")))
    {
        return Some(Fatal::Oom);
    }
    if any(&["NEFF is invalid", "NEFF:neff_parse", "Invalid NEFF"]) {
        return Some(Fatal::NeffInvalid);
    }
    if any(&[
        "Timeout waiting for RX",
        "Timeout waiting for incoming connection",
        "collective operation timeout",
        "milliseconds before timing out",
    ]) || (lower.contains("bootstrap")
        && [
            "timed out",
            "timeout waiting",
            "timeout after",
            "- retrying",
        ]
        .iter()
        .any(|pattern| lower.contains(pattern)))
    {
        return Some(Fatal::CollectivesTimeout);
    }
    if any(&[
        "Compilation failed for",
        "Compilation failed after",
        "compilation failed with",
        "An Internal Compiler Error has occurred",
        "Compiler status ERROR",
        "Compiler status FAIL",
    ]) {
        return Some(Fatal::CompileFailed);
    }
    if any(&[
        "Nrt::Load failed",
        "Failed to load NN",
        "nrt_load status=",
        "in nrt_load()",
        "Neuron Runtime could not be initialized",
        "Incompatible runtime state",
    ]) || (lower.contains("nrt_init") && lower.contains("fail"))
    {
        return Some(Fatal::Runtime);
    }
    None
}

/// Every number after `key` where `key` starts a word (so `loss=` does not match
/// `reduced_train_loss=` or `val_loss_step=`); `nan` parses as NaN.
fn numbers(record: &str, key: &str) -> Vec<f64> {
    let mut values = Vec::new();
    let mut from = 0;
    while let Some(found) = record[from..].find(key) {
        let start = from + found;
        from = start + key.len();
        let word_start = record[..start]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        if !word_start {
            continue;
        }
        let token: String = record[from..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-'))
            .collect();
        if let Ok(value) = token.parse::<f64>() {
            values.push(value);
        }
    }
    values
}

/// The last number after `key` (see [`numbers`]).
fn last_number(record: &str, key: &str) -> Option<f64> {
    numbers(record, key).pop()
}

/// The last progress counter `i/N [` of a tqdm bar, as `(i, N)`.
fn last_counter(record: &str) -> Option<(u64, u64)> {
    let bytes = record.as_bytes();
    let mut found = None;
    for (slash, _) in record.match_indices('/') {
        let before = &record[..slash];
        let digits_before = before.bytes().rev().take_while(u8::is_ascii_digit).count();
        if digits_before == 0 {
            continue;
        }
        let left_start = slash - digits_before;
        if left_start > 0 && !matches!(bytes[left_start - 1], b' ' | b'|') {
            continue;
        }
        let after = &record[slash + 1..];
        let digits_after = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits_after == 0 || !after[digits_after..].starts_with(" [") {
            continue;
        }
        if let (Ok(done), Ok(total)) = (
            record[left_start..slash].parse(),
            after[..digits_after].parse(),
        ) {
            found = Some((done, total));
        }
    }
    found
}

/// The last rate of a tqdm bar as seconds per step: `14.05s/it`, or `1.49it/s` inverted.
fn last_rate(record: &str) -> Option<f64> {
    let mut found = None;
    for (unit, inverse) in [("s/it", false), ("it/s", true)] {
        for (at, _) in record.match_indices(unit) {
            let before = &record[..at];
            let length = before
                .chars()
                .rev()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .count();
            let Ok(value) = before[at - length..].parse::<f64>() else {
                continue;
            };
            let starts_word = before[..at - length]
                .chars()
                .next_back()
                .is_none_or(|c| c == ' ' || c == ',');
            if !starts_word || !value.is_finite() || value <= 0.0 {
                continue;
            }
            let seconds = if inverse { 1.0 / value } else { value };
            if found.is_none_or(|(position, _)| at > position) {
                found = Some((at, seconds));
            }
        }
    }
    found.map(|(_, seconds)| seconds)
}
