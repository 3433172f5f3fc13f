//! `weir build [DIR]`: turns a plugin project directory into a component.
//!
//! The language is told by the first of `Cargo.toml`, `go.mod`, `package.json`,
//! `app.py` in the directory (as `scripts/build-plugin` does). Rust is built with
//! cargo directly (adding the `wasm32-wasip2` target through rustup when it is
//! missing). Python, JavaScript and Go are built by the weir checkout's
//! `scripts/build-plugin`, which installs the language's pinned toolchain into
//! `${WEIR_CACHE:-~/.cache/weir}/toolchains` on first use: so those need a weir
//! checkout, found from `WEIR_HOME`, the current directory, the project directory
//! or the `weir` binary's location (see [`find_home`]).
//!
//! After the build, the component is compiled and type-checked against the
//! `weir:plugin` world with the same engine as `weir run`, which also fills the
//! compile cache, so the first `weir test` or `weir run` does not compile it again.
//!
//! This file also holds what `weir new` and `weir dev` share with it: the
//! [`Language`] of a project, where its component goes, and [`build_project`].

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::plugin::{Limits, PluginEngine};

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The plugin project (default: the current directory).
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Where to write the component (default: `DIR/<name>.wasm`; for Rust, cargo's
    /// `target/wasm32-wasip2/release/<name>.wasm`).
    #[arg(long, value_name = "FILE.wasm")]
    out: Option<PathBuf>,
    /// Skip compiling and type-checking the component after the build.
    #[arg(long)]
    no_check: bool,
}

/// A plugin project's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    Rust,
    Python,
    Js,
    Go,
}

impl Language {
    /// The language of the project in `dir`: the first of `Cargo.toml`, `go.mod`,
    /// `package.json`, `app.py` found there.
    pub fn detect(dir: &Path) -> Option<Language> {
        [
            ("Cargo.toml", Language::Rust),
            ("go.mod", Language::Go),
            ("package.json", Language::Js),
            ("app.py", Language::Python),
        ]
        .into_iter()
        .find(|(marker, _)| dir.join(marker).is_file())
        .map(|(_, language)| language)
    }

    /// The name used for `templates/<dir>` and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::Python => "python",
            Language::Js => "js",
            Language::Go => "go",
        }
    }

    /// The SDK's directory inside a weir checkout.
    pub fn sdk_dir(self, home: &Path) -> PathBuf {
        home.join("plugins").join(match self {
            Language::Rust => "sdk",
            Language::Python => "sdk-python",
            Language::Js => "sdk-js",
            Language::Go => "sdk-go",
        })
    }
}

/// Why a build could not be done or failed. The compiler's own messages have been
/// printed already; these say what to do.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(
        "cannot tell the language of {0}: expected Cargo.toml (Rust), go.mod (Go), package.json (JavaScript) or app.py (Python); `weir new` creates one"
    )]
    UnknownLanguage(PathBuf),
    #[error(
        "building a {language} plugin needs a weir checkout (its scripts/build-plugin and plugins/sdk-{language}); none was found from the current directory, {dir} or the weir binary: run weir from inside a checkout, or set WEIR_HOME to one"
    )]
    NoHome {
        language: &'static str,
        dir: PathBuf,
    },
    #[error("cannot run {program}: {reason} (is it installed and on PATH?)")]
    Spawn {
        program: String,
        reason: std::io::Error,
    },
    #[error("the build of {dir} failed ({status}); the errors are above")]
    Failed {
        dir: PathBuf,
        status: std::process::ExitStatus,
    },
    #[error(
        "{0}/Cargo.toml has no cdylib library: add crate-type = [\"cdylib\", \"rlib\"] under [lib]"
    )]
    NoCdylib(PathBuf),
    #[error("cannot read cargo's metadata of {dir}: {message}")]
    Metadata { dir: PathBuf, message: String },
    #[error("the build of {dir} reported success but wrote no {out}")]
    Missing { dir: PathBuf, out: PathBuf },
    #[error("cannot copy {from} to {to}: {reason}")]
    Copy {
        from: PathBuf,
        to: PathBuf,
        reason: std::io::Error,
    },
}

