//! Artifact and plugin bytes by SHA-256, one file each, written to a temporary name, synced,
//! then renamed: a file under its hash is always whole.
//!
//! With SQLite the files are the bytes' only copy. With PostgreSQL the bytes are in the
//! database (`blobs`, shared by every replica) and the files are this replica's cache of them:
//! a replica that did not take an upload reads it from the database the first time it is
//! asked, checks it against its hash, and keeps the file.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::db::{Postgres, Tx, params};
use crate::{Backend, StoreError};

pub struct BlobStore {
    dir: PathBuf,
    /// Where the bytes are kept when the store is in PostgreSQL.
    shared: Option<Arc<Postgres>>,
}

impl BlobStore {
    pub(crate) fn open(dir: &Path, backend: &Backend) -> Result<BlobStore, StoreError> {
        fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(BlobStore {
            dir: dir.to_path_buf(),
            shared: match backend {
                Backend::Sqlite { .. } => None,
                Backend::Postgres(pg) => Some(pg.clone()),
            },
        })
    }

    /// Stores `bytes`; returns their SHA-256, hex-encoded.
    pub fn put(&self, bytes: &[u8]) -> Result<String, StoreError> {
        let hash = hex::encode(Sha256::digest(bytes));
        if let Some(pg) = &self.shared {
            Tx::held_postgres(pg.client()?).execute(
                "INSERT INTO blobs (sha256, bytes) VALUES (?1, ?2) ON CONFLICT (sha256) DO NOTHING",
                params![hash, bytes],
            )?;
        }
        self.keep(&hash, bytes)?;
        Ok(hash)
    }

    /// The bytes stored under `hash`.
    pub fn get(&self, hash: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.path(hash)?;
        match (fs::read(&path), &self.shared) {
            (Ok(bytes), _) => Ok(bytes),
            (Err(e), Some(pg)) if e.kind() == std::io::ErrorKind::NotFound => {
                let bytes = Tx::held_postgres(pg.client()?)
                    .query_opt(
                        "SELECT bytes FROM blobs WHERE sha256 = ?1",
                        params![hash],
                        |r| r.get::<Vec<u8>>(0),
                    )?
                    .ok_or_else(|| StoreError::NotFound(format!("no blob `{hash}`")))?;
                if hex::encode(Sha256::digest(&bytes)) != hash {
                    return Err(StoreError::Corrupt(format!(
                        "blob `{hash}` in the database: its bytes do not match its hash"
                    )));
                }
                self.keep(hash, &bytes)?;
                Ok(bytes)
            }
            (Err(e), None) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::NotFound(format!("no blob `{hash}`")))
            }
            (Err(source), _) => Err(StoreError::Io { path, source }),
        }
    }

    /// Writes `bytes` to the file for `hash`, unless it is there.
    fn keep(&self, hash: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.path(hash)?;
        if path.exists() {
            return Ok(());
        }
        let io = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        // A new file of a random name (created exclusively, never through a link someone left
        // at a name they guessed), then renamed: two requests may keep the same bytes at once.
        let mut file = tempfile::Builder::new()
            .prefix(".blob-")
            .suffix(".tmp")
            .tempfile_in(&self.dir)
            .map_err(io)?;
        file.write_all(bytes).map_err(io)?;
        file.as_file().sync_all().map_err(io)?;
        file.persist(&path).map_err(|e| io(e.error))?;
        Ok(())
    }

    /// The file for `hash`; a name that is not a SHA-256 in hex names no blob.
    fn path(&self, hash: &str) -> Result<PathBuf, StoreError> {
        let valid = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
        if !valid {
            return Err(StoreError::NotFound(format!(
                "no blob `{hash}`: a blob is named by its SHA-256, 64 hex digits"
            )));
        }
        Ok(self.dir.join(hash.to_ascii_lowercase()))
    }
}
