//! Plugins in Python, JavaScript and Go beside Rust, as an author meets them:
//! `weir new` + `weir build` + `weir test` for every template, the ports of the Todo
//! plugins against the Rust plugins (`weir diff`), the compile cache, start-up
//! limits, `weir diff` itself and `weir dev` rebuilding a Go project.
//!
//! Each component is built once per run and shared by the tests (the builds take
//! seconds of CPU for Python and JavaScript). The toolchains are installed into
//! `${WEIR_CACHE:-~/.cache/weir}/toolchains` on first use; compiled components go
//! to a cache under cargo's `target/tmp`, except in the cache tests, which use
//! their own.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::{json_lines, plugin, root, run, stderr};
use serde_json::{Value, json};

/// Scratch space of this run (fresh), and the compile cache shared across runs.
fn work() -> &'static Path {
    static WORK: OnceLock<PathBuf> = OnceLock::new();
    WORK.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("languages");
        let _ = std::fs::remove_dir_all(dir.join("run"));
        std::fs::create_dir_all(dir.join("run")).expect("create the scratch directory");
        dir
    })
}

fn run_dir() -> PathBuf {
    work().join("run")
}

/// `weir` with the run's compile cache.
fn weir() -> Command {
    let mut command = common::weir();
    command.env("WEIR_COMPILE_CACHE", work().join("compile-cache"));
    command
}

fn ok(output: &Output, what: &str) -> String {
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({}):\nstdout:\n{out}\nstderr:\n{}",
        output.status,
        stderr(output)
    );
    out
}

/// The component `weir build` printed: `built PATH (SIZE, LANG) in ...`.
fn built_path(stdout: &str) -> PathBuf {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("built "))
        .unwrap_or_else(|| panic!("no `built` line in:\n{stdout}"));
    let rest = &line["built ".len()..];
    PathBuf::from(&rest[..rest.rfind(" (").expect("a size after the path")])
}

/// A project made by `weir new` and built by `weir build`: (dir, component).
fn template(lang: &str) -> &'static (PathBuf, PathBuf) {
    const LANGUAGES: [&str; 4] = ["rust", "python", "js", "go"];
    static BUILT: [OnceLock<(PathBuf, PathBuf)>; 4] = [const { OnceLock::new() }; 4];
    let slot = LANGUAGES
        .iter()
        .position(|l| *l == lang)
        .expect("a known language");
    BUILT[slot].get_or_init(|| {
        let name = format!("hello-{lang}");
        let dir = run_dir().join(&name);
        // From outside the checkout: the templates are in the binary.
        let output = run(weir()
            .current_dir(run_dir())
            .args(["new", &name, "--lang", lang]));
        let out = ok(&output, &format!("weir new {name} --lang {lang}"));
        assert!(
            out.contains(&format!("created {lang} plugin {name}")),
            "{out}"
        );
        let mut build = weir();
        build.current_dir(&dir).arg("build");
        if lang == "rust" {
            // Kept across runs: the SDK and wit-bindgen compile once.
            build.env("CARGO_TARGET_DIR", work().join("rust-template-target"));
        }
        let out = ok(&run(&mut build), &format!("weir build of {name}"));
        let wasm = built_path(&out);
        assert!(wasm.is_file(), "{}", wasm.display());
        (dir, wasm)
    })
}

/// A port of a Todo plugin (`task-validator`, `reminder-deriver`) built into
/// `run/<lang>/<name_snake>.wasm`, so that `--config reminder_deriver:...` names it
/// as it names the Rust one.
fn port(lang: &str, name: &str) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _building = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let out = run_dir()
        .join(lang)
        .join(format!("{}.wasm", name.replace('-', "_")));
    if !out.exists() {
        let dir = root().join("examples/plugins").join(lang).join(name);
        let output = run(weir().arg("build").arg(&dir).arg("--out").arg(&out));
        let printed = ok(&output, &format!("weir build {}", dir.display()));
        assert_eq!(built_path(&printed), out);
    }
    out
}