/// A plugin project directory.
#[derive(Debug, Clone)]
pub struct Project {
    /// Absolute path of the directory.
    pub dir: PathBuf,
    pub language: Language,
}

impl Project {
    pub fn open(dir: &Path) -> Result<Project, BuildError> {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
        let language =
            Language::detect(&dir).ok_or_else(|| BuildError::UnknownLanguage(dir.clone()))?;
        Ok(Project { dir, language })
    }

    /// Where the component goes by default: `DIR/<name>.wasm` (`name` with `-` as
    /// `_`, the file stem `weir test` and metrics show), or for Rust where cargo
    /// writes it.
    pub fn default_output(&self) -> Result<PathBuf, BuildError> {
        match self.language {
            Language::Rust => cargo_artifact(&self.dir),
            _ => Ok(self.dir.join(format!("{}.wasm", snake(&self.name())))),
        }
    }

    /// The project's name: go.mod's module (last path element), package.json's
    /// `name` (without a scope), pyproject.toml's `[project] name`, else the
    /// directory's name.
    pub fn name(&self) -> String {
        let read = |file: &str| std::fs::read_to_string(self.dir.join(file)).ok();
        let declared = match self.language {
            Language::Go => read("go.mod").and_then(|text| {
                text.lines()
                    .find_map(|l| l.trim().strip_prefix("module "))
                    .map(|m| {
                        m.trim()
                            .trim_matches('"')
                            .rsplit('/')
                            .next()
                            .unwrap_or("")
                            .to_owned()
                    })
            }),
            Language::Js => read("package.json")
                .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                .and_then(|json| json.get("name")?.as_str().map(str::to_owned))
                .map(|n| n.rsplit('/').next().unwrap_or("").to_owned()),
            Language::Python => read("pyproject.toml")
                .and_then(|text| text.parse::<toml::Table>().ok())
                .and_then(|t| t.get("project")?.get("name")?.as_str().map(str::to_owned)),
            Language::Rust => read("Cargo.toml")
                .and_then(|text| text.parse::<toml::Table>().ok())
                .and_then(|t| t.get("package")?.get("name")?.as_str().map(str::to_owned)),
        };
        declared.filter(|n| !n.is_empty()).unwrap_or_else(|| {
            self.dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "plugin".into())
        })
    }
}

/// `my-plugin` -> `my_plugin`: a file stem and an identifier in every language.
pub fn snake(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Whether `dir` is a weir checkout with the SDKs and build scripts.
fn is_home(dir: &Path) -> bool {
    dir.join("wit/plugin.wit").is_file()
        && dir.join("scripts/build-plugin").is_file()
        && dir.join("plugins/sdk/Cargo.toml").is_file()
}

/// The weir checkout to take SDKs and build scripts from: `WEIR_HOME` when set,
/// else the first checkout above the current directory, above `near` (a project
/// directory), or above the running `weir` binary (`target/release/weir`).
pub fn find_home(near: Option<&Path>) -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("WEIR_HOME").filter(|h| !h.is_empty()) {
        let home = PathBuf::from(home);
        return is_home(&home).then(|| home.canonicalize().unwrap_or(home));
    }
    let mut starts = Vec::new();
    starts.extend(std::env::current_dir().ok());
    starts.extend(near.and_then(|n| std::path::absolute(n).ok()));
    starts.extend(
        std::env::current_exe()
            .ok()
            .and_then(|e| e.canonicalize().ok()),
    );
    starts
        .iter()
        .flat_map(|start| start.ancestors())
        .find(|dir| is_home(dir))
        .map(|dir| dir.canonicalize().unwrap_or_else(|_| dir.to_owned()))
}

