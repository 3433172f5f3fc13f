//! The recipe format: how an event's value says what the plugin replies. Plain Rust
//! with no dependencies, so the host's fuzz checks include this file to predict what
//! the host must make of each reply.
//!
//! Bytes are read front to back; a read past the end gives 0, so every byte string
//! is a recipe. Byte 0 (`op`):
//!
//! | bits of `op`  | meaning                                                        |
//! |---------------|----------------------------------------------------------------|
//! | 0-3 = 0..=12  | reply with that many outputs                                   |
//! | 0-3 = 13      | fail `invalid`, the rest of the bytes (lossy UTF-8) the message |
//! | 0-3 = 14      | fail `transient`, likewise                                     |
//! | 0-3 = 15      | trap (panic), likewise                                         |
//! | 4             | first log a *text* through the host                            |
//! | 5             | first print a *text* to stdout                                 |
//!
//! Then the log text, the printed text, and each output: `to` (one byte `t`: below
//! 0xC0 one of [`NAMES`], else a *string* of `t & 0x3F` bytes), key (*blob*),
//! value (*blob*), one byte `n` for `n % 8` headers, each a key (*string* of
//! `next % 32` bytes) and a value (*blob*).
//!
//! - *string* of n bytes: the next n bytes as lossy UTF-8 (any key, any `to`).
//! - *blob*: one byte `s`: 0 is none; `1..=0x7F` is `s - 1` bytes, `0x80..` is
//!   `(s & 0x7F) * 64` bytes; then one byte `f`: the bytes count up from `f`.
//! - *text*: one byte `m`, then a *string* of `next % 8` bytes repeated to at
//!   least `m * 32` bytes (long lines with multi-byte characters at any offset).

/// `to` names picked by a byte below 0xC0; a fuzz pipeline declares `out` and `alt`.
pub const NAMES: [&str; 8] = ["out", "alt", "", "nowhere", "OUT", "out ", "weir.dlq", "é"];

/// What the plugin does with one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    /// A line to log through the host first.
    pub log: Option<String>,
    /// A line to print to stdout first.
    pub print: Option<String>,
    pub reply: Reply,
}

/// The reply to one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Outputs(Vec<Out>),
    Invalid(String),
    Transient(String),
    Trap(String),
}

/// One output, as plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Out {
    pub to: String,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Out {
    /// The size the host's `limits.max-output` counts: what the Kafka client
    /// counts against `message.max.bytes` (key, value, headers, and the record's
    /// framing: 36 bytes, plus a zigzag varint before each header key and value).
    pub fn size(&self) -> usize {
        fn varint(n: usize) -> usize {
            let mut zigzag = (n as u64) << 1;
            let mut bytes = 1;
            while zigzag >= 0x80 {
                zigzag >>= 7;
                bytes += 1;
            }
            bytes
        }
        36 + self.key.as_ref().map_or(0, Vec::len)
            + self.value.as_ref().map_or(0, Vec::len)
            + self
                .headers
                .iter()
                .map(|(k, v)| varint(k.len()) + k.len() + varint(v.len()) + v.len())
                .sum::<usize>()
    }
}

/// Reads a recipe; every byte string is one.
pub fn decode(bytes: &[u8]) -> Recipe {
    let mut r = Reader { bytes };
    let op = r.next();
    let log = (op & 0x10 != 0).then(|| r.text());
    let print = (op & 0x20 != 0).then(|| r.text());
    let reply = match op & 0x0F {
        13 => Reply::Invalid(r.rest()),
        14 => Reply::Transient(r.rest()),
        15 => Reply::Trap(r.rest()),
        n => Reply::Outputs((0..n).map(|_| r.output()).collect()),
    };
    Recipe { log, print, reply }
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn next(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((&b, rest)) => {
                self.bytes = rest;
                b
            }
            None => 0,
        }
    }

    fn string(&mut self, n: usize) -> String {
        let (taken, rest) = self.bytes.split_at(n.min(self.bytes.len()));
        self.bytes = rest;
        String::from_utf8_lossy(taken).into_owned()
    }

    fn rest(&mut self) -> String {
        self.string(self.bytes.len())
    }

    fn blob(&mut self) -> Option<Vec<u8>> {
        let len = match self.next() {
            0 => return None,
            s @ 1..=0x7F => usize::from(s) - 1,
            s => usize::from(s & 0x7F) * 64,
        };
        let first = self.next();
        Some((0..len).map(|i| first.wrapping_add(i as u8)).collect())
    }

    fn text(&mut self) -> String {
        let least = usize::from(self.next()) * 32;
        let n = usize::from(self.next() % 8);
        let chunk = self.string(n);
        if chunk.is_empty() {
            return chunk;
        }
        chunk.repeat(least.div_ceil(chunk.len()).max(1))
    }

    fn output(&mut self) -> Out {
        let t = self.next();
        let to = if t < 0xC0 {
            NAMES[usize::from(t) % NAMES.len()].to_owned()
        } else {
            self.string(usize::from(t & 0x3F))
        };
        let key = self.blob();
        let value = self.blob();
        let headers = (0..self.next() % 8)
            .map(|_| {
                let n = usize::from(self.next() % 32);
                (self.string(n), self.blob().unwrap_or_default())
            })
            .collect();
        Out {
            to,
            key,
            value,
            headers,
        }
    }
}
