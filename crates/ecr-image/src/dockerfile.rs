//! A small typed model of a Dockerfile and its rendering to text.
//!
//! Only the instructions trnkit's images use are modelled. Rendering is deterministic (the
//! content-addressed tag depends on it) and every `ARG`/`ENV` name is checked against a list of
//! secret-looking words, so a definition cannot bake a credential into an image layer.

use std::fmt::Write as _;

use crate::error::{Error, Result};

/// One Dockerfile instruction (or a comment or blank line, to keep rendered files readable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    /// `# text` (each line of `text` becomes a comment line).
    Comment(String),
    /// An empty line.
    Blank,
    /// `ARG NAME[=default]`.
    Arg {
        /// The argument's name.
        name: String,
        /// Its default value.
        default: Option<String>,
    },
    /// `FROM image [AS alias]`.
    From {
        /// The base image reference (may use `${ARG}`s declared before it).
        image: String,
        /// A stage name.
        alias: Option<String>,
    },
    /// `ENV NAME="value" ...`.
    Env(Vec<(String, String)>),
    /// `LABEL key="value" ...`.
    Label(Vec<(String, String)>),
    /// `RUN a && b && ...`, rendered one command per line.
    Run(Vec<String>),
    /// `COPY src... dst`.
    Copy {
        /// Paths in the build context.
        sources: Vec<String>,
        /// Destination in the image.
        destination: String,
    },
    /// `WORKDIR path`.
    Workdir(String),
    /// `EXPOSE port`.
    Expose(u16),
    /// `USER name`.
    User(String),
    /// `ENTRYPOINT ["...", ...]`.
    Entrypoint(Vec<String>),
    /// `CMD ["...", ...]`.
    Cmd(Vec<String>),
}

/// A Dockerfile: an ordered list of instructions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dockerfile {
    instructions: Vec<Instruction>,
}

/// The kind of a Dockerfile variable, for [`Dockerfile::variables`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VariableKind {
    /// A build argument (`ARG`).
    Arg,
    /// An environment variable of the image (`ENV`).
    Env,
}

impl Dockerfile {
    /// An empty Dockerfile.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an instruction.
    pub fn push(&mut self, instruction: Instruction) -> &mut Self {
        self.instructions.push(instruction);
        self
    }

    /// Appends a comment.
    pub fn comment(&mut self, text: impl Into<String>) -> &mut Self {
        self.push(Instruction::Comment(text.into()))
    }

    /// Appends an empty line.
    pub fn blank(&mut self) -> &mut Self {
        self.push(Instruction::Blank)
    }

    /// Appends `ARG name=default`.
    pub fn arg(&mut self, name: impl Into<String>, default: impl Into<String>) -> &mut Self {
        self.push(Instruction::Arg {
            name: name.into(),
            default: Some(default.into()),
        })
    }

    /// Appends `FROM image`.
    pub fn from_image(&mut self, image: impl Into<String>) -> &mut Self {
        self.push(Instruction::From {
            image: image.into(),
            alias: None,
        })
    }

