//! Artifact bytes by SHA-256, one file each, written to a temporary name, synced, then renamed:
//! a file under its hash is always whole.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::StoreError;

pub struct BlobStore {
    dir: PathBuf,
}

impl BlobStore {
    pub fn open(dir: &Path) -> Result<BlobStore, StoreError> {
        fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(BlobStore {
            dir: dir.to_path_buf(),
        })
    }

    /// Stores `bytes`; returns their SHA-256, hex-encoded.
    pub fn put(&self, bytes: &[u8]) -> Result<String, StoreError> {
        let hash = hex::encode(Sha256::digest(bytes));
        let path = self.path(&hash);
        if path.exists() {
            return Ok(hash);
        }
        let io = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        let tmp = self.dir.join(format!("{hash}.tmp"));
        let mut file = fs::File::create(&tmp).map_err(io)?;
        file.write_all(bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        fs::rename(&tmp, &path).map_err(io)?;
        Ok(hash)
    }

    pub fn get(&self, hash: &str) -> Result<Vec<u8>, StoreError> {
        fs::read(self.path(hash)).map_err(|source| StoreError::Io {
            path: self.path(hash),
            source,
        })
    }

    fn path(&self, hash: &str) -> PathBuf {
        self.dir.join(hash)
    }
}
