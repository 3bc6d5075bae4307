//! Compiled components, kept by the SHA-256 of their WebAssembly bytes.
//!
//! In memory always; on disk too when the runtime has a cache directory. A file on disk is the
//! engine's serialization of a component this host compiled itself, followed by the SHA-256 of
//! that serialization: a file whose digest does not match (a torn write, a stray file) is
//! recompiled, never deserialized. The directory is the host's own; nothing else writes there.

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

pub(crate) type ContentHash = [u8; 32];

pub(crate) fn content_hash(bytes: &[u8]) -> ContentHash {
    Sha256::digest(bytes).into()
}

pub(crate) struct ComponentCache {
    memory: Mutex<HashMap<ContentHash, Component>>,
    dir: Option<PathBuf>,
}

impl ComponentCache {
    pub fn new(dir: Option<PathBuf>) -> Self {
        ComponentCache {
            memory: Mutex::new(HashMap::new()),
            dir,
        }
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

    fn path(&self, hash: &ContentHash) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{}.cwasm", hex::encode(hash))))
    }

    fn read_disk(&self, engine: &Engine, hash: &ContentHash) -> Option<Component> {
        let path = self.path(hash)?;
        let file = fs::read(&path).ok()?;
        let (serialized, digest) = file.split_at_checked(file.len().checked_sub(32)?)?;
        if Sha256::digest(serialized).as_slice() != digest {
            tracing::warn!(path = %path.display(), "compiled plugin cache entry is damaged; recompiling");
            return None;
        }
        // SAFETY: the bytes are a serialization this host wrote (see the module comment) and their
        // digest matches, so they are what `Component::serialize` produced. Wasmtime itself refuses
        // a serialization from another engine version or configuration.
        match unsafe { Component::deserialize(engine, serialized) } {
            Ok(c) => Some(c),
            Err(err) => {
                tracing::info!(path = %path.display(), error = %err, "compiled plugin cache entry is stale; recompiling");
                None
            }
        }
    }

    fn write_disk(&self, hash: &ContentHash, component: &Component) {
        let Some(path) = self.path(hash) else { return };
        let result = (|| -> anyhow::Result<()> {
            let mut bytes = component.serialize().map_err(|e| anyhow::anyhow!("{e}"))?;
            let digest = Sha256::digest(&bytes);
            bytes.extend_from_slice(&digest);
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir)?;
            }
            let tmp = path.with_extension("cwasm.tmp");
            fs::write(&tmp, &bytes)?;
            fs::rename(&tmp, &path)?;
            Ok(())
        })();
        if let Err(err) = result {
            // The cache only saves time: a host that cannot write it still works.
            tracing::warn!(path = %path.display(), error = %err, "could not store compiled plugin");
        }
    }
}