    /// Appends `ENV` with the given pairs.
    pub fn env<K: Into<String>, V: Into<String>>(
        &mut self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> &mut Self {
        self.push(Instruction::Env(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        ))
    }

    /// Appends `LABEL` with the given pairs.
    pub fn label<K: Into<String>, V: Into<String>>(
        &mut self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> &mut Self {
        self.push(Instruction::Label(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        ))
    }

    /// Appends `RUN` with the commands joined by `&&`.
    pub fn run<S: Into<String>>(&mut self, commands: impl IntoIterator<Item = S>) -> &mut Self {
        self.push(Instruction::Run(
            commands.into_iter().map(Into::into).collect(),
        ))
    }

    /// Appends `COPY source destination`.
    pub fn copy(&mut self, source: impl Into<String>, destination: impl Into<String>) -> &mut Self {
        self.push(Instruction::Copy {
            sources: vec![source.into()],
            destination: destination.into(),
        })
    }

    /// Appends `WORKDIR`.
    pub fn workdir(&mut self, path: impl Into<String>) -> &mut Self {
        self.push(Instruction::Workdir(path.into()))
    }

    /// Appends `EXPOSE`.
    pub fn expose(&mut self, port: u16) -> &mut Self {
        self.push(Instruction::Expose(port))
    }

    /// Appends `ENTRYPOINT` in exec form.
    pub fn entrypoint<S: Into<String>>(&mut self, argv: impl IntoIterator<Item = S>) -> &mut Self {
        self.push(Instruction::Entrypoint(
            argv.into_iter().map(Into::into).collect(),
        ))
    }

    /// Appends `CMD` in exec form.
    pub fn cmd<S: Into<String>>(&mut self, argv: impl IntoIterator<Item = S>) -> &mut Self {
        self.push(Instruction::Cmd(argv.into_iter().map(Into::into).collect()))
    }

    /// The instructions, in order.
    pub fn instructions(&self) -> &[Instruction] {
        &self.instructions
    }

    /// Every `ARG` and `ENV` variable with its (default) value.
    pub fn variables(&self) -> Vec<(VariableKind, &str, Option<&str>)> {
        let mut out = Vec::new();
        for instruction in &self.instructions {
            match instruction {
                Instruction::Arg { name, default } => {
                    out.push((VariableKind::Arg, name.as_str(), default.as_deref()));
                }
                Instruction::Env(pairs) => {
                    for (name, value) in pairs {
                        out.push((VariableKind::Env, name.as_str(), Some(value.as_str())));
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// Fails when an `ARG` or `ENV` looks like it carries a secret (by its name or its value).
    pub fn check_no_secrets(&self) -> Result<()> {
        for (_, name, value) in self.variables() {
            if looks_like_secret_name(name) || value.is_some_and(looks_like_secret_value) {
                return Err(Error::SecretInImage {
                    name: name.to_owned(),
                });
            }
        }
        Ok(())
    }

    /// The Dockerfile's text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for instruction in &self.instructions {
            render_instruction(&mut out, instruction);
        }
        out
    }
}

fn render_instruction(out: &mut String, instruction: &Instruction) {
    // Writing into a String cannot fail.
    let _ = match instruction {
        Instruction::Comment(text) => {
            for line in text.lines() {
                if line.is_empty() {
                    out.push_str("#\n");
                } else {
                    let _ = writeln!(out, "# {line}");
                }
            }
            Ok(())
        }
        Instruction::Blank => writeln!(out),
        Instruction::Arg {
            name,
            default: Some(default),
        } => writeln!(out, "ARG {name}={default}"),
        Instruction::Arg {
            name,
            default: None,
        } => writeln!(out, "ARG {name}"),
        Instruction::From {
            image,
            alias: Some(alias),
        } => writeln!(out, "FROM {image} AS {alias}"),
        Instruction::From { image, alias: None } => writeln!(out, "FROM {image}"),
        Instruction::Env(pairs) => write_pairs(out, "ENV", pairs),
        Instruction::Label(pairs) => write_pairs(out, "LABEL", pairs),
        Instruction::Run(commands) => {
            out.push_str("RUN ");
            for (index, command) in commands.iter().enumerate() {
                if index > 0 {
                    out.push_str(" \\\n    && ");
                }
                out.push_str(command);
            }
            writeln!(out)
        }
        Instruction::Copy {
            sources,
            destination,
        } => {
            writeln!(out, "COPY {} {destination}", sources.join(" "))
        }
        Instruction::Workdir(path) => writeln!(out, "WORKDIR {path}"),
        Instruction::Expose(port) => writeln!(out, "EXPOSE {port}"),
        Instruction::User(user) => writeln!(out, "USER {user}"),
        Instruction::Entrypoint(argv) => writeln!(out, "ENTRYPOINT {}", exec_form(argv)),
        Instruction::Cmd(argv) => writeln!(out, "CMD {}", exec_form(argv)),
    };
}

fn write_pairs(out: &mut String, keyword: &str, pairs: &[(String, String)]) -> std::fmt::Result {
    out.push_str(keyword);
    for (index, (name, value)) in pairs.iter().enumerate() {
        if index > 0 {
            out.push_str(" \\\n   ");
        }
        write!(out, " {name}={}", quote(value))?;
    }
    writeln!(out)
}

fn quote(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for character in value.chars() {
        if matches!(character, '"' | '\\') {
            quoted.push('\\');
        }
        quoted.push(character);
    }
    quoted.push('"');
    quoted
}

fn exec_form(argv: &[String]) -> String {
    serde_json::to_string(argv).expect("a list of strings always serialises")
}

/// Words that, as a `_`-separated part of a variable name, mark it as secret-looking.
const SECRET_WORDS: &[&str] = &[
    "PASSWORD",
    "PASSWD",
    "PASS",
    "SECRET",
    "SECRETS",
    "TOKEN",
    "TOKENS",
    "APIKEY",
    "KEY",
    "CREDENTIAL",
    "CREDENTIALS",
    "AUTH",
    "PRIVATE",
    "HTPASSWD",
];

/// Whether a variable name looks like it names a secret (`TB_PASSWORD`, `HF_TOKEN`, ...).
pub fn looks_like_secret_name(name: &str) -> bool {
    name.split(['_', '-', '.']).any(|part| {
        SECRET_WORDS
            .iter()
            .any(|word| part.eq_ignore_ascii_case(word))
    })
}

/// Whether a value looks like a credential: an AWS access key id or a Hugging Face token.
pub fn looks_like_secret_value(value: &str) -> bool {
    value
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .any(|word| {
            let aws_key = (word.starts_with("AKIA") || word.starts_with("ASIA"))
                && word.len() == 20
                && word
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
            let hf_token = word.starts_with("hf_") && word.len() >= 30;
            aws_key || hf_token
        })
}

#[cfg(test)]
mod tests;