/// What a build made.
#[derive(Debug)]
pub struct Built {
    pub out: PathBuf,
    pub bytes: u64,
    pub took: Duration,
}

/// Builds `project` into `out` (default: [`Project::default_output`]). The tools'
/// output goes to stderr as they print it.
pub fn build_project(project: &Project, out: Option<&Path>) -> Result<Built, BuildError> {
    let started = Instant::now();
    let out = match out {
        Some(out) => std::path::absolute(out).unwrap_or_else(|_| out.to_owned()),
        None => project.default_output()?,
    };
    match project.language {
        Language::Rust => build_rust(project, &out)?,
        language => {
            let home = find_home(Some(&project.dir)).ok_or_else(|| BuildError::NoHome {
                language: language.as_str(),
                dir: project.dir.clone(),
            })?;
            let mut command = Command::new(home.join("scripts/build-plugin"));
            command.arg(&project.dir).arg(&out);
            run_tool(&mut command, &project.dir)?;
        }
    }
    let bytes = std::fs::metadata(&out)
        .map_err(|_| BuildError::Missing {
            dir: project.dir.clone(),
            out: out.clone(),
        })?
        .len();
    Ok(Built {
        out,
        bytes,
        took: started.elapsed(),
    })
}

/// Runs a build tool with its stdout sent to our stderr (stdout is for results).
fn run_tool(command: &mut Command, dir: &Path) -> Result<(), BuildError> {
    let program = command.get_program().to_string_lossy().into_owned();
    command.stdin(Stdio::null()).stdout(stderr_stdio());
    let status = command
        .status()
        .map_err(|reason| BuildError::Spawn { program, reason })?;
    if status.success() {
        Ok(())
    } else {
        Err(BuildError::Failed {
            dir: dir.to_owned(),
            status,
        })
    }
}

/// Our stderr, for a child's stdout.
fn stderr_stdio() -> Stdio {
    use std::os::fd::AsFd;
    match std::io::stderr().as_fd().try_clone_to_owned() {
        Ok(fd) => Stdio::from(fd),
        Err(_) => Stdio::inherit(),
    }
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn build_rust(project: &Project, out: &Path) -> Result<(), BuildError> {
    ensure_wasm_target(&project.dir);
    let mut command = Command::new(cargo());
    command
        .current_dir(&project.dir)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(project.dir.join("Cargo.toml"));
    run_tool(&mut command, &project.dir)?;
    let artifact = cargo_artifact(&project.dir)?;
    if artifact != out {
        if let Some(parent) = out.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        std::fs::copy(&artifact, out).map_err(|reason| BuildError::Copy {
            from: artifact.clone(),
            to: out.to_owned(),
            reason,
        })?;
    }
    Ok(())
}

/// Adds the `wasm32-wasip2` target with rustup when the project's toolchain lacks
/// it (rustup adds a toolchain file's targets only when it installs the toolchain).
fn ensure_wasm_target(dir: &Path) {
    let installed = Command::new("rustup")
        .current_dir(dir)
        .args(["target", "list", "--installed"])
        .stderr(Stdio::null())
        .output();
    let Ok(installed) = installed else {
        return; // no rustup: cargo will say what is missing
    };
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == "wasm32-wasip2")
    {
        return;
    }
    eprintln!("weir build: adding the wasm32-wasip2 target with rustup");
    let _ = Command::new("rustup")
        .current_dir(dir)
        .args(["target", "add", "wasm32-wasip2"])
        .stdout(Stdio::null())
        .status();
}

