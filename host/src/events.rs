//! Events as JSON lines: the input format of `weir test`, `weir diff` and
//! `weir demo` (`{"key": ..., "value": {...} | "text" | null, "headers": {...},
//! "timestamp-ms": ...}`), and how outputs are rendered (a value that is JSON as
//! JSON, other UTF-8 as text, anything else as base64).

use std::collections::BTreeMap;
use std::io::BufRead;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::record::{Event, Header, Output};

/// One input line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputLine {
    #[serde(default)]
    key: Option<String>,
    value: Value,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Record timestamp, milliseconds since the epoch.
    #[serde(default, rename = "timestamp-ms")]
    timestamp_ms: Option<i64>,
}

/// Parses one input line into an event at `offset` of topic `weir-test`.
pub fn parse_line(line: &str, offset: i64) -> Result<Event, String> {
    let input: InputLine = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let value = match input.value {
        Value::Null => None,
        Value::String(text) => Some(text.into_bytes()),
        other => Some(other.to_string().into_bytes()),
    };
    Ok(Event {
        topic: "weir-test".to_owned(),
        partition: 0,
        offset,
        timestamp_ms: input.timestamp_ms,
        key: input.key.map(String::into_bytes),
        value,
        headers: input
            .headers
            .into_iter()
            .map(|(key, value)| Header {
                key,
                value: value.into_bytes(),
            })
            .collect(),
    })
}

/// A line that moves `weir test`'s virtual clock: `{"advance": "15m"}` (forward by
/// a duration) or `{"advance-to": "2026-11-27T16:45:00Z"}` (to an instant; also
/// milliseconds since the epoch).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ClockLine {
    #[serde(default)]
    advance: Option<crate::config::HumanDuration>,
    #[serde(default)]
    advance_to: Option<Value>,
}

/// How a line moves the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advance {
    /// Forward by this many milliseconds.
    By(i64),
    /// To this instant, in milliseconds since the epoch.
    To(i64),
}

impl Advance {
    /// The instant the clock moves to from `now`.
    pub fn from(self, now: i64) -> i64 {
        match self {
            Advance::By(ms) => now.saturating_add(ms),
            Advance::To(ms) => ms,
        }
    }
}

/// Parses a clock line; `None` when the line is not one.
fn parse_clock(line: &str) -> Option<Result<Advance, String>> {
    let trimmed = line.trim_start();
    if !(trimmed.starts_with("{\"advance\"") || trimmed.starts_with("{\"advance-to\"")) {
        return None;
    }
    let clock: ClockLine = match serde_json::from_str(line) {
        Ok(clock) => clock,
        Err(e) => return Some(Err(e.to_string())),
    };
    Some(match (clock.advance, clock.advance_to) {
        (Some(by), None) => Ok(Advance::By(by.0.as_millis() as i64)),
        (None, Some(Value::Number(ms))) => ms
            .as_i64()
            .map(Advance::To)
            .ok_or_else(|| "advance-to: expected milliseconds since the epoch".to_owned()),
        (None, Some(Value::String(text))) => humantime::parse_rfc3339_weak(&text)
            .map_err(|e| format!("advance-to {text:?}: {e} (e.g. \"2026-11-27T16:45:00Z\")"))
            .map(|t| {
                Advance::To(
                    t.duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64),
                )
            }),
        _ => Err("a clock line has one of advance (a duration) or advance-to (an instant)".into()),
    })
}

/// One line of an events file.
pub enum Line {
    /// A parsed event, with its 1-based line number.
    Event(usize, Event),
    /// A line that moves the virtual clock, with its line number.
    Clock(usize, Advance),
    /// A line that is not an event: its number and why.
    Malformed(usize, String),
}

/// Reads every non-blank line of `reader` (line numbers start at 1; an event's
/// offset is its line's index).
pub fn read(reader: impl BufRead) -> impl Iterator<Item = std::io::Result<Line>> {
    reader
        .lines()
        .enumerate()
        .filter(|(_, line)| line.as_ref().map_or(true, |l| !l.trim().is_empty()))
        .map(|(index, line)| {
            let line = line?;
            if let Some(clock) = parse_clock(&line) {
                return Ok(match clock {
                    Ok(advance) => Line::Clock(index + 1, advance),
                    Err(message) => Line::Malformed(index + 1, message),
                });
            }
            Ok(match parse_line(&line, index as i64) {
                Ok(event) => Line::Event(index + 1, event),
                Err(message) => Line::Malformed(index + 1, message),
            })
        })
}

