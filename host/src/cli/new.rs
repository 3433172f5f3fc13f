//! `weir new NAME --lang rust|python|js|go [--dir DIR]`: writes a plugin project
//! from `templates/<lang>/`, which is compiled into the binary, so that it works
//! from any directory.
//!
//! The placeholders `{{name}}`, `{{name_snake}}` and `{{sdk_path}}` are replaced;
//! `{{sdk_path}}` is the absolute path of the language's SDK in the weir checkout
//! that [`find_home`] finds (the current directory's, or the one the `weir` binary
//! was built in, or `WEIR_HOME`). Without a checkout there is no SDK to point at,
//! and `weir new` says so rather than write a project that cannot build.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

use super::build::{Language, find_home, snake};

#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The plugin's name: lower-case letters, digits and dashes, e.g. `my-plugin`.
    name: String,
    /// The language of the plugin.
    #[arg(long, value_enum)]
    lang: Language,
    /// Where to create it (default: ./NAME). It must not exist, or be empty.
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// One file of a template: its path in the project and its text.
type TemplateFile = (&'static str, &'static str);

macro_rules! template {
    ($lang:literal: $($file:literal),+ $(,)?) => {
        &[$(($file, include_str!(concat!("../../../templates/", $lang, "/", $file)))),+]
    };
}

const RUST: &[TemplateFile] = template!("rust":
    ".gitignore", "Cargo.toml", "README.md", "events.jsonl", "expected.jsonl",
    "rust-toolchain.toml", "src/lib.rs",
);
const PYTHON: &[TemplateFile] = template!("python":
    ".gitignore", "README.md", "app.py", "events.jsonl", "expected.jsonl",
    "pyproject.toml", "test_app.py",
);
const JS: &[TemplateFile] = template!("js":
    ".gitignore", "README.md", "events.jsonl", "expected.jsonl", "package.json",
    "plugin.js", "plugin.test.js",
);
const GO: &[TemplateFile] = template!("go":
    ".gitignore", "README.md", "events.jsonl", "expected.jsonl", "go.mod", "main.go",
    "main_test.go",
);

fn template(language: Language) -> &'static [TemplateFile] {
    match language {
        Language::Rust => RUST,
        Language::Python => PYTHON,
        Language::Js => JS,
        Language::Go => GO,
    }
}

/// A name every toolchain accepts as a package or module name and as a file stem.
fn check_name(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
        && !name.contains("--");
    if !valid {
        bail!(
            "{name:?} is not a plugin name: use lower-case letters, digits and single dashes, starting with a letter (e.g. my-plugin)"
        );
    }
    Ok(())
}

/// The template's text with its placeholders replaced.
fn render(text: &str, name: &str, sdk_path: &Path) -> String {
    text.replace("{{name_snake}}", &snake(name))
        .replace("{{name}}", name)
        .replace("{{sdk_path}}", &sdk_path.to_string_lossy())
}

/// Writes the project; returns the files written.
pub fn create(
    name: &str,
    language: Language,
    dir: &Path,
    home: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    check_name(name)?;
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .with_context(|| format!("{} exists and cannot be read", dir.display()))?
            .next()
            .is_none();
        if !empty {
            bail!(
                "{} already exists and is not empty: choose another --dir or name",
                dir.display()
            );
        }
    }
    let sdk = language.sdk_dir(home);
    let mut written = Vec::new();
    for (file, text) in template(language) {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, render(text, name, &sdk))
            .with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

