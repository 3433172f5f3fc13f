//! The compiled-component cache: native code that Cranelift made from a plugin,
//! kept on disk so that start-up, `weir check`, `weir test` and a reload of an
//! unchanged plugin skip compilation (seconds for a Python or JavaScript plugin).
//!
//! An entry is keyed by the sha256 of the component and the engine's
//! [`precompile_compatibility_hash`](wasmtime::Engine::precompile_compatibility_hash)
//! (target, compiler flags, tunables, wasm features and the wasmtime version), so a
//! different weir build or engine configuration never reads another's entry. It
//! lives in `${WEIR_COMPILE_CACHE:-${WEIR_CACHE:-~/.cache/weir}/components}`
//! (`WEIR_COMPILE_CACHE=off` turns it off).
//!
//! Loading native code with [`Component::deserialize`] is `unsafe` in wasmtime: the
//! bytes are trusted to be what wasmtime wrote. The cache is treated like the weir
//! binary itself: its directory is created `0700` and is not used when group or
//! others may write to it. What is checked on every read: a magic header, then the
//! sha256 of the payload recorded at write time (a torn write, a truncated or
//! flipped file is caught here), then wasmtime's own header checks (its version and
//! the engine configuration) in `deserialize`. An entry that fails any check is
//! deleted and the plugin compiled again. Writes go to a temporary file in the same
//! directory, renamed into place, so a reader never sees half an entry.
//!
//! This module only maps bytes to a compiled component. It does not link,
//! instantiate or log at `info` (the caller says what it did).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The first bytes of every entry: the format, so that a future layout is a miss.
const MAGIC: &[u8; 16] = b"weir-cwasm-v1\n\0\0";
/// Entries beyond this total size are removed, least recently used first.
const MAX_TOTAL_BYTES: u64 = 2 << 30;

/// How a component was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compiled {
    /// Cranelift compiled it (and the cache stored it, when it could).
    Compiled,
    /// It came from the cache.
    Cached,
}

impl Compiled {
    /// The `outcome` label of `weir_plugin_compiles_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Compiled::Compiled => "compiled",
            Compiled::Cached => "cached",
        }
    }
}

/// Why an entry was not used. Never fatal: the component is compiled instead.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cannot read {path}: {reason}")]
    Read {
        path: PathBuf,
        reason: std::io::Error,
    },
    #[error("{path} is not a weir compile-cache entry (bad header)")]
    Header { path: PathBuf },
    #[error("{path} is corrupt: its checksum does not match its contents")]
    Checksum { path: PathBuf },
    #[error("wasmtime refused {path}: {message}")]
    Deserialize { path: PathBuf, message: String },
    #[error("cannot write {path}: {reason}")]
    Write {
        path: PathBuf,
        reason: std::io::Error,
    },
    #[error("cannot serialize the compiled component: {0}")]
    Serialize(String),
}

/// The on-disk cache of one engine configuration.
#[derive(Debug, Clone)]
pub struct CompileCache {
    /// The entries' directory; `None` when the cache is off or unusable.
    dir: Option<PathBuf>,
    /// Hex digest of the engine's compatibility hash: part of every entry's name.
    engine_key: String,
}

impl CompileCache {
    /// The cache for `engine` in the directory the environment names (see the module
    /// docs). A directory that cannot be created or is writable by others turns the
    /// cache off with a warning: compiling is always possible.
    pub fn from_env(engine: &Engine) -> CompileCache {
        let dir = match std::env::var_os("WEIR_COMPILE_CACHE") {
            Some(v) if v == "off" || v == "0" || v.is_empty() => None,
            Some(v) => Some(PathBuf::from(v)),
            None => default_dir(),
        };
        CompileCache::in_dir(engine, dir)
    }

    /// The cache for `engine` in `dir` (`None`: off).
    pub fn in_dir(engine: &Engine, dir: Option<PathBuf>) -> CompileCache {
        let engine_key = engine_key(engine);
        let dir = dir.and_then(|dir| match prepare_dir(&dir) {
            Ok(()) => Some(dir),
            Err(reason) => {
                tracing::warn!(
                    dir = %dir.display(),
                    "the compile cache is off: {reason} (set WEIR_COMPILE_CACHE to another directory, or to off)"
                );
                None
            }
        });
        CompileCache { dir, engine_key }
    }