/// Where cargo writes the crate's component: `<target dir>/wasm32-wasip2/release/<lib>.wasm`.
fn cargo_artifact(dir: &Path) -> Result<PathBuf, BuildError> {
    let metadata_error = |message: String| BuildError::Metadata {
        dir: dir.to_owned(),
        message,
    };
    let output = Command::new(cargo())
        .current_dir(dir)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--manifest-path",
        ])
        .arg(dir.join("Cargo.toml"))
        .stderr(Stdio::piped())
        .output()
        .map_err(|reason| BuildError::Spawn {
            program: cargo(),
            reason,
        })?;
    if !output.status.success() {
        return Err(metadata_error(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ));
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).map_err(|e| metadata_error(e.to_string()))?;
    let manifest = dir.join("Cargo.toml");
    let manifest = manifest.canonicalize().unwrap_or(manifest);
    let lib = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| {
            p["manifest_path"]
                .as_str()
                .is_some_and(|m| Path::new(m) == manifest)
        })
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .find(|t| {
            t["crate_types"]
                .as_array()
                .is_some_and(|types| types.iter().any(|c| c == "cdylib"))
        })
        .and_then(|t| t["name"].as_str())
        .ok_or_else(|| BuildError::NoCdylib(dir.to_owned()))?;
    let target = metadata["target_directory"]
        .as_str()
        .ok_or_else(|| metadata_error("no target_directory".into()))?;
    Ok(Path::new(target)
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", snake(lib))))
}

/// `12.1 MB`, `230 kB`.
pub fn size_text(bytes: u64) -> String {
    if bytes >= 1_000_000 {
        format!("{:.1} MB", bytes as f64 / 1e6)
    } else {
        format!("{} kB", bytes.div_ceil(1000))
    }
}

pub fn run(args: BuildArgs) -> anyhow::Result<ExitCode> {
    let project = Project::open(&args.dir)?;
    if !project.dir.is_dir() {
        anyhow::bail!("{} is not a directory", args.dir.display());
    }
    let built = build_project(&project, args.out.as_deref())?;
    let mut line = format!(
        "built {} ({}, {}) in {:.1}s",
        built.out.display(),
        size_text(built.bytes),
        project.language.as_str(),
        built.took.as_secs_f64()
    );
    if !args.no_check {
        // Compile and type-check it now, so a component that does not implement the
        // weir:plugin world fails here, and `weir test`/`run` find it compiled.
        let started = Instant::now();
        let engine = PluginEngine::new()?;
        engine
            .load(&built.out, Vec::new(), Limits::default())
            .with_context(|| {
                format!(
                    "the build wrote {} but weir cannot use it",
                    built.out.display()
                )
            })?;
        line += &format!(
            "; checked and compiled for this machine in {:.1}s",
            started.elapsed().as_secs_f64()
        );
    }
    println!("{line}");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_and_names_come_from_the_project_files() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("my-plugin");
        std::fs::create_dir(&project).unwrap();
        assert!(Project::open(&project).is_err());

        std::fs::write(project.join("app.py"), "").unwrap();
        let p = Project::open(&project).unwrap();
        assert_eq!(
            (p.language, p.name()),
            (Language::Python, "my-plugin".into())
        );
        assert_eq!(p.default_output().unwrap(), project.join("my_plugin.wasm"));

        std::fs::write(
            project.join("package.json"),
            r#"{"name": "@acme/js-thing"}"#,
        )
        .unwrap();
        let p = Project::open(&project).unwrap();
        assert_eq!((p.language, p.name()), (Language::Js, "js-thing".into()));

        std::fs::write(
            project.join("go.mod"),
            "module example.com/x/go-thing\n\ngo 1.24\n",
        )
        .unwrap();
        let p = Project::open(&project).unwrap();
        assert_eq!((p.language, p.name()), (Language::Go, "go-thing".into()));
        assert_eq!(p.default_output().unwrap(), project.join("go_thing.wasm"));
    }

    #[test]
    fn the_checkout_is_found_from_inside_it() {
        let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cli");
        let home = find_home(Some(&here)).expect("weir's own checkout");
        assert!(home.join("wit/plugin.wit").is_file());
        assert_eq!(snake("a-b.c"), "a_b_c");
        assert_eq!(size_text(12_135_015), "12.1 MB");
        assert_eq!(size_text(220_891), "221 kB");
    }
}
