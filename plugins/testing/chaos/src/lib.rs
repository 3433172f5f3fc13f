//! chaos: a test-only plugin that does what each event's value tells it to.
//!
//! The value (UTF-8) is a command; the config key `mode` replaces it for every event
//! (for example `mode = "invalid"` to fail everything). Commands:
//!
//! | command        | what the plugin does                                   |
//! |----------------|--------------------------------------------------------|
//! | `loop`         | spins forever (host: `timeout`)                        |
//! | `alloc`        | allocates until memory runs out (host: `memory-limit`) |
//! | `recurse`      | recurses without bound (host: `trap`, stack overflow)  |
//! | `panic`        | panics (host: `trap`)                                  |
//! | `huge`         | returns one 8 MiB output (host: `bad-output`)          |
//! | `read-file`    | reads `/etc/passwd`, reports what happened             |
//! | `socket`       | connects to 127.0.0.1:9, reports what happened         |
//! | `env`          | reads `HOME` and the environment, reports              |
//! | `invalid`      | fails `invalid`                                        |
//! | `transient`    | fails `transient`                                      |
//! | `flaky:N`      | fails `transient` N times per key, then echoes         |
//! | `log`, `print` | logs through the host / prints to stdout and stderr    |
//! | anything else  | echoes the event to output `out`                       |
//!
//! `init` fails when the config holds `fail-init`.

use std::collections::HashMap;

/// What one command resolves to, before it is turned into WIT values.
#[derive(Debug, PartialEq)]
pub enum Reply {
    Echo,
    Report(String),
    Invalid(String),
    Transient(String),
}

/// Runs a command. Commands that cannot return (loop, alloc, recurse, panic) do not.
pub fn run(command: &str, key: &[u8], attempts: &mut HashMap<Vec<u8>, u32>) -> Reply {
    match command {
        "loop" => spin(),
        "alloc" => exhaust_memory(),
        "recurse" => Reply::Report(format!("depth {}", recurse(std::hint::black_box(0)))),
        "panic" => panic!("chaos plugin asked to panic"),
        "read-file" => Reply::Report(match std::fs::read_to_string("/etc/passwd") {
            Ok(text) => format!("LEAKED {} bytes of /etc/passwd", text.len()),
            Err(e) => format!("denied: {e}"),
        }),
        "socket" => Reply::Report(match std::net::TcpStream::connect("127.0.0.1:9") {
            Ok(_) => "LEAKED a socket".to_owned(),
            Err(e) => format!("denied: {e}"),
        }),
        "env" => {
            let vars = std::env::vars().count();
            Reply::Report(match std::env::var("HOME") {
                Ok(home) => format!("LEAKED HOME={home} ({vars} variables)"),
                Err(e) => format!("denied: {e} ({vars} variables)"),
            })
        }
        "invalid" => Reply::Invalid("chaos plugin rejects this event".to_owned()),
        "transient" => Reply::Transient("chaos plugin asks to retry".to_owned()),
        _ => match command
            .strip_prefix("flaky:")
            .and_then(|n| n.parse::<u32>().ok())
        {
            Some(failures) => {
                let seen = attempts.entry(key.to_vec()).or_default();
                *seen += 1;
                if *seen <= failures {
                    Reply::Transient(format!("flaky attempt {seen} of {failures}"))
                } else {
                    Reply::Echo
                }
            }
            None => Reply::Echo,
        },
    }
}

fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

fn exhaust_memory() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0u8; 1 << 20];
        block[0] = 1;
        hoard.push(std::hint::black_box(block));
    }
}

/// Unbounded recursion with small frames, so it exhausts wasm's own call stack
/// (a `StackOverflow` trap) rather than Rust's shadow stack in linear memory.
fn recurse(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    1 + recurse(std::hint::black_box(depth + 1))
}

#[cfg(target_arch = "wasm32")]
mod component {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use weir_plugin_sdk::{Event, Failure, Guest, Header, Level, Output, config_value, log};

    use super::Reply;

    thread_local! {
        static MODE: RefCell<Option<String>> = const { RefCell::new(None) };
        static ATTEMPTS: RefCell<HashMap<Vec<u8>, u32>> = RefCell::new(HashMap::new());
    }

    struct Chaos;

    impl Guest for Chaos {
        fn init(config: Vec<(String, String)>) -> Result<(), String> {
            if config_value(&config, "fail-init").is_some() {
                return Err("chaos plugin refuses to start (fail-init is set)".to_owned());
            }
            MODE.with(|m| *m.borrow_mut() = config_value(&config, "mode").map(str::to_owned));
            Ok(())
        }

        fn handle_event(event: Event) -> Result<Vec<Output>, Failure> {
            let text =
                String::from_utf8_lossy(event.value.as_deref().unwrap_or_default()).into_owned();
            let command = MODE.with(|m| m.borrow().clone()).unwrap_or(text);
            match command.as_str() {
                "log" => log(
                    Level::Warn,
                    &format!("chaos log at offset {}", event.offset),
                ),
                "print" => {
                    println!("chaos stdout at offset {}", event.offset);
                    eprintln!("chaos stderr at offset {}", event.offset);
                }
                "huge" => {
                    return Ok(vec![Output {
                        to: "out".to_owned(),
                        key: event.key,
                        value: Some(vec![b'x'; 8 << 20]),
                        headers: Vec::new(),
                    }]);
                }
                _ => {}
            }
            let key = event.key.clone().unwrap_or_default();
            let reply = ATTEMPTS.with(|a| super::run(&command, &key, &mut a.borrow_mut()));
            match reply {
                Reply::Echo => Ok(vec![Output {
                    to: "out".to_owned(),
                    key: event.key,
                    value: event.value,
                    headers: event.headers,
                }]),
                Reply::Report(report) => Ok(vec![Output {
                    to: "out".to_owned(),
                    key: event.key,
                    value: Some(report.into_bytes()),
                    headers: vec![Header::text("chaos.command", &command)],
                }]),
                Reply::Invalid(message) => Err(Failure::Invalid(message)),
                Reply::Transient(message) => Err(Failure::Transient(message)),
            }
        }
    }

    weir_plugin_sdk::export!(Chaos);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flaky_fails_then_succeeds_per_key() {
        let mut attempts = HashMap::new();
        assert!(matches!(
            run("flaky:2", b"a", &mut attempts),
            Reply::Transient(_)
        ));
        assert!(matches!(
            run("flaky:2", b"b", &mut attempts),
            Reply::Transient(_)
        ));
        assert!(matches!(
            run("flaky:2", b"a", &mut attempts),
            Reply::Transient(_)
        ));
        assert_eq!(run("flaky:2", b"a", &mut attempts), Reply::Echo);
    }

    #[test]
    fn unknown_commands_echo() {
        assert_eq!(run("hello", b"", &mut HashMap::new()), Reply::Echo);
    }
}