    /// The directory in use, if the cache is on.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The entry of the component whose sha256 is `sha256` (hex).
    fn entry(&self, sha256: &str) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        Some(dir.join(format!("{sha256}-{}.cwasm", &self.engine_key[..16])))
    }

    /// The compiled form of `wasm` (whose hex sha256 is `sha256`): from the cache
    /// when a valid entry is there, else compiled by `compile` and stored.
    /// Problems with the cache are logged and never stop the load.
    pub fn get_or_compile<E>(
        &self,
        engine: &Engine,
        sha256: &str,
        compile: impl FnOnce() -> Result<Component, E>,
    ) -> Result<(Component, Compiled), E> {
        let Some(path) = self.entry(sha256) else {
            return compile().map(|c| (c, Compiled::Compiled));
        };
        if path.exists() {
            match read_entry(engine, &path) {
                Ok(component) => {
                    touch(&path);
                    return Ok((component, Compiled::Cached));
                }
                Err(error) => {
                    tracing::warn!("compile cache: {error}; compiling again");
                    let _ = fs::remove_file(&path);
                }
            }
        }
        let component = compile()?;
        match write_entry(&component, &path) {
            Ok(()) => prune(path.parent().unwrap_or(Path::new(".")), MAX_TOTAL_BYTES),
            Err(error) => tracing::warn!("compile cache: {error}; the plugin is not cached"),
        }
        Ok((component, Compiled::Compiled))
    }
}

/// `${WEIR_CACHE:-$HOME/.cache/weir}/components`.
fn default_dir() -> Option<PathBuf> {
    let base = match std::env::var_os("WEIR_CACHE") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME")?).join(".cache/weir"),
    };
    Some(base.join("components"))
}

/// Creates the directory (`0700`) or checks that others cannot write to it.
fn prepare_dir(dir: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create it: {e}"))?;
        let mode = fs::metadata(dir)
            .map_err(|e| format!("cannot read it: {e}"))?
            .permissions()
            .mode();
        if mode & 0o022 != 0 {
            return Err(format!(
                "group or others may write to it (mode {:o}), and its entries are loaded as native code",
                mode & 0o777
            ));
        }
    }
    #[cfg(not(unix))]
    fs::create_dir_all(dir).map_err(|e| format!("cannot create it: {e}"))?;
    Ok(())
}

/// A stable digest of the engine's compatibility hash (`DefaultHasher` is not
/// stable across Rust releases, so the bytes go through sha256).
fn engine_key(engine: &Engine) -> String {
    use std::hash::Hash;
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex(&hasher.0.finalize())
}

struct Sha256Hasher(Sha256);

impl std::hash::Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().unwrap_or_default())
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn read_entry(engine: &Engine, path: &Path) -> Result<Component, CacheError> {
    let bytes = fs::read(path).map_err(|reason| CacheError::Read {
        path: path.to_owned(),
        reason,
    })?;
    let header = MAGIC.len() + 32;
    if bytes.len() < header || &bytes[..MAGIC.len()] != MAGIC {
        return Err(CacheError::Header {
            path: path.to_owned(),
        });
    }
    let (sum, payload) = bytes[MAGIC.len()..].split_at(32);
    if Sha256::digest(payload).as_slice() != sum {
        return Err(CacheError::Checksum {
            path: path.to_owned(),
        });
    }
    // SAFETY: `payload` is exactly what `Component::serialize` of this engine
    // configuration wrote: the directory is ours (0700, see `prepare_dir`), the
    // checksum above matches, the entry's name carries the engine's compatibility
    // hash, and wasmtime checks its own header (version, configuration) again.
    unsafe { Component::deserialize(engine, payload) }.map_err(|e| CacheError::Deserialize {
        path: path.to_owned(),
        message: format!("{e:#}"),
    })
}

