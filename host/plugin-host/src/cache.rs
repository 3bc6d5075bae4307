//! Compiled components, kept by the SHA-256 of their WebAssembly bytes.
//!
//! In memory always; on disk too when the runtime has a cache directory. A file on disk is the
//! engine's serialization of a component this host compiled itself, followed by an HMAC-SHA256
//! of the content hash and the serialization under a secret key that only this install has
//! ([`CACHE_KEY_FILE`], 32 random bytes, made on first use). A plain digest would prove a file
//! intact, not that this host wrote it: anyone able to write the directory could have native
//! code of their choosing deserialized and run. A file whose tag does not verify (a torn write,
//! a stray or forged file, an entry under another component's name) is recompiled, never
//! deserialized.
//!
//! The key is kept outside the directory it protects (a server keeps it with its other secrets
//! in its data directory), and is used only from a plain file of this process's user that no
//! one else may read or write (mode 0600, no symbolic link): whoever can write the cache
//! directory cannot plant a key of their own. Entries are written to new files of random names,
//! created exclusively, then renamed.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

pub(crate) type ContentHash = [u8; 32];

/// The length of the tag that ends a cache file.
const TAG_BYTES: usize = 32;

/// The file that holds the cache's secret key.
pub const CACHE_KEY_FILE: &str = "cache.key";

pub(crate) fn content_hash(bytes: &[u8]) -> ContentHash {
    Sha256::digest(bytes).into()
}

pub(crate) struct ComponentCache {
    memory: Mutex<HashMap<ContentHash, Component>>,
    /// The directory and its key; `None` keeps the cache in memory only.
    disk: Option<(PathBuf, [u8; 32])>,
    /// Components compiled (not found in memory or on disk) since the cache was made.
    compiled: AtomicU64,
}

impl ComponentCache {
    /// A cache in memory and, when `dir` is given, on disk under it, its key in `key_file`.
    /// A directory whose key cannot be read or made, or is not safe, is not used (the cache
    /// only saves time).
    pub fn new(dir: Option<(PathBuf, PathBuf)>) -> Self {
        let disk = dir.and_then(|(dir, key_file)| match key(&dir, &key_file) {
            Ok(key) => Some((dir, key)),
            Err(err) => {
                tracing::warn!(dir = %dir.display(), error = %err, "compiled plugins will not be cached on disk");
                None
            }
        });
        ComponentCache {
            memory: Mutex::new(HashMap::new()),
            disk,
            compiled: AtomicU64::new(0),
        }
    }

    /// How many components this cache compiled itself.
    pub fn compilations(&self) -> u64 {
        self.compiled.load(Ordering::Relaxed)
    }

    /// The compiled component for `bytes`, compiling (and storing) it when it is not cached.
    pub fn get_or_compile(
        &self,
        engine: &Engine,
        hash: &ContentHash,
        bytes: &[u8],
    ) -> wasmtime::Result<Component> {
        if let Some(c) = self
            .memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(hash)
        {
            return Ok(c.clone());
        }
        let component = match self.read_disk(engine, hash) {
            Some(c) => c,
            None => {
                let c = Component::new(engine, bytes)?;
                self.compiled.fetch_add(1, Ordering::Relaxed);
                self.write_disk(hash, &c);
                c
            }
        };
        self.memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(*hash, component.clone());
        Ok(component)
    }

    fn path(&self, hash: &ContentHash) -> Option<(PathBuf, &[u8; 32])> {
        self.disk
            .as_ref()
            .map(|(d, key)| (d.join(format!("{}.cwasm", hex::encode(hash))), key))
    }

    fn read_disk(&self, engine: &Engine, hash: &ContentHash) -> Option<Component> {
        let (path, key) = self.path(hash)?;
        let file = fs::read(&path).ok()?;
        let (serialized, tag) = file.split_at_checked(file.len().checked_sub(TAG_BYTES)?)?;
        if tagger(key, hash, serialized).verify_slice(tag).is_err() {
            tracing::warn!(path = %path.display(), "compiled plugin cache entry was not written by this host; recompiling");
            return None;
        }
        // SAFETY: the bytes carry a tag only this install's key makes, over this component's
        // hash, so they are a serialization this host wrote for this component with
        // `Component::serialize`. Wasmtime itself refuses a serialization from another engine
        // version or configuration.
        #[allow(unsafe_code)]
        match unsafe { Component::deserialize(engine, serialized) } {
            Ok(c) => Some(c),
            Err(err) => {
                tracing::info!(path = %path.display(), error = %err, "compiled plugin cache entry is stale; recompiling");
                None
            }
        }
    }

    fn write_disk(&self, hash: &ContentHash, component: &Component) {
        let Some((path, key)) = self.path(hash) else {
            return;
        };
        let result = (|| -> anyhow::Result<()> {
            let mut bytes = component.serialize().map_err(|e| anyhow::anyhow!("{e}"))?;
            let tag = tagger(key, hash, &bytes).finalize().into_bytes();
            bytes.extend_from_slice(&tag);
            let dir = path.parent().expect("an entry is in the cache directory");
            let mut tmp = tempfile::Builder::new()
                .prefix(".cwasm-")
                .suffix(".tmp")
                .tempfile_in(dir)?;
            tmp.write_all(&bytes)?;
            tmp.persist(&path)?;
            Ok(())
        })();
        if let Err(err) = result {
            // The cache only saves time: a host that cannot write it still works.
            tracing::warn!(path = %path.display(), error = %err, "could not store compiled plugin");
        }
    }
}

/// The MAC over one entry: the component's content hash, then its serialization.
fn tagger(key: &[u8; 32], hash: &ContentHash, serialized: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(hash);
    mac.update(serialized);
    mac
}

/// The cache's secret key, in `path`: read, or made and written with mode 0600.
fn key(dir: &Path, path: &Path) -> std::io::Result<[u8; 32]> {
    fs::create_dir_all(dir)?;
    match key_file(path) {
        Ok(key) => Ok(key),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
            let mut options = fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            match options.open(path) {
                Ok(mut file) => {
                    file.write_all(&key)?;
                    file.sync_all()?;
                    Ok(key)
                }
                // Another runtime on the same directory made it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => key_file(path),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Reads a key file, if it is one this process's user owns, a plain file (not a link), that no
/// one else may read or write.
fn key_file(path: &Path) -> std::io::Result<[u8; 32]> {
    let meta = fs::symlink_metadata(path)?;
    if !meta.file_type().is_file() {
        return Err(std::io::Error::other(format!(
            "{} is not a plain file (a link, or a directory): not used as the cache key",
            path.display()
        )));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return Err(std::io::Error::other(format!(
                "{} belongs to user {}, not this server's ({me}): not used as the cache key",
                path.display(),
                meta.uid()
            )));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(std::io::Error::other(format!(
                "{} has mode {:o}: others may read or write it, so it is not used as the cache key (make it 0600)",
                path.display(),
                meta.mode() & 0o777
            )));
        }
    }
    fs::read(path)?.try_into().map_err(|b: Vec<u8>| {
        std::io::Error::other(format!(
            "{} holds {} bytes, expected 32",
            path.display(),
            b.len()
        ))
    })
}