pub fn run(args: NewArgs) -> anyhow::Result<ExitCode> {
    check_name(&args.name)?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    let Some(home) = find_home(dir.parent()) else {
        bail!(
            "weir new writes a project that uses the weir SDK of a weir checkout (plugins/{}), and none was found from the current directory or the weir binary: run weir from inside a weir checkout, or set WEIR_HOME to one",
            args.lang
                .sdk_dir(Path::new(""))
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
    };
    create(&args.name, args.lang, &dir, &home)?;
    let stem = snake(&args.name);
    let shown = pathdiff(&dir);
    println!(
        "created {} plugin {} in {}",
        args.lang.as_str(),
        args.name,
        shown.display()
    );
    let wasm = match args.lang {
        Language::Rust => format!("target/wasm32-wasip2/release/{stem}.wasm"),
        _ => format!("{stem}.wasm"),
    };
    let native = match args.lang {
        Language::Rust => "cargo test".to_owned(),
        Language::Python => format!(
            "PYTHONPATH={} python3 -m unittest",
            args.lang.sdk_dir(&home).display()
        ),
        Language::Js => "npm install && npm test".to_owned(),
        Language::Go => "go test ./...".to_owned(),
    };
    println!();
    println!("  cd {}", shown.display());
    println!("  {native}");
    println!("  weir build                                   # -> {wasm}");
    println!("  weir test {wasm} --input events.jsonl | diff - expected.jsonl");
    Ok(ExitCode::SUCCESS)
}

/// `dir` relative to the current directory when it is below it.
fn pathdiff(dir: &Path) -> PathBuf {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| dir.strip_prefix(cwd).ok().map(Path::to_owned))
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| dir.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["a", "my-plugin", "p2"] {
            check_name(good).unwrap();
        }
        for bad in ["", "My", "1x", "a_b", "a-", "a--b", "a b", "../x"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    /// `{{word}}`, as the templates' placeholders are written.
    fn has_placeholder(text: &str) -> bool {
        text.split("{{").skip(1).any(|rest| {
            rest.split_once("}}").is_some_and(|(word, _)| {
                !word.is_empty() && word.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            })
        })
    }

    #[test]
    fn every_file_of_the_templates_is_embedded() {
        let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates");
        for language in [Language::Rust, Language::Python, Language::Js, Language::Go] {
            let dir = templates.join(language.as_str());
            let mut on_disk = Vec::new();
            let mut stack = vec![dir.clone()];
            while let Some(next) = stack.pop() {
                for entry in std::fs::read_dir(&next).unwrap() {
                    let path = entry.unwrap().path();
                    if path.is_dir() {
                        stack.push(path);
                    } else {
                        on_disk.push(
                            path.strip_prefix(&dir)
                                .unwrap()
                                .to_string_lossy()
                                .into_owned(),
                        );
                    }
                }
            }
            on_disk.sort();
            let mut embedded: Vec<String> = template(language)
                .iter()
                .map(|(f, _)| (*f).to_owned())
                .collect();
            embedded.sort();
            assert_eq!(embedded, on_disk, "templates/{}", language.as_str());
            for (file, text) in template(language) {
                assert_eq!(*text, std::fs::read_to_string(dir.join(file)).unwrap());
            }
        }
        assert!(has_placeholder("a {{name}} b") && !has_placeholder("x{{To: y}}"));
    }

    #[test]
    fn every_template_is_rendered_without_placeholders() {
        let dir = tempfile::tempdir().unwrap();
        for language in [Language::Rust, Language::Python, Language::Js, Language::Go] {
            let project = dir.path().join(language.as_str());
            let files = create("my-plugin", language, &project, Path::new("/weir")).unwrap();
            assert!(files.iter().any(|f| f.ends_with("expected.jsonl")));
            for file in files {
                let text = std::fs::read_to_string(&file).unwrap();
                assert!(
                    !has_placeholder(&text),
                    "{} keeps a placeholder",
                    file.display()
                );
            }
            let expected = std::fs::read_to_string(project.join("expected.jsonl")).unwrap();
            assert!(expected.contains(r#""plugin":"my_plugin""#), "{expected}");
        }
        let go = std::fs::read_to_string(dir.path().join("go/go.mod")).unwrap();
        assert!(
            go.contains("weir.local/weir => /weir/plugins/sdk-go"),
            "{go}"
        );
        // A second time into the same directory is refused.
        assert!(
            create(
                "my-plugin",
                Language::Go,
                &dir.path().join("go"),
                Path::new("/weir")
            )
            .is_err()
        );
    }
}