fn write_entry(component: &Component, path: &Path) -> Result<(), CacheError> {
    let payload = component
        .serialize()
        .map_err(|e| CacheError::Serialize(format!("{e:#}")))?;
    let write_error = |reason| CacheError::Write {
        path: path.to_owned(),
        reason,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile_in(dir).map_err(write_error)?;
    let result = (|| {
        file.1.write_all(MAGIC)?;
        file.1.write_all(&Sha256::digest(&payload))?;
        file.1.write_all(&payload)?;
        file.1.flush()?;
        fs::rename(&file.0, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&file.0);
    }
    result.map_err(write_error)
}

/// A new file `.tmp-<pid>-<n>` in `dir`, opened for writing.
fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, fs::File)> {
    loop {
        let path = dir.join(format!(
            ".tmp-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Marks an entry as used now (pruning removes the least recently used).
fn touch(path: &Path) {
    if let Ok(file) = fs::OpenOptions::new().write(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

/// Removes the least recently used entries until the total is under `max` bytes,
/// and temporary files older than an hour (left by a crash).
fn prune(dir: &Path, max: u64) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<(SystemTime, u64, PathBuf)> = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(".tmp-") {
            if modified.elapsed().is_ok_and(|age| age.as_secs() > 3600) {
                let _ = fs::remove_file(&path);
            }
        } else if name.ends_with(".cwasm") {
            files.push((modified, meta.len(), path));
        }
    }
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    files.sort();
    for (_, size, path) in files {
        if total <= max {
            break;
        }
        if fs::remove_file(&path).is_ok() {
            tracing::debug!(path = %path.display(), "compile cache: removed the least recently used entry");
            total -= size;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest valid component: the header alone.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    fn engine() -> Engine {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        Engine::new(&config).unwrap()
    }

    fn load(cache: &CompileCache, engine: &Engine, compiles: &mut u32) -> (Component, Compiled) {
        cache
            .get_or_compile(engine, "ab12", || {
                *compiles += 1;
                Component::new(engine, EMPTY_COMPONENT)
            })
            .unwrap()
    }

    #[test]
    fn a_second_load_comes_from_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine();
        let cache = CompileCache::in_dir(&engine, Some(dir.path().join("components")));
        let mut compiles = 0;
        assert_eq!(load(&cache, &engine, &mut compiles).1, Compiled::Compiled);
        assert_eq!(load(&cache, &engine, &mut compiles).1, Compiled::Cached);
        assert_eq!(compiles, 1);
        let names: Vec<_> = fs::read_dir(dir.path().join("components"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
        assert!(names[0].starts_with("ab12-") && names[0].ends_with(".cwasm"));
    }

    #[test]
    fn corrupt_or_foreign_entries_are_compiled_again() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine();
        let cache = CompileCache::in_dir(&engine, Some(dir.path().to_owned()));
        let mut compiles = 0;
        load(&cache, &engine, &mut compiles);
        let path = cache.entry("ab12").unwrap();

        // A flipped byte in the payload: the checksum catches it.
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            read_entry(&engine, &path),
            Err(CacheError::Checksum { .. })
        ));
        assert_eq!(load(&cache, &engine, &mut compiles).1, Compiled::Compiled);

        // Truncated to nothing, and garbage with a valid checksum (wasmtime refuses).
        fs::write(&path, b"").unwrap();
        assert_eq!(load(&cache, &engine, &mut compiles).1, Compiled::Compiled);
        let garbage = b"not native code at all";
        let mut forged = MAGIC.to_vec();
        forged.extend_from_slice(&Sha256::digest(garbage));
        forged.extend_from_slice(garbage);
        fs::write(&path, forged).unwrap();
        assert!(matches!(
            read_entry(&engine, &path),
            Err(CacheError::Deserialize { .. })
        ));
        assert_eq!(load(&cache, &engine, &mut compiles).1, Compiled::Compiled);
        assert_eq!(compiles, 4);
        assert_eq!(load(&cache, &engine, &mut compiles).1, Compiled::Cached);
    }

    #[test]
    fn another_engine_configuration_has_other_entries() {
        let engine = engine();
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let other = Engine::new(&config).unwrap();
        assert_ne!(engine_key(&engine), engine_key(&other));
        assert_eq!(engine_key(&engine), engine_key(&self::engine()));
    }

    #[cfg(unix)]
    #[test]
    fn a_directory_others_may_write_to_is_not_used() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let engine = engine();
        let cache = CompileCache::in_dir(&engine, Some(dir.path().to_owned()));
        assert!(cache.dir().is_none());
        let mut compiles = 0;
        assert_eq!(load(&cache, &engine, &mut compiles).1, Compiled::Compiled);
        assert_eq!(load(&cache, &engine, &mut compiles).1, Compiled::Compiled);
    }

    #[test]
    fn pruning_removes_the_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old.cwasm");
        let new = dir.path().join("new.cwasm");
        fs::write(&old, [0; 100]).unwrap();
        fs::write(&new, [0; 100]).unwrap();
        let file = fs::OpenOptions::new().write(true).open(&old).unwrap();
        file.set_modified(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1))
            .unwrap();
        prune(dir.path(), 150);
        assert!(!old.exists() && new.exists());
    }
}
