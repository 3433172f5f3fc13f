//! The load-time checks: cross-field rules that a parsed `pipelines.toml` must pass
//! (declared and legal topic names, unique pipeline and branch names, routes that do
//! not loop, sane limits), each failure a [`ConfigError::Invalid`] at the line of the
//! offending key. Serde has already refused unknown keys and bad values.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;

use toml::Spanned;

use super::{ConfigError, PipelineConfig, WeirConfig, line_col};

/// Cross-field checks, each reported at the line of the offending key.
pub(super) struct Checker<'a> {
    pub(super) text: &'a str,
    pub(super) file: &'a str,
}

impl Checker<'_> {
    fn error(&self, span: Range<usize>, key: String, message: String) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_owned(),
            line: line_col(self.text, span.start).0,
            key,
            message,
        }
    }

    /// A pipeline or branch name: valid characters, and not taken.
    fn name<'c>(
        &self,
        name: &'c Spanned<String>,
        key: String,
        taken: &mut HashSet<&'c str>,
    ) -> Result<(), ConfigError> {
        let text = name.get_ref().as_str();
        if text.is_empty()
            || !text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(self.error(
                name.span(),
                key,
                format!("{text:?} is not a valid name (use letters, digits, '-', '_', '.')"),
            ));
        }
        if !taken.insert(text) {
            return Err(self.error(
                name.span(),
                key,
                format!(
                    "duplicate pipeline name {text:?}; every pipeline and branch needs its own name"
                ),
            ));
        }
        Ok(())
    }

    /// Outputs name declared topics other than the input; the DLQ is not the input.
    /// `at` is the key prefix, e.g. `pipeline[0].` or `pipeline[0].branch[1].`.
    fn routes(
        &self,
        config: &WeirConfig,
        pipeline: &PipelineConfig,
        outputs: &BTreeMap<String, Spanned<String>>,
        dlq: Option<&Spanned<String>>,
        at: &str,
    ) -> Result<(), ConfigError> {
        for (output, topic) in outputs {
            let key = format!("{at}outputs.{output}");
            if !config.topics.contains_key(topic.get_ref()) {
                return Err(self.error(
                    topic.span(),
                    key,
                    format!(
                        "topic {:?} is not declared; add a [topics.{}] table or fix the name",
                        topic.get_ref(),
                        topic.get_ref()
                    ),
                ));
            }
            if topic.get_ref() == pipeline.input() {
                return Err(self.error(
                    topic.span(),
                    key,
                    "an output must not be the pipeline's own input (it would loop)".into(),
                ));
            }
        }
        if let Some(dlq) = dlq {
            self.topic_name(dlq.span(), format!("{at}dlq"), dlq.get_ref())?;
        }
        if let Some(dlq) = dlq
            && dlq.get_ref() == pipeline.input()
        {
            return Err(self.error(
                dlq.span(),
                format!("{at}dlq"),
                format!(
                    "the dead-letter topic must differ from the input {:?}",
                    pipeline.input()
                ),
            ));
        }
        Ok(())
    }

    /// A Kafka topic name: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
    fn topic_name(&self, span: Range<usize>, key: String, name: &str) -> Result<(), ConfigError> {
        let legal = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        let problem = if name.is_empty() || name == "." || name == ".." {
            Some("is not a valid topic name".to_owned())
        } else if !legal {
            Some("is not a valid topic name: use letters, digits, '.', '_' and '-'".to_owned())
        } else if name.len() > 249 {
            Some(format!(
                "is {} characters long; Kafka allows at most 249",
                name.len()
            ))
        } else {
            None
        };
        match problem {
            Some(problem) => Err(self.error(span, key, format!("{name:?} {problem}"))),
            None => Ok(()),
        }
    }

    pub(super) fn check(&self, config: &WeirConfig) -> Result<(), ConfigError> {
        for (name, topic) in &config.topics {
            let key = format!("topics.{name}");
            self.topic_name(topic.span(), key.clone(), name)?;
            if topic.get_ref().partitions < 1 {
                return Err(self.error(topic.span(), key, "partitions must be at least 1".into()));
            }
            if topic.get_ref().replication < 1 {
                return Err(self.error(topic.span(), key, "replication must be at least 1".into()));
            }
        }
        // Pipeline and branch names share one namespace: they label metrics and
        // `weir.pipeline` headers, and `weir dlq --pipeline` looks them up.
        let mut names = HashSet::new();
        for (i, p) in config.pipelines.iter().enumerate() {
            let at = |field: &str| format!("pipeline[{i}].{field}");
            self.name(&p.name, at("name"), &mut names)?;
            self.topic_name(p.input.span(), at("input"), p.input())?;
            if p.branches.is_empty() {
                if p.prefix().is_empty() {
                    let span = p.plugins.as_ref().map_or(p.name.span(), Spanned::span);
                    return Err(self.error(
                        span,
                        at("plugins"),
                        "a pipeline needs at least one plugin".into(),
                    ));
                }
                self.routes(config, p, &p.outputs, p.dlq.as_ref(), &at(""))?;
            } else {
                for (field, span) in [
                    ("outputs", p.outputs.values().next().map(Spanned::span)),
                    ("dlq", p.dlq.as_ref().map(Spanned::span)),
                ] {
                    if let Some(span) = span {
                        return Err(self.error(
                            span,
                            at(field),
                            format!(
                                "a pipeline with [[pipeline.branch]] tables has no {field} of its own: \
                                 move `{field}` into each branch"
                            ),
                        ));
                    }
                }
                for (j, branch) in p.branches.iter().enumerate() {
                    let at = |field: &str| format!("pipeline[{i}].branch[{j}].{field}");
                    self.name(&branch.name, at("name"), &mut names)?;
                    if p.prefix().is_empty() && branch.plugins.is_empty() {
                        return Err(self.error(
                            branch.name.span(),
                            at("plugins"),
                            format!(
                                "branch {:?} runs no plugin: give it a plugins list, or the pipeline a shared one",
                                branch.name.get_ref()
                            ),
                        ));
                    }
                    self.routes(config, p, &branch.outputs, branch.dlq.as_ref(), &at(""))?;
                }
            }
            for branch in p.branches() {
                let dlq = branch.dlq();
                if dlq.len() > 249 {
                    return Err(self.error(
                        p.name.span(),
                        at("dlq"),
                        format!(
                            "the default dead-letter topic of {:?}, {dlq:?}, is {} characters long; \
                             Kafka allows at most 249: set `dlq`",
                            branch.name,
                            dlq.len()
                        ),
                    ));
                }
            }
            if let Some(workers) = &p.workers
                && *workers.get_ref() == 0
            {
                return Err(self.error(
                    workers.span(),
                    at("workers"),
                    "workers must be at least 1 (or leave it out to run every partition in parallel)".into(),
                ));
            }
            let limits = &p.limits;
            if limits.timeout.0.is_zero() || limits.memory.0 == 0 || limits.max_output.0 <= 36 {
                return Err(self.error(
                    p.name.span(),
                    at("limits"),
                    "timeout and memory must be more than 0, and max-output more than the 36 bytes of a record's framing (e.g. limits = { timeout = \"200ms\", memory = \"64MiB\", max-output = \"1MiB\" })".into(),
                ));
            }
            if p.retry.max_attempts == 0 {
                return Err(self.error(
                    p.name.span(),
                    at("retry.max-attempts"),
                    "must be at least 1 (1 means no retries)".into(),
                ));
            }
            let circuit = &p.circuit;
            if !(circuit.failure_ratio > 0.0 && circuit.failure_ratio <= 1.0) || circuit.window == 0
            {
                return Err(self.error(
                    p.name.span(),
                    at("circuit"),
                    "failure-ratio must be in (0, 1] and window at least 1".into(),
                ));
            }
            if p.transaction_interval.0.is_zero() {
                return Err(self.error(
                    p.name.span(),
                    at("transaction-interval"),
                    "must be longer than 0 (e.g. \"100ms\")".into(),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{BRANCHED, GOOD, parse};

    #[test]
    fn undeclared_output_topic_is_an_error_at_its_line() {
        let text = GOOD.replace("reminders = \"reminders\"", "reminders = \"remnders\"");
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.starts_with("pipelines.toml:18: pipeline[0].outputs.reminders:"),
            "{err}"
        );
        assert!(err.contains("\"remnders\" is not declared"), "{err}");
    }

    #[test]
    fn duplicate_pipeline_names_are_refused() {
        let second = GOOD[GOOD.find("[[pipeline]]").unwrap()..].to_owned();
        let err = parse(&format!("{GOOD}\n{second}")).unwrap_err().to_string();
        assert!(
            err.contains("duplicate pipeline name \"reminders\""),
            "{err}"
        );
    }

    #[test]
    fn workers_must_be_positive() {
        let one = parse(&GOOD.replace("outputs = {", "workers = 1\noutputs = {")).unwrap();
        assert_eq!(one.pipelines[0].workers(), Some(1));
        assert_eq!(parse(GOOD).unwrap().pipelines[0].workers(), None);
        let text = GOOD.replace("outputs = {", "workers = 0\noutputs = {");
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.contains("pipeline[0].workers: workers must be at least 1"),
            "{err}"
        );
    }

    #[test]
    fn limits_that_would_fail_every_record_are_refused() {
        for bad in [
            r#"memory = "32MiB", timeout = "0s""#,
            r#"memory = "0", timeout = "150ms""#,
            r#"memory = "32MiB", timeout = "150ms", max-output = "36""#,
        ] {
            let text = GOOD.replace(r#"memory = "32MiB", timeout = "150ms""#, bad);
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains("pipeline[0].limits"), "{bad}: {err}");
        }
    }

    #[test]
    fn dlq_equal_to_input_is_refused() {
        let text = GOOD.replace("outputs = {", "dlq = \"task-events\"\noutputs = {");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("pipeline[0].dlq"), "{err}");
    }

    #[test]
    fn bad_branch_configs_name_file_line_and_key() {
        let cases = [
            (
                BRANCHED.replace(
                    "delivery = \"exactly-once\"",
                    "outputs = { x = \"reminders\" }",
                ),
                "pipelines.toml:10: pipeline[0].outputs: a pipeline with [[pipeline.branch]] tables has no outputs of its own",
            ),
            (
                BRANCHED.replace("name = \"ui-sync\"", "name = \"todo\""),
                "pipelines.toml:18: pipeline[0].branch[1].name: duplicate pipeline name \"todo\"",
            ),
            (
                BRANCHED.replace("\"task-updates\" }", "\"task-update\" }"),
                "pipelines.toml:20: pipeline[0].branch[1].outputs.task-updates: topic \"task-update\" is not declared",
            ),
            (
                BRANCHED.replace("dlq = \"ui-sync.dlq\"", "dlq = \"task-events\""),
                "pipelines.toml:21: pipeline[0].branch[1].dlq: the dead-letter topic must differ",
            ),
            (
                BRANCHED
                    .replace("plugins = [{ path = \"validator.wasm\" }]\n", "")
                    .replace("plugins = [{ path = \"projector.wasm\" }]\n", ""),
                "pipelines.toml:17: pipeline[0].branch[1].plugins: branch \"ui-sync\" runs no plugin",
            ),
            (
                BRANCHED.replace("\"exactly-once\"", "\"exactly-twice\""),
                "pipelines.toml:10:",
            ),
        ];
        for (text, want) in cases {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.starts_with(want), "want {want:?}, got {err:?}");
        }
    }

    #[test]
    fn topic_names_must_be_legal_kafka_names() {
        let every = "Aa0._-".repeat(40);
        let ok = GOOD.replace("[topics.task-events]", &format!("[topics.\"{every}\"]"));
        let ok = ok.replace("input = \"task-events\"", &format!("input = \"{every}\""));
        let err = parse(&ok).unwrap_err().to_string();
        assert!(
            err.contains("default dead-letter topic") && err.contains("set `dlq`"),
            "a legal 240-character input, but its default DLQ is too long: {err}"
        );
        let fixed = ok.replace("outputs = {", "dlq = \"short.dlq\"\noutputs = {");
        assert!(parse(&fixed).is_ok(), "every legal character is accepted");
        for bad in ["a b", "caf\u{e9}", "..", &"x".repeat(250)] {
            let text = GOOD.replace("[topics.reminders]", &format!("[topics.\"{bad}\"]"));
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains("topics."), "{bad:?}: {err}");
        }
    }
}