/// `examples/task-events.jsonl`, 2,000 generated events (seed 7) and the ports'
/// edge cases, in one file.
fn todo_events() -> &'static Path {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let mut text = std::fs::read_to_string(root().join("examples/task-events.jsonl")).unwrap();
        let start = chrono::DateTime::parse_from_rfc3339("2026-11-26T09:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        for (i, sample) in todo_events::sample::generate(2000, 7, start)
            .into_iter()
            .enumerate()
        {
            let value = serde_json::from_slice::<Value>(&sample.value).unwrap_or_else(|_| {
                Value::String(String::from_utf8_lossy(&sample.value).into_owned())
            });
            let line = json!({
                "key": sample.key,
                "value": value,
                "headers": { "trace": format!("t-{i}") },
                "timestamp-ms": start.timestamp_millis() + i as i64 * 1000,
            });
            text += &format!("{line}\n");
        }
        text += &std::fs::read_to_string(root().join("examples/plugins/edge-cases.jsonl")).unwrap();
        let path = run_dir().join("todo-events.jsonl");
        std::fs::write(&path, text).unwrap();
        path
    })
}

// --- weir new + weir build + weir test, per language --------------------------------

/// The template's own check: `weir test` prints exactly `expected.jsonl`.
fn template_passes_its_own_test(lang: &str) {
    let (dir, wasm) = template(lang);
    let output = run(weir()
        .current_dir(dir)
        .arg("test")
        .arg(wasm)
        .args(["--input", "events.jsonl"]));
    let out = ok(&output, "weir test");
    let expected = std::fs::read_to_string(dir.join("expected.jsonl")).unwrap();
    assert_eq!(out, expected, "weir test of the {lang} template");
}

/// Runs a native test command in `dir`.
fn native(dir: &Path, program: &str, args: &[&str], env: &[(&str, &Path)]) {
    let mut command = Command::new(program);
    command.current_dir(dir).args(args).stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    ok(&output, &format!("{program} {args:?} in {}", dir.display()));
}

#[test]
fn rust_template_builds_and_passes_its_test() {
    template_passes_its_own_test("rust");
}

#[test]
fn python_template_builds_and_passes_its_tests() {
    template_passes_its_own_test("python");
    let (dir, _) = template("python");
    let sdk = root().join("plugins/sdk-python");
    native(dir, "python3", &["-m", "unittest"], &[("PYTHONPATH", &sdk)]);
}

#[test]
fn js_template_builds_and_passes_its_tests() {
    template_passes_its_own_test("js");
    let (dir, _) = template("js");
    native(dir, "npm", &["install", "--no-audit", "--no-fund"], &[]);
    native(dir, "npm", &["test"], &[]);
}

#[test]
fn go_template_builds_and_passes_its_tests() {
    template_passes_its_own_test("go");
    let (dir, _) = template("go");
    native(dir, "go", &["test", "./..."], &[]);
}

#[test]
fn new_refuses_a_bad_name_and_a_used_directory() {
    let output = run(weir()
        .current_dir(run_dir())
        .args(["new", "Bad_Name", "--lang", "go"]));
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("is not a plugin name"),
        "{}",
        stderr(&output)
    );

    let used = run_dir().join("used");
    std::fs::create_dir_all(&used).unwrap();
    std::fs::write(used.join("keep.txt"), "mine").unwrap();
    let output = run(weir()
        .current_dir(run_dir())
        .args(["new", "used", "--lang", "python", "--dir"])
        .arg(&used));
    assert!(!output.status.success());
    assert!(stderr(&output).contains("not empty"), "{}", stderr(&output));
    assert_eq!(
        std::fs::read_to_string(used.join("keep.txt")).unwrap(),
        "mine"
    );
}

#[test]
fn build_shows_the_compilers_errors_and_exits_1() {
    let dir = run_dir().join("broken-go");
    let output = run(weir()
        .current_dir(run_dir())
        .args(["new", "broken-go", "--lang", "go"]));
    ok(&output, "weir new broken-go");
    let main = dir.join("main.go");
    let text = std::fs::read_to_string(&main).unwrap();
    std::fs::write(
        &main,
        text.replace("strings.ToUpper(text)", "strings.ToUpper(txet)"),
    )
    .unwrap();
    let output = run(weir().current_dir(&dir).arg("build"));
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.contains("undefined: txet"), "{err}");
    assert!(err.contains("the build of"), "{err}");
    assert!(output.stdout.is_empty());
}

// --- the ports agree with the Rust plugins -------------------------------------------

