//! Uploaded plugins: name, version, kind and description, with the component's bytes in the blob
//! store under their SHA-256.

use crate::db::{Row, params};
use crate::{Store, StoreError, decode};
use hotswap_protocol::{PluginKind, Spelling, UnixSeconds};

/// An uploaded plugin's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPlugin {
    pub name: String,
    pub version: String,
    pub kind: PluginKind,
    pub sha256: String,
    pub summary: String,
    /// JSON text.
    pub params_schema: String,
    pub created_at: UnixSeconds,
    /// The limits it asked for at upload, JSON text (`{}` for none).
    pub limits: String,
}

const COLUMNS: &str = "name, version, kind, sha256, summary, params_schema, created_at, limits";

fn from_row(r: &Row<'_>) -> Result<StoredPlugin, StoreError> {
    Ok(StoredPlugin {
        name: r.get(0)?,
        version: r.get(1)?,
        kind: decode(2, &r.get::<String>(2)?)?,
        sha256: r.get(3)?,
        summary: r.get(4)?,
        params_schema: r.get(5)?,
        created_at: UnixSeconds(r.get(6)?),
        limits: r.get(7)?,
    })
}

impl Store {
    /// Records a plugin. The same name and version again is accepted only with the same bytes
    /// (`Ok(false)`: nothing new); other bytes under a taken version are a conflict.
    pub fn add_plugin(&self, p: &StoredPlugin) -> Result<bool, StoreError> {
        let tx = self.begin()?;
        let existing: Option<String> = tx.query_opt(
            "SELECT sha256 FROM plugins WHERE name = ?1 AND version = ?2",
            params![p.name, p.version],
            |r| r.get(0),
        )?;
        match existing {
            Some(sha) if sha == p.sha256 => Ok(false),
            Some(_) => Err(StoreError::Conflict(format!(
                "plugin {}@{} is already uploaded with other bytes: give the new build a new version",
                p.name, p.version
            ))),
            None => {
                tx.execute(
                    &format!(
                        "INSERT INTO plugins ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                    ),
                    params![
                        p.name,
                        p.version,
                        p.kind.as_str(),
                        p.sha256,
                        p.summary,
                        p.params_schema,
                        self.clock.now().seconds().0,
                        p.limits
                    ],
                )?;
                tx.commit()?;
                Ok(true)
            }
        }
    }

    pub fn plugin(&self, name: &str, version: &str) -> Result<StoredPlugin, StoreError> {
        self.reader()?
            .query_opt(
                &format!("SELECT {COLUMNS} FROM plugins WHERE name = ?1 AND version = ?2"),
                params![name, version],
                from_row,
            )?
            .ok_or_else(|| StoreError::NotFound(format!("no plugin {name}@{version}")))
    }

    /// The uploaded plugin with these bytes, if any (a deployment records its health policy's
    /// hash).
    pub fn plugin_by_sha256(&self, sha256: &str) -> Result<Option<StoredPlugin>, StoreError> {
        self.reader()?.query_opt(
            &format!("SELECT {COLUMNS} FROM plugins WHERE sha256 = ?1 ORDER BY id LIMIT 1"),
            params![sha256],
            from_row,
        )
    }

    pub fn list_plugins(&self) -> Result<Vec<StoredPlugin>, StoreError> {
        self.reader()?.query_map(
            &format!("SELECT {COLUMNS} FROM plugins ORDER BY name, id"),
            params![],
            from_row,
        )
    }

    /// Deletes an uploaded plugin; refused while an active deployment uses it.
    pub fn delete_plugin(&self, name: &str, version: &str) -> Result<(), StoreError> {
        let tx = self.begin()?;
        let full = format!("{name}@{version}");
        let user: Option<i64> = tx.query_opt(
            "SELECT id FROM deployments WHERE state IN ('waiting-for-approval', 'running', 'paused', 'rolling-back')
             AND (strategy = ?1 OR health_policy = ?1) ORDER BY id LIMIT 1",
            params![full],
            |r| r.get(0),
        )?;
        if let Some(id) = user {
            return Err(StoreError::Conflict(format!(
                "plugin {full} is used by deployment {id}, which is still active"
            )));
        }
        let deleted = tx.execute(
            "DELETE FROM plugins WHERE name = ?1 AND version = ?2",
            params![name, version],
        )?;
        tx.commit()?;
        if deleted == 0 {
            return Err(StoreError::NotFound(format!("no plugin {name}@{version}")));
        }
        Ok(())
    }
}