/// An output as a `weir test` line.
#[derive(Debug, Serialize, PartialEq)]
pub struct OutputLine<'a> {
    pub input: usize,
    /// The timer whose firing made it (`weir test`'s virtual clock).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timer: Option<String>,
    pub to: &'a str,
    pub key: Option<String>,
    pub value: Value,
    pub headers: BTreeMap<String, String>,
}

/// Bytes as text when they are UTF-8, else base64.
pub fn text_or_base64(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => base64::engine::general_purpose::STANDARD.encode(bytes),
    }
}

/// A value as JSON when it is JSON, else as text or base64; `null` for a tombstone.
pub fn value_json(value: Option<&[u8]>) -> Value {
    match value {
        None => Value::Null,
        Some(bytes) => {
            serde_json::from_slice(bytes).unwrap_or_else(|_| Value::String(text_or_base64(bytes)))
        }
    }
}

/// Renders an output of the event on line `input`.
pub fn output_line(input: usize, output: &Output) -> OutputLine<'_> {
    OutputLine {
        input,
        timer: None,
        to: &output.to,
        key: output.key.as_deref().map(text_or_base64),
        value: value_json(output.value.as_deref()),
        headers: output
            .headers
            .iter()
            .map(|h| (h.key.clone(), text_or_base64(&h.value)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_events() {
        let e = parse_line(
            r#"{"key": "k", "value": {"a": 1}, "headers": {"h": "v"}}"#,
            4,
        )
        .unwrap();
        assert_eq!(e.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(e.value.as_deref(), Some(&br#"{"a":1}"#[..]));
        assert_eq!(e.offset, 4);
        assert_eq!(e.headers[0].key, "h");
        let tomb = parse_line(r#"{"value": null}"#, 0).unwrap();
        assert!(tomb.value.is_none() && tomb.key.is_none());
        let text = parse_line(r#"{"value": "plain"}"#, 0).unwrap();
        assert_eq!(text.value.as_deref(), Some(&b"plain"[..]));
        assert!(
            parse_line(r#"{"vaule": 1}"#, 0)
                .unwrap_err()
                .contains("unknown field")
        );
    }

    #[test]
    fn clock_lines_move_time() {
        let text = "{\"advance\": \"15m\"}\n{\"advance-to\": \"1970-01-01T00:00:01Z\"}\n{\"advance-to\": 5}\n{\"advance\": 1}\n";
        let lines: Vec<Line> = read(text.as_bytes()).map(Result::unwrap).collect();
        let clocks: Vec<Result<Advance, usize>> = lines
            .iter()
            .map(|l| match l {
                Line::Clock(_, a) => Ok(*a),
                Line::Event(n, _) | Line::Malformed(n, _) => Err(*n),
            })
            .collect();
        assert_eq!(
            clocks,
            [
                Ok(Advance::By(900_000)),
                Ok(Advance::To(1000)),
                Ok(Advance::To(5)),
                Err(4)
            ]
        );
        assert_eq!(Advance::By(5).from(10), 15);
    }

    #[test]
    fn blank_lines_are_skipped_and_numbers_kept() {
        let text = "{\"value\": 1}\n\n   \nnot json\n{\"value\": 2}\n";
        let lines: Vec<Line> = read(text.as_bytes()).map(Result::unwrap).collect();
        let described: Vec<String> = lines
            .iter()
            .map(|l| match l {
                Line::Event(n, e) => format!("{n}@{}", e.offset),
                Line::Malformed(n, _) | Line::Clock(n, _) => format!("{n}!"),
            })
            .collect();
        assert_eq!(described, ["1@0", "4!", "5@4"]);
    }

    #[test]
    fn outputs_render_json_text_or_base64() {
        let output = Output {
            to: "out".into(),
            key: Some(vec![0xff, 0x00]),
            value: Some(b"not json".to_vec()),
            headers: vec![Header {
                key: "h".into(),
                value: b"v".to_vec(),
            }],
        };
        let line = serde_json::to_string(&output_line(3, &output)).unwrap();
        assert_eq!(
            line,
            r#"{"input":3,"to":"out","key":"/wA=","value":"not json","headers":{"h":"v"}}"#
        );
    }
}