/// `weir diff` of a Rust chain and a port chain over the Todo events, comparing
/// outputs (destination, key, headers, value as JSON) and failure kinds and stages.
fn agrees(old: &[PathBuf], new: &[PathBuf], config: &[&str]) {
    let mut command = weir();
    command.arg("diff").args(old).arg("--").args(new);
    command.arg("--input").arg(todo_events());
    command.args(["--ignore-messages", "--memory", "128MiB", "--timeout", "5s"]);
    for entry in config {
        command.args(["--config", entry]);
    }
    let output = run(&mut command);
    let out = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "the chains differ:\n{}\nstderr:\n{}",
        out.chars().take(6000).collect::<String>(),
        stderr(&output)
    );
    let summary = out.lines().last().unwrap_or_default();
    assert!(summary.contains(" 0 differ"), "{summary}");
    assert!(
        !summary.contains("OLD 0 output(s)"),
        "nothing was compared: {summary}"
    );
}

fn ports_agree_with_rust(lang: &str) {
    let (validator, deriver) = (port(lang, "task-validator"), port(lang, "reminder-deriver"));
    let rust = (plugin("task_validator"), plugin("reminder_deriver"));
    agrees(
        std::slice::from_ref(&rust.0),
        std::slice::from_ref(&validator),
        &[],
    );
    agrees(
        std::slice::from_ref(&rust.1),
        std::slice::from_ref(&deriver),
        &["lead-time=2h"],
    );
    agrees(
        &[rust.0, rust.1],
        &[validator, deriver],
        &["reminder_deriver:lead-time=1h"],
    );
}

#[test]
fn python_ports_agree_with_the_rust_plugins() {
    ports_agree_with_rust("python");
}

#[test]
fn js_ports_agree_with_the_rust_plugins() {
    ports_agree_with_rust("js");
}

#[test]
fn go_ports_agree_with_the_rust_plugins() {
    ports_agree_with_rust("go");
}

// --- the compile cache and start-up limits ------------------------------------------

/// A pipelines file running `plugins` with `limits`, in a fresh directory.
fn pipelines(name: &str, plugins: &[&Path], limits: &str) -> PathBuf {
    let dir = run_dir().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let list: Vec<String> = plugins
        .iter()
        .map(|p| format!("{{ path = {:?} }}", p.display().to_string()))
        .collect();
    let config = format!(
        r#"
[topics.out]
[[pipeline]]
name = "p"
input = "in"
plugins = [{}]
outputs = {{ valid = "out" }}
limits = {limits}
"#,
        list.join(", ")
    );
    let path = dir.join("pipelines.toml");
    std::fs::write(&path, config).unwrap();
    path
}

#[test]
fn a_second_check_compiles_nothing_and_a_corrupt_entry_is_compiled_again() {
    let go = port("go", "task-validator");
    let rust = plugin("task_validator");
    let config = pipelines("cache-check", &[&rust, &go], "{ memory = \"64MiB\" }");
    let cache = run_dir().join("private-compile-cache");
    let check = || {
        let output = run(weir()
            .env("WEIR_COMPILE_CACHE", &cache)
            .arg("check")
            .arg("--config")
            .arg(&config));
        ok(&output, "weir check");
        stderr(&output)
    };
    let compiled = |err: &str| err.lines().filter(|l| l.contains(" compiled ")).count();
    let cached = |err: &str| {
        err.lines()
            .filter(|l| l.contains("from the compile cache"))
            .count()
    };

    let first = check();
    assert_eq!((compiled(&first), cached(&first)), (2, 0), "{first}");
    let second = check();
    assert_eq!((compiled(&second), cached(&second)), (0, 2), "{second}");

    // Flip bytes in the middle of every entry: each is refused and compiled again.
    for entry in std::fs::read_dir(&cache).unwrap() {
        let path = entry.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        for b in &mut bytes[middle..middle + 64] {
            *b ^= 0x5a;
        }
        std::fs::write(&path, bytes).unwrap();
    }
    let third = check();
    assert_eq!((compiled(&third), cached(&third)), (2, 0), "{third}");
    assert!(third.contains("is corrupt"), "{third}");

    // And the plugin still works, now from the repaired entry.
    let output = run(weir()
        .env("WEIR_COMPILE_CACHE", &cache)
        .arg("test")
        .arg(&go)
        .arg("--input")
        .arg(root().join("examples/task-events.jsonl")));
    ok(&output, "weir test");
    let err = stderr(&output);
    assert_eq!(cached(&err), 1, "{err}");
    let lines = json_lines(&output);
    assert!(lines.iter().any(|l| l["to"] == "valid"), "{lines:?}");
}

