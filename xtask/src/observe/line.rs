//! One raw log line → the clean records in it.
//!
//! Progress bars redraw themselves with carriage returns, so one line of a log can hold many
//! progress records; each is a record of its own. ANSI colour codes are removed, and so is the
//! `[1,0]<stdout>:` prefix mpirun's `--tag-output` puts before every rank's output.

/// The non-empty records of a raw line (split at `\r` and `\n`), each cleaned by [`clean`].
pub fn records(raw: &str) -> impl Iterator<Item = String> + '_ {
    raw.split(['\r', '\n'])
        .map(clean)
        .filter(|record| !record.trim().is_empty())
}

/// `record` without ANSI escape sequences and without a leading mpirun rank prefix.
pub fn clean(record: &str) -> String {
    let plain = strip_ansi(record);
    strip_rank_prefix(&plain).to_owned()
}

/// Removes CSI sequences (`ESC [ … final byte`) and other two-character escapes.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('[') => {
                // Parameter and intermediate bytes, then one final byte in '@'..='~'.
                for next in chars.by_ref() {
                    if ('@'..='~').contains(&next) {
                        break;
                    }
                }
            }
            Some(']') => {
                // Operating system command: up to BEL or ESC '\'.
                while let Some(next) = chars.next() {
                    if next == '\u{7}' {
                        break;
                    }
                    if next == '\u{1b}' {
                        chars.next();
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// `[1,0]<stdout>:` or `[1,12]<stderr>:` at the start (after blanks), as mpirun's
/// `--tag-output` writes it.
fn strip_rank_prefix(record: &str) -> &str {
    let trimmed = record.trim_start();
    let Some(rest) = trimmed.strip_prefix('[') else {
        return record;
    };
    let Some(close) = rest.find(']') else {
        return record;
    };
    let inside = &rest[..close];
    let is_rank = inside
        .split_once(',')
        .is_some_and(|(job, rank)| is_number(job) && is_number(rank));
    if !is_rank {
        return record;
    }
    let after = &rest[close + 1..];
    for stream in ["<stdout>:", "<stderr>:", "<stddiag>:"] {
        if let Some(line) = after.strip_prefix(stream) {
            return line;
        }
    }
    record
}

fn is_number(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit())
}
