//! The typed values of configuration keys: enums that deserialize from the strings the file
//! uses, and quantities and durations parsed once, when the file is read.
//!
//! A value that does not parse is reported with its key by [`super::Config::parse`]; code that
//! reads the configuration matches on these types and never on strings.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[training] launcher_gate`: how the launcher waits for the workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LauncherGateSetting {
    /// Decided from the installed MPIJob CRD at deploy time (rendering assumes v0.5+).
    #[default]
    Auto,
    /// `launcherCreationPolicy: WaitForWorkersReady` (MPI Operator v0.5+).
    WaitForWorkersReady,
    /// The blueprint's init container (MPI Operator v0.4).
    InitContainer,
}

impl LauncherGateSetting {
    /// The spelling in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::WaitForWorkersReady => "wait-for-workers-ready",
            Self::InitContainer => "init-container",
        }
    }
}

/// `[tensorboard] service_type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceType {
    /// A public load balancer (the blueprint's ELB).
    #[default]
    LoadBalancer,
    /// Reachable inside the cluster only (use `kubectl port-forward`).
    #[serde(rename = "ClusterIP")]
    ClusterIp,
}

impl ServiceType {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LoadBalancer => "LoadBalancer",
            Self::ClusterIp => "ClusterIP",
        }
    }
}

/// `[data] mode`: which reference tool's tokenization semantics to reproduce.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenizeMode {
    /// NeMo's `preprocess_data_for_megatron.py` (what the blueprint runs).
    #[default]
    Nemo,
    /// Megatron-LM's `preprocess_data.py`.
    Megatron,
}

impl TokenizeMode {
    /// The spelling in the file and on `trnkit-stage`'s command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Nemo => "nemo",
            Self::Megatron => "megatron",
        }
    }

    /// The pipeline's mode.
    pub fn pipeline_mode(self) -> pipeline::Mode {
        match self {
            Self::Nemo => pipeline::Mode::Nemo,
            Self::Megatron => pipeline::Mode::Megatron,
        }
    }
}

/// A toleration's `operator`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TolerationOperator {
    /// The taint exists, whatever its value.
    Exists,
    /// The taint has the toleration's value (Kubernetes' default).
    #[default]
    Equal,
}

impl TolerationOperator {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exists => "Exists",
            Self::Equal => "Equal",
        }
    }
}

/// A toleration's `effect`; empty tolerates every effect.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaintEffect {
    /// Every effect (`effect` left out of the toleration).
    #[default]
    #[serde(rename = "")]
    All,
    /// `NoSchedule`.
    NoSchedule,
    /// `PreferNoSchedule`.
    PreferNoSchedule,
    /// `NoExecute`.
    NoExecute,
}

impl TaintEffect {
    /// The Kubernetes spelling; `None` for every effect.
    pub fn as_kubernetes(self) -> Option<&'static str> {
        match self {
            Self::All => None,
            Self::NoSchedule => Some("NoSchedule"),
            Self::PreferNoSchedule => Some("PreferNoSchedule"),
            Self::NoExecute => Some("NoExecute"),
        }
    }
}

macro_rules! display_as_str {
    ($($type:ty),*) => {$(
        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}

display_as_str!(
    LauncherGateSetting,
    ServiceType,
    TokenizeMode,
    TolerationOperator,
    Quantity,
    Timeout
);

/// A positive Kubernetes quantity (`3`, `500m`, `6Gi`), kept as written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Quantity(String);

impl Quantity {
    /// Parses a quantity; negative and zero quantities are refused (they are requests and
    /// limits of pods).
    pub fn parse(text: &str) -> Result<Self, String> {
        mpijob::names::quantity(text)?;
        if text.starts_with('-') {
            return Err(format!(
                "{text:?} is negative; a request or limit must be more than 0"
            ));
        }
        let digits = text.trim_start_matches('+');
        if digits
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .all(|c| c == '0' || c == '.')
        {
            return Err(format!(
                "{text:?} is zero; a request or limit must be more than 0"
            ));
        }
        Ok(Self(text.to_owned()))
    }

    /// The quantity as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Quantity {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text)
    }
}

impl From<Quantity> for String {
    fn from(quantity: Quantity) -> Self {
        quantity.0
    }
}

/// A positive duration such as `90m` or `2h`, kept as written for messages and the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Timeout {
    text: String,
    duration: Duration,
}

impl Timeout {
    /// Parses a duration in humantime's syntax (`90s`, `30m`, `2h`, `1h 30m`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let duration = humantime::parse_duration(text)
            .map_err(|error| format!("{text:?} is not a duration such as 90m or 2h: {error}"))?;
        if duration.is_zero() {
            return Err(format!(
                "{text:?} is zero; use a duration such as 90m or 2h"
            ));
        }
        Ok(Self {
            text: text.to_owned(),
            duration,
        })
    }

    /// The duration.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// The duration as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl TryFrom<String> for Timeout {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text)
    }
}

impl From<Timeout> for String {
    fn from(timeout: Timeout) -> Self {
        timeout.text
    }
}