#[test]
fn check_explains_a_plugin_that_cannot_start_under_its_memory_cap() {
    let python = port("python", "task-validator");
    let config = pipelines("small-memory", &[&python], "{ memory = \"8MiB\" }");
    let output = run(weir().arg("check").arg("--config").arg(&config));
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("plugin task_validator could not start within limits.memory = 8MiB"),
        "{err}"
    );
    assert!(
        err.contains("Python plugins need at least 32MiB (see docs/languages.md)"),
        "{err}"
    );
}

#[test]
fn check_warns_of_a_javascript_plugin_under_its_minimum() {
    let js = port("js", "task-validator");
    let config = pipelines("js-memory", &[&js], "{ memory = \"16MiB\" }");
    let output = run(weir().arg("check").arg("--config").arg(&config));
    ok(&output, "weir check");
    let err = stderr(&output);
    assert!(
        err.contains("is a JavaScript plugin and limits.memory = 16MiB is below the 32MiB"),
        "{err}"
    );
}

#[test]
fn start_up_gets_more_time_than_one_call() {
    // A 1 ms call deadline is too short for Go's runtime to start, but instantiate +
    // init get max(limits.timeout, 10s).
    let go = port("go", "task-validator");
    let config = pipelines("short-timeout", &[&go], "{ timeout = \"1ms\" }");
    let output = run(weir().arg("check").arg("--config").arg(&config));
    ok(&output, "weir check with limits.timeout = 1ms");
}

// --- weir diff ---------------------------------------------------------------------

#[test]
fn diff_of_identical_chains_exits_0() {
    let chain = [plugin("task_validator"), plugin("reminder_deriver")];
    let output = run(weir()
        .arg("diff")
        .args(&chain)
        .arg("--")
        .args(&chain)
        .arg("--input")
        .arg(root().join("examples/task-events.jsonl")));
    let out = ok(&output, "weir diff");
    assert!(out.contains("58 input(s): 58 identical, 0 differ"), "{out}");
}

/// Outputs and failures of `weir test`, grouped by input line.
fn by_input(output: &Output) -> Vec<(u64, Vec<Value>)> {
    let mut groups: Vec<(u64, Vec<Value>)> = Vec::new();
    for mut line in json_lines(output) {
        let input = line["input"].as_u64().expect("an input number");
        line.as_object_mut().unwrap().remove("input");
        match groups.last_mut() {
            Some((n, rows)) if *n == input => rows.push(line),
            _ => groups.push((input, vec![line])),
        }
    }
    groups
}

