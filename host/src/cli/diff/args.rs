//! `weir diff`'s arguments: clap's `DiffArgs`, and the split of the trailing
//! `OLD.wasm... -- NEW.wasm...` into the two chains, moving any option written among
//! them (after NEW, say) into its field.

use std::path::PathBuf;

use anyhow::{Context, bail};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Options may come before the chains or after NEW; the first `--` separates OLD from NEW.

Examples:
  weir diff v1/reminder_deriver.wasm -- v2/reminder_deriver.wasm --input examples/task-events.jsonl
  weir diff deriver.wasm -- deriver.wasm --old-config lead-time=15m --new-config lead-time=1h --input events.jsonl
  weir diff old.wasm -- new.wasm --from-topic task-events --limit 5000 --config pipelines.toml")]
pub struct DiffArgs {
    /// Events as JSON lines, as `weir test` reads them (`-` for stdin).
    #[arg(long, value_name = "FILE.jsonl")]
    pub(super) input: Option<PathBuf>,
    /// Read the events from this topic instead, on the brokers of the pipelines file
    /// (`--config pipelines.toml`, the default). Read-only: nothing is committed.
    #[arg(long, value_name = "TOPIC")]
    pub(super) from_topic: Option<String>,
    /// With --from-topic: how many records, the latest of the topic.
    #[arg(long, default_value_t = 1000)]
    pub(super) limit: usize,
    /// Plugin config `[PLUGIN:]K=V` for both chains (PLUGIN: file stem or 1-based
    /// position), or, without `=`, the pipelines file whose brokers --from-topic reads.
    #[arg(long = "config", value_name = "[PLUGIN:]K=V|FILE.toml")]
    pub(super) config: Vec<String>,
    /// Plugin config for the OLD chain only.
    #[arg(long = "old-config", value_name = "[PLUGIN:]K=V")]
    pub(super) old_config: Vec<String>,
    /// Plugin config for the NEW chain only.
    #[arg(long = "new-config", value_name = "[PLUGIN:]K=V")]
    pub(super) new_config: Vec<String>,
    /// Memory cap per plugin instance.
    #[arg(long, default_value = "64MiB")]
    pub(super) memory: String,
    /// Deadline of one call.
    #[arg(long, default_value = "200ms")]
    pub(super) timeout: String,
    /// Largest output record accepted.
    #[arg(long, default_value = "1MiB")]
    pub(super) max_output: String,
    /// Compare failures by kind and stage only (ports in other languages word their
    /// messages differently).
    #[arg(long)]
    pub(super) ignore_messages: bool,
    /// Where the virtual clock of stateful plugins starts (as `weir test --now`).
    #[arg(long, value_name = "INSTANT")]
    pub(super) now: Option<String>,
    /// How many differing inputs to show in full (`all` for every one); the summary
    /// counts them all.
    #[arg(long, default_value = "100", value_name = "N|all")]
    pub(super) show: String,
    /// One JSON line per differing input on stdout (`input`, `change`, `removed`,
    /// `added`), for scripts.
    #[arg(long)]
    pub(super) json: bool,
    /// `OLD.wasm... -- NEW.wasm...`: the two chains, first stage first.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true,
        value_name = "OLD.wasm... -- NEW.wasm..."
    )]
    pub(super) chains: Vec<String>,
}

/// Options that may follow the chains: (name, takes a value).
const OPTIONS: &[(&str, bool)] = &[
    ("--input", true),
    ("--from-topic", true),
    ("--limit", true),
    ("--config", true),
    ("--old-config", true),
    ("--new-config", true),
    ("--memory", true),
    ("--timeout", true),
    ("--max-output", true),
    ("--show", true),
    ("--now", true),
    ("--ignore-messages", false),
    ("--json", false),
];

/// The two chains, and the options found among them.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Chains {
    pub(super) old: Vec<PathBuf>,
    pub(super) new: Vec<PathBuf>,
}

impl DiffArgs {
    /// Splits `chains` at the first `--`, moving any option found there into `self`.
    pub(super) fn split(&mut self) -> anyhow::Result<Chains> {
        let mut chains = Chains::default();
        let mut seen_separator = false;
        let mut tokens = std::mem::take(&mut self.chains).into_iter();
        while let Some(token) = tokens.next() {
            if token == "--" && !seen_separator {
                seen_separator = true;
                continue;
            }
            if token.starts_with("--") && token.len() > 2 {
                let (name, inline) = match token.split_once('=') {
                    Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
                    None => (token.clone(), None),
                };
                let Some(&(_, takes_value)) = OPTIONS.iter().find(|(o, _)| *o == name) else {
                    bail!("unknown option {name} (see weir diff --help)");
                };
                let value = if takes_value {
                    match inline {
                        Some(v) => v,
                        None => tokens
                            .next()
                            .with_context(|| format!("{name} needs a value"))?,
                    }
                } else {
                    String::new()
                };
                self.set(&name, value)?;
                continue;
            }
            let side = if seen_separator {
                &mut chains.new
            } else {
                &mut chains.old
            };
            side.push(PathBuf::from(token));
        }
        if !seen_separator || chains.old.is_empty() || chains.new.is_empty() {
            bail!(
                "give both chains, separated by --: weir diff OLD.wasm... -- NEW.wasm... --input FILE"
            );
        }
        Ok(chains)
    }

    fn set(&mut self, name: &str, value: String) -> anyhow::Result<()> {
        match name {
            "--input" => self.input = Some(PathBuf::from(value)),
            "--from-topic" => self.from_topic = Some(value),
            "--limit" => {
                self.limit = value
                    .parse()
                    .with_context(|| format!("--limit {value:?}: expected a number"))?
            }
            "--config" => self.config.push(value),
            "--old-config" => self.old_config.push(value),
            "--new-config" => self.new_config.push(value),
            "--memory" => self.memory = value,
            "--timeout" => self.timeout = value,
            "--max-output" => self.max_output = value,
            "--show" => self.show = value,
            "--now" => self.now = Some(value),
            "--ignore-messages" => self.ignore_messages = true,
            "--json" => self.json = true,
            _ => unreachable!("every name of OPTIONS is handled"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(line: &[&str]) -> (DiffArgs, Chains) {
        let cli =
            crate::cli::Cli::try_parse_from(["weir", "diff"].iter().chain(line).copied()).unwrap();
        let crate::cli::Command::Diff(mut args) = cli.command else {
            panic!("not diff");
        };
        let chains = args.split().unwrap();
        (args, chains)
    }

    #[test]
    fn options_may_come_before_or_after_the_chains() {
        let (args, chains) = parse(&[
            "--input",
            "a.jsonl",
            "v.wasm",
            "d.wasm",
            "--",
            "v.wasm",
            "d2.wasm",
            "--config",
            "2:lead-time=1h",
            "--new-config=x=y",
            "--ignore-messages",
        ]);
        assert_eq!(args.input, Some(PathBuf::from("a.jsonl")));
        assert_eq!(args.config, ["2:lead-time=1h"]);
        assert_eq!(args.new_config, ["x=y"]);
        assert!(args.ignore_messages);
        assert_eq!(
            chains.old,
            [PathBuf::from("v.wasm"), PathBuf::from("d.wasm")]
        );
        assert_eq!(
            chains.new,
            [PathBuf::from("v.wasm"), PathBuf::from("d2.wasm")]
        );

        let cli = crate::cli::Cli::try_parse_from(["weir", "diff", "a.wasm", "b.wasm"]).unwrap();
        let crate::cli::Command::Diff(mut args) = cli.command else {
            panic!("not diff");
        };
        assert!(args.split().is_err(), "no separator");
    }
}
