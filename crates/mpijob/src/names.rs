//! Checks for the names and values that reach the cluster or a remote shell.
//!
//! Each check returns `Err(message)` with a sentence that says what is allowed, so callers can
//! attach the field path.

/// The longest DNS label Kubernetes accepts.
pub const MAX_LABEL: usize = 63;

/// A DNS-1123 label: lowercase alphanumerics and `-`, starting and ending alphanumeric, at most
/// 63 characters (names of namespaces, containers, volumes).
pub fn dns1123_label(value: &str) -> Result<(), String> {
    label(value, false)
}

/// A DNS-1035 label: like a DNS-1123 label but starting with a letter (names of Services and of
/// the pods whose hostnames the MPI Operator sets).
pub fn dns1035_label(value: &str) -> Result<(), String> {
    label(value, true)
}

fn label(value: &str, letter_first: bool) -> Result<(), String> {
    let kind = if letter_first {
        "DNS-1035 label"
    } else {
        "DNS-1123 label"
    };
    if value.is_empty() {
        return Err(format!("must be a non-empty {kind}"));
    }
    if value.len() > MAX_LABEL {
        return Err(format!(
            "{value:?} is {} characters long; a {kind} has at most {MAX_LABEL}",
            value.len()
        ));
    }
    let valid_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if let Some(bad) = value.chars().find(|&c| !valid_char(c)) {
        return Err(format!(
            "{value:?} contains {bad:?}; a {kind} has only lowercase letters, digits and '-'"
        ));
    }
    let first = value.chars().next().unwrap_or('-');
    if letter_first && !first.is_ascii_lowercase() {
        return Err(format!(
            "{value:?} must start with a lowercase letter (a {kind})"
        ));
    }
    if !first.is_ascii_alphanumeric() || value.ends_with('-') {
        return Err(format!(
            "{value:?} must start and end with a letter or digit (a {kind})"
        ));
    }
    Ok(())
}

/// A DNS-1123 subdomain: dot-separated DNS-1123 labels, at most 253 characters (names of
/// ConfigMaps, Secrets, Jobs, claims, priority classes).
pub fn dns1123_subdomain(value: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > 253 {
        return Err(format!(
            "{value:?} must be 1 to 253 characters (a DNS-1123 subdomain)"
        ));
    }
    for part in value.split('.') {
        dns1123_label(part).map_err(|message| format!("{value:?}: {message}"))?;
    }
    Ok(())
}

/// An environment variable name that survives `mpirun -x` and a shell: a letter or `_`, then
/// letters, digits and `_`.
pub fn env_name(value: &str) -> Result<(), String> {
    let mut chars = value.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "{value:?} is not a valid environment variable name (a letter or '_', then letters, \
             digits and '_')"
        ));
    }
    Ok(())
}

/// Characters a remote shell would interpret. `mpirun` starts its daemons through `ssh`, so an
/// argument or forwarded value holding one of these could run something else entirely.
const SHELL_METACHARACTERS: &[char] = &[
    ';', '&', '|', '$', '`', '<', '>', '(', ')', '{', '}', '\\', '\'', '"', '*', '?', '[', ']',
    '!', '#', '~',
];

/// A command-line word for `mpirun` or the training script: no whitespace, control character
/// or shell metacharacter.
pub fn command_word(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if let Some(bad) = value.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{value:?} contains the whitespace or control character {bad:?}; pass one word per \
             argument"
        ));
    }
    if let Some(bad) = value.chars().find(|c| SHELL_METACHARACTERS.contains(c)) {
        return Err(format!(
            "{value:?} contains the shell metacharacter {bad:?}, which the remote shell that \
             mpirun starts its daemons through would interpret"
        ));
    }
    Ok(())
}

/// An environment value forwarded to every rank: spaces are allowed (compiler flags), newlines,
/// control characters and shell metacharacters are not.
pub fn env_value(value: &str) -> Result<(), String> {
    if let Some(bad) = value.chars().find(|c| c.is_control()) {
        return Err(format!("{value:?} contains the control character {bad:?}"));
    }
    if let Some(bad) = value.chars().find(|c| SHELL_METACHARACTERS.contains(c)) {
        return Err(format!(
            "{value:?} contains the shell metacharacter {bad:?}, which the remote shell that \
             mpirun starts its daemons through would interpret"
        ));
    }
    Ok(())
}

/// A container image reference: `[registry[:port]/]path[:tag][@sha256:digest]`, with a
/// lowercase path, no whitespace and no control characters.
pub fn image_reference(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("the image reference is empty".to_owned());
    }
    if let Some(bad) = value.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "image reference {value:?} contains the character {bad:?}"
        ));
    }
    let (name_and_tag, digest) = match value.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (value, None),
    };
    if let Some(digest) = digest {
        let hex = digest.strip_prefix("sha256:").unwrap_or("");
        if hex.len() != 64
            || !hex
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        {
            return Err(format!(
                "image reference {value:?} has a malformed digest (want sha256:<64 hex>)"
            ));
        }
    }
    let last_slash = name_and_tag.rfind('/').map_or(0, |index| index + 1);
    let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
        Some(colon) => (
            &name_and_tag[..last_slash + colon],
            Some(&name_and_tag[last_slash + colon + 1..]),
        ),
        None => (name_and_tag, None),
    };
    if let Some(tag) = tag {
        let valid = !tag.is_empty()
            && tag.len() <= 128
            && tag
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !valid {
            return Err(format!(
                "image reference {value:?} has an invalid tag {tag:?} (letters, digits, '_', '.', '-'; at most 128)"
            ));
        }
    }
    let mut components: Vec<&str> = name.split('/').collect();
    if components.len() > 1 {
        let first = components[0];
        if first.contains('.') || first.contains(':') || first == "localhost" {
            let host_ok = first
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
            if !host_ok {
                return Err(format!(
                    "image reference {value:?} has an invalid registry host {first:?}"
                ));
            }
            components.remove(0);
        }
    }
    for component in components {
        let valid = !component.is_empty()
            && component
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
            && component.starts_with(|c: char| c.is_ascii_alphanumeric())
            && component.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !valid {
            return Err(format!(
                "image reference {value:?} has an invalid path component {component:?} \
                 (lowercase letters, digits and '.', '_', '-' between them)"
            ));
        }
    }
    Ok(())
}

/// A Kubernetes resource quantity such as `16`, `500m`, `1200Gi` or `1e3`.
pub fn quantity(value: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "{value:?} is not a Kubernetes quantity (a number with an optional suffix such as m, \
             Ki, Mi, Gi, k, M, G, or an exponent)"
        )
    };
    let unsigned = value.strip_prefix(['+', '-']).unwrap_or(value);
    let number_end = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(number_end);
    let digits = number.replace('.', "");
    if digits.is_empty() || number.matches('.').count() > 1 {
        return Err(bad());
    }
    const SUFFIXES: &[&str] = &[
        "", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
    ];
    if SUFFIXES.contains(&suffix) {
        return Ok(());
    }
    let exponent = suffix.strip_prefix(['e', 'E']).ok_or_else(bad)?;
    let exponent = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
    if exponent.is_empty() || !exponent.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    Ok(())
}