#[test]
fn diff_lists_exactly_the_inputs_a_changed_deriver_changes() {
    let chain = [plugin("task_validator"), plugin("reminder_deriver")];
    let input = root().join("examples/task-events.jsonl");
    let test = |lead_time: &str| {
        let output = run(weir()
            .arg("test")
            .args(&chain)
            .arg("--input")
            .arg(&input)
            .args([
                "--config",
                &format!("reminder_deriver:lead-time={lead_time}"),
            ]));
        ok(&output, "weir test");
        by_input(&output)
    };
    let (old, new) = (test("15m"), test("1h"));
    let expected: BTreeSet<u64> = old
        .iter()
        .chain(&new)
        .map(|(n, _)| *n)
        .filter(|n| old.iter().find(|(m, _)| m == n) != new.iter().find(|(m, _)| m == n))
        .collect();
    assert!(!expected.is_empty());

    let output = run(weir()
        .arg("diff")
        .args(&chain)
        .arg("--")
        .args(&chain)
        .arg("--input")
        .arg(&input)
        .args(["--old-config", "reminder_deriver:lead-time=15m"])
        .args(["--new-config", "reminder_deriver:lead-time=1h", "--json"]));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let listed: BTreeSet<u64> = json_lines(&output)
        .iter()
        .map(|l| {
            assert_eq!(l["change"], "changed", "{l}");
            l["input"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(listed, expected);
    let err = stderr(&output);
    assert!(
        err.contains(&format!(
            "{} differ (changed: {})",
            expected.len(),
            expected.len()
        )),
        "{err}"
    );

    // The text form names the field that changed.
    let output = run(weir()
        .arg("diff")
        .args(&chain)
        .arg("--")
        .args(&chain)
        .arg("--input")
        .arg(&input)
        .args(["--old-config", "reminder_deriver:lead-time=15m"])
        .args([
            "--new-config",
            "reminder_deriver:lead-time=1h",
            "--show",
            "all",
        ]));
    let out = String::from_utf8_lossy(&output.stdout);
    let first = expected.first().unwrap();
    assert!(out.contains(&format!("input {first}: changed")), "{out}");
    assert!(out.contains("value.payload.scheduled_time:"), "{out}");
}

#[test]
fn diff_without_two_chains_is_a_usage_error() {
    let output = run(weir()
        .arg("diff")
        .arg(plugin("task_validator"))
        .arg("--input")
        .arg(root().join("examples/task-events.jsonl")));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("separated by --"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn diff_reads_the_latest_records_of_a_topic_and_commits_nothing() {
    use common::kafka::{committed, create_topic, kafka_section, produce, shared_broker, unique};
    let brokers = shared_broker();
    let topic = unique("diff-input");
    create_topic(brokers, &topic, 3);
    let text = std::fs::read_to_string(root().join("examples/task-events.jsonl")).unwrap();
    let records: Vec<_> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let line: Value = serde_json::from_str(line).unwrap();
            let value = match &line["value"] {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            let headers = line["headers"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect();
            (
                line["key"].as_str().map(str::to_owned),
                Some(value.into_bytes()),
                headers,
            )
        })
        .collect();
    produce(brokers, &topic, &records);
    let dir = run_dir().join("diff-topic");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("pipelines.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[topics.{topic}]\npartitions = 3\n[topics.out]\n[[pipeline]]\nname = \"p\"\ninput = \"{topic}\"\nplugins = [{{ path = {:?} }}]\noutputs = {{ valid = \"out\" }}\n",
            kafka_section(brokers),
            plugin("task_validator").display().to_string()
        ),
    )
    .unwrap();
    let chain = [plugin("task_validator"), plugin("reminder_deriver")];
    let diff = |extra: &[&str]| {
        let child = weir()
            .arg("diff")
            .args(&chain)
            .arg("--")
            .args(&chain)
            .args(["--from-topic", &topic, "--limit", "40", "--config"])
            .arg(&config)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start weir diff");
        let pid = child.id();
        (pid, child.wait_with_output().expect("weir diff ran"))
    };
    let (pid, same) = diff(&[]);
    let out = String::from_utf8_lossy(&same.stdout);
    assert_eq!(same.status.code(), Some(0), "{out}\n{}", stderr(&same));
    assert!(out.contains("40 input(s): 40 identical, 0 differ"), "{out}");
    assert!(
        stderr(&same).contains("read 40 record(s)"),
        "{}",
        stderr(&same)
    );
    assert!(committed(brokers, &format!("weir-diff-{pid}"), &topic).is_empty());

    let (_, changed) = diff(&[
        "--old-config",
        "reminder_deriver:lead-time=15m",
        "--new-config",
        "reminder_deriver:lead-time=1h",
    ]);
    let out = String::from_utf8_lossy(&changed.stdout);
    assert_eq!(
        changed.status.code(),
        Some(1),
        "{out}\n{}",
        stderr(&changed)
    );
    // Inputs are named partition/offset.
    assert!(
        out.lines()
            .any(|l| l.starts_with("record ") && l.ends_with(": changed")),
        "{out}"
    );
}

// --- weir dev -------------------------------------------------------------------------

#[test]
fn dev_rebuilds_a_go_project_when_its_source_changes() {
    let dir = run_dir().join("dev");
    std::fs::create_dir_all(&dir).unwrap();
    ok(
        &run(weir()
            .current_dir(&dir)
            .args(["new", "dev-go", "--lang", "go", "--dir", "proj"])),
        "weir new dev-go",
    );
    // weir binds a free port itself: no port is picked here.
    std::fs::write(
        dir.join("pipelines.toml"),
        r#"
[kafka]
brokers = "embedded"
[metrics]
listen = "127.0.0.1:0"
[topics.dev-in]
[topics.dev-out]
[[pipeline]]
name = "dev"
input = "dev-in"
plugins = [{ path = "proj/dev_go.wasm" }]
outputs = { out = "dev-out" }
"#,
    )
    .unwrap();
    let mut child = weir()
        .current_dir(&dir)
        .args(["dev", "--config", "pipelines.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start weir dev");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stream = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = String::new();
    let mut wait_for = |needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(180);
        while Instant::now() < deadline {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
                seen += &line;
                seen.push('\n');
                if line.contains(needle) {
                    return true;
                }
            }
        }
        false
    };
    let started = wait_for("watching the plugins");
    let rebuilt = started && {
        let main = dir.join("proj/main.go");
        let text = std::fs::read_to_string(&main).unwrap();
        std::fs::write(
            &main,
            text.replace("strings.ToUpper(text)", "strings.ToLower(text)"),
        )
        .unwrap();
        wait_for("plugin reloaded")
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(started && rebuilt, "weir dev said:\n{seen}");
    assert!(seen.contains("sources of"), "{seen}");
}

// --- measurements (not run by default) ----------------------------------------------

/// Prints, per language, the time to load the validator cold and from the compile
/// cache, and to instantiate + init it:
/// `cargo test --release -p weir --test languages -- --ignored --nocapture measure`.
#[test]
#[ignore = "a measurement, not a test"]
fn measure_compile_and_instantiate() {
    use weir::plugin::{Limits, Plugin, PluginEngine};
    let validators = [
        ("rust", plugin("task_validator")),
        ("go", port("go", "task-validator")),
        ("python", port("python", "task-validator")),
        ("js", port("js", "task-validator")),
    ];
    let cache = run_dir().join("measure-cache");
    for (lang, wasm) in validators {
        let _ = std::fs::remove_dir_all(&cache);
        // SAFETY of set_var: this test runs alone (--ignored, filtered by name).
        unsafe { std::env::set_var("WEIR_COMPILE_CACHE", &cache) };
        let engine = PluginEngine::new().unwrap();
        let started = Instant::now();
        engine.load(&wasm, Vec::new(), Limits::default()).unwrap();
        let cold = started.elapsed();
        let engine = PluginEngine::new().unwrap();
        let started = Instant::now();
        let version = engine.load(&wasm, Vec::new(), Limits::default()).unwrap();
        let cached = started.elapsed();
        let mut times = Vec::new();
        for _ in 0..50 {
            let started = Instant::now();
            let instance = Plugin::instantiate(&version).unwrap();
            times.push(started.elapsed());
            drop(instance);
        }
        times.sort();
        println!(
            "{lang:<7} {:>6.1} MB  compile {:>6.2}s  cached load {:>6.3}s  instantiate+init p50 {:>7.2}ms  max {:>7.2}ms",
            std::fs::metadata(&wasm).unwrap().len() as f64 / 1e6,
            cold.as_secs_f64(),
            cached.as_secs_f64(),
            times[25].as_secs_f64() * 1e3,
            times[49].as_secs_f64() * 1e3,
        );
    }
}

/// The SDKs' own native tests (their in-memory fakes of state and timers
/// included) and the ported Todo derivers' tests, which check every row of the
/// deriver's table in each language.
#[test]
fn sdks_and_ported_derivers_pass_their_native_tests() {
    let sdk_python = root().join("plugins/sdk-python");
    native(
        &sdk_python,
        "python3",
        &["-m", "unittest", "discover", "-s", "tests"],
        &[("PYTHONPATH", &sdk_python)],
    );
    native(
        &root().join("plugins/sdk-js"),
        "node",
        &["--test", "test/"],
        &[],
    );
    native(
        &root().join("plugins/sdk-go"),
        "go",
        &["test", "./..."],
        &[],
    );
    let examples = root().join("examples/plugins");
    native(
        &examples.join("python/reminder-deriver"),
        "python3",
        &["-m", "unittest"],
        &[("PYTHONPATH", &sdk_python)],
    );
    native(
        &examples.join("go/reminder-deriver"),
        "go",
        &["test", "./..."],
        &[],
    );
    let js = examples.join("js/reminder-deriver");
    native(&js, "npm", &["install", "--no-audit", "--no-fund"], &[]);
    native(&js, "npm", &["test"], &[]);
}
