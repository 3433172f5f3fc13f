//! `${VAR}` and `${VAR:-default}` expansion of config strings.

/// Expands every `${VAR}` and `${VAR:-default}` in `text` with `lookup`.
/// `$$` stands for a literal `$`. An unset variable without a default is an error
/// naming it.
pub fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let Some(body_and_tail) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let close = body_and_tail
            .find('}')
            .ok_or_else(|| format!("unclosed `${{` in {text:?}"))?;
        let body = &body_and_tail[..close];
        let (name, default) = match body.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (body, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "`${{{body}}}` is not a variable reference (use ${{NAME}} or ${{NAME:-default}})"
            ));
        }
        match lookup(name)
            .filter(|v| !v.is_empty())
            .or(default.map(str::to_owned))
        {
            Some(value) => out.push_str(&value),
            None => {
                return Err(format!(
                    "environment variable {name} is not set (set it, or give a default: ${{{name}:-value}})"
                ));
            }
        }
        rest = &body_and_tail[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "BROKERS" => Some("kafka:9092".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_set_and_default() {
        assert_eq!(expand("${BROKERS:-embedded}", &env).unwrap(), "kafka:9092");
        assert_eq!(expand("${NOPE:-embedded}", &env).unwrap(), "embedded");
        assert_eq!(expand("${EMPTY:-x}", &env).unwrap(), "x");
        assert_eq!(expand("a-${BROKERS}-b", &env).unwrap(), "a-kafka:9092-b");
        assert_eq!(
            expand("cost: $5 and $$HOME", &env).unwrap(),
            "cost: $5 and $HOME"
        );
    }

    #[test]
    fn unset_without_default_names_the_variable() {
        let err = expand("${KAFKA_PASSWORD}", &env).unwrap_err();
        assert!(err.contains("KAFKA_PASSWORD is not set"), "{err}");
        assert!(expand("${BROKERS", &env).unwrap_err().contains("unclosed"));
        assert!(expand("${not a var}", &env).is_err());
    }
}
