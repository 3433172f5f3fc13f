//! What a weir instance's log says: how often a line occurs, waiting for one, the
//! partitions of the last assignment, and its warnings and errors grouped by kind.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

pub(super) fn log_text(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

pub(super) fn count_in_log(path: &Path, needle: &str) -> usize {
    log_text(path).matches(needle).count()
}

/// Waits until `needle` occurs in the log more than `before` times.
pub(super) fn wait_in_log(
    path: &Path,
    needle: &str,
    before: usize,
    within: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if count_in_log(path, needle) > before {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// The partitions of the last "partitions assigned" line of a log.
pub(super) fn last_assignment(path: &Path) -> String {
    log_text(path)
        .lines()
        .rev()
        .find(|l| l.contains("partitions assigned"))
        .and_then(|l| l.split("partitions=").nth(1))
        .map_or("?".into(), |p| p.trim().to_owned())
}

/// The WARN and ERROR lines of a log, by kind (the text after the level, digits
/// masked, cut at 150 characters), most frequent first.
pub(super) fn log_summary(path: &Path) -> Vec<(String, usize)> {
    let mut kinds: HashMap<String, usize> = HashMap::new();
    for line in log_text(path).lines() {
        let Some(at) = line.find(" WARN ").or_else(|| line.find(" ERROR ")) else {
            continue;
        };
        let kind: String = mask_ids(&line[at + 1..])
            .chars()
            .map(|c| if c.is_ascii_digit() { '#' } else { c })
            .filter(|c| *c != '`')
            .take(150)
            .collect();
        *kinds.entry(kind).or_default() += 1;
    }
    let mut kinds: Vec<(String, usize)> = kinds.into_iter().collect();
    kinds.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    kinds
}

/// Replaces what a log line has in parentheses without a space (librdkafka's topic
/// ids) with `(…)`.
fn mask_ids(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('(') {
        out.push_str(&rest[..open]);
        match rest[open..].find(')') {
            Some(close) if !rest[open..open + close].contains(' ') => {
                out.push_str("(…)");
                rest = &rest[open + close + 1..];
            }
            _ => {
                out.push('(');
                rest = &rest[open + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_kinds_mask_topic_ids_but_keep_messages() {
        assert_eq!(
            mask_ids("Partition t(oZwoG8iLQ/asQ)[3]: down (Local: Timed out)"),
            "Partition t(…)[3]: down (Local: Timed out)"
        );
    }
}
