//! The firmware registry: agent versions per device model, with their signed manifests.

use crate::db::{Dialect, Row, Tx, params};
use crate::{Store, StoreError};
use hotswap_protocol::{CameFrom, Compatibility, Firmware, UnixSeconds};

/// A version to register; its bytes are already in the blob store under `sha256`.
pub struct NewFirmware {
    pub device_model: String,
    pub version: String,
    pub sha256: String,
    pub size: u64,
    pub key_id: String,
    pub signature: String,
    pub security_counter: u32,
    pub release_notes: String,
    /// The models it runs on beside `device_model`.
    pub other_models: Vec<String>,
    /// A semver range of the versions it may be installed over; `None`: any.
    pub installed_versions: Option<String>,
    pub sunset_at: Option<UnixSeconds>,
}

/// Which versions to list.
#[derive(Debug, Default)]
pub struct FirmwareFilter {
    pub device_model: Option<String>,
    pub include_deprecated: bool,
}

/// A version's columns, its models as a JSON array last (each database builds it its way).
fn columns(conn: &Tx<'_>) -> &'static str {
    match conn.dialect() {
        Dialect::Sqlite => {
            "id, device_model, version, sha256, size, key_id, signature, security_counter, release_notes, deprecated, created_at,
            installed_versions, sunset_at,
            (SELECT json_group_array(m.device_model) FROM firmware_models m WHERE m.firmware_id = firmware.id)"
        }
        Dialect::Postgres => {
            "id, device_model, version, sha256, size, key_id, signature, security_counter, release_notes, deprecated, created_at,
            installed_versions, sunset_at,
            (SELECT COALESCE(json_agg(m.device_model), '[]')::text FROM firmware_models m WHERE m.firmware_id = firmware.id)"
        }
    }
}

/// Deployment states in which a deployment still uses its version.
pub(crate) const IN_USE: &str = "('waiting-for-approval', 'running', 'paused', 'rolling-back')";

fn from_row(r: &Row<'_>) -> Result<Firmware, StoreError> {
    Ok(Firmware {
        id: r.get(0)?,
        device_model: r.get(1)?,
        version: r.get(2)?,
        checksum: format!("sha256:{}", r.get::<String>(3)?),
        size: r.get(4)?,
        key_id: r.get(5)?,
        signature: r.get(6)?,
        security_counter: r.get(7)?,
        release_notes: r.get(8)?,
        deprecated: r.get(9)?,
        created_at: UnixSeconds(r.get(10)?),
        compatibility: Compatibility {
            device_models: {
                let mut models: Vec<String> = crate::decode_json(13, &r.get::<String>(13)?)?;
                models.sort();
                models
            },
            installed_versions: r.get(11)?,
        },
        sunset_at: r.get::<Option<i64>>(12)?.map(UnixSeconds),
    })
}

impl Store {
    /// Registers a version for its model and the other models it runs on, all or none: a
    /// model that has this version already is a conflict.
    pub fn add_firmware(&self, f: NewFirmware) -> Result<Firmware, StoreError> {
        let tx = self.begin()?;
        let inserted: Option<i64> = tx.query_opt(
            "INSERT INTO firmware (device_model, version, sha256, size, key_id, signature, security_counter, release_notes, created_at, installed_versions, sunset_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT (device_model, version) DO NOTHING RETURNING id",
            params![f.device_model, f.version, f.sha256, f.size, f.key_id, f.signature, f.security_counter, f.release_notes, self.clock.now().seconds().0, f.installed_versions, f.sunset_at.map(|t| t.0)],
            |r| r.get(0),
        )?;
        let taken = |model: &str| {
            StoreError::Conflict(format!(
                "firmware {} for model `{model}` is already registered",
                f.version
            ))
        };
        let Some(id) = inserted else {
            return Err(taken(&f.device_model));
        };
        let mut models = vec![f.device_model.as_str()];
        models.extend(f.other_models.iter().map(String::as_str));
        models.sort_unstable();
        models.dedup();
        for model in models {
            let n = tx.execute(
                "INSERT INTO firmware_models (device_model, version, firmware_id) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
                params![model, f.version, id],
            )?;
            if n == 0 {
                return Err(taken(model));
            }
        }
        tx.commit()?;
        self.firmware(id)
    }

    pub fn firmware(&self, id: i64) -> Result<Firmware, StoreError> {
        let conn = self.reader()?;
        conn.query_opt(
            &format!("SELECT {} FROM firmware WHERE id = ?1", columns(&conn)),
            params![id],
            from_row,
        )?
        .ok_or_else(|| StoreError::NotFound(format!("no firmware with id {id}")))
    }

    pub fn firmware_by_version(
        &self,
        device_model: &str,
        version: &str,
    ) -> Result<Option<Firmware>, StoreError> {
        let conn = self.reader()?;
        conn.query_opt(
            &format!(
                "SELECT {} FROM firmware WHERE id =
                 (SELECT firmware_id FROM firmware_models WHERE device_model = ?1 AND version = ?2)",
                columns(&conn)
            ),
            params![device_model, version],
            from_row,
        )
    }

    pub fn list_firmware(&self, filter: &FirmwareFilter) -> Result<Vec<Firmware>, StoreError> {
        let conn = self.reader()?;
        conn.query_map(
            &format!(
                "SELECT {} FROM firmware
                 WHERE (CAST(?1 AS TEXT) IS NULL OR EXISTS (SELECT 1 FROM firmware_models m WHERE m.firmware_id = firmware.id AND m.device_model = ?1))
                   AND (?2 = 1 OR deprecated = 0)
                 ORDER BY device_model, id",
                columns(&conn)
            ),
            params![filter.device_model, filter.include_deprecated],
            from_row,
        )
    }

    /// Marks a version deprecated: it can no longer be deployed. Refused while a deployment
    /// that has not ended uses it.
    pub fn deprecate_firmware(&self, id: i64) -> Result<Firmware, StoreError> {
        self.retire(
            id,
            "deprecate",
            "UPDATE firmware SET deprecated = 1 WHERE id = ?1",
            None,
        )
    }

    /// Sets the time after which a version can no longer be deployed. Refused while a
    /// deployment that has not ended uses it.
    pub fn sunset_firmware(&self, id: i64, at: UnixSeconds) -> Result<Firmware, StoreError> {
        self.retire(
            id,
            "sunset",
            "UPDATE firmware SET sunset_at = ?2 WHERE id = ?1",
            Some(at),
        )
    }

    fn retire(
        &self,
        id: i64,
        verb: &str,
        sql: &str,
        at: Option<UnixSeconds>,
    ) -> Result<Firmware, StoreError> {
        let tx = self.begin()?;
        let using: Option<(i64, String)> = tx.query_opt(
            &format!(
                "SELECT id, state FROM deployments WHERE firmware_id = ?1 AND state IN {IN_USE} ORDER BY id LIMIT 1"
            ),
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if let Some((deployment, state)) = using {
            return Err(StoreError::Conflict(format!(
                "cannot {verb} firmware {id}: deployment {deployment} ({state}) uses it; let it end or cancel it first"
            )));
        }
        let changed = match at {
            None => tx.execute(sql, params![id])?,
            Some(at) => tx.execute(sql, params![id, at.0])?,
        };
        if changed == 0 {
            return Err(StoreError::NotFound(format!("no firmware with id {id}")));
        }
        tx.commit()?;
        self.firmware(id)
    }

    /// How many devices confirmed version `id`, by the version they came from, most first.
    pub fn came_from(&self, id: i64) -> Result<Vec<CameFrom>, StoreError> {
        self.reader()?.query_map(
            &format!(
                "SELECT {}, COUNT(DISTINCT a.device_id) FROM assignments a
                 WHERE a.firmware_id = ?1 AND a.outcome = 'succeeded' AND a.mode != 'stage'
                 GROUP BY 1 ORDER BY 2 DESC, 1",
                crate::inventory::FROM_VERSION
            ),
            params![id],
            |r| {
                Ok(CameFrom {
                    from_version: r.get(0)?,
                    devices: r.get(1)?,
                })
            },
        )
    }
}

/// The installed versions a version may be installed over: a semver range, parsed once and
/// held to each device in turn.
#[derive(Debug, Clone)]
pub struct InstalledVersions {
    req: semver::VersionReq,
    range: String,
}

impl InstalledVersions {
    /// The range of `version`; one that does not parse (registration checks it, so only a
    /// damaged row) is an error that says so, the reason to refuse every device.
    pub fn parse(range: &str, version: &str) -> Result<InstalledVersions, String> {
        let req = semver::VersionReq::parse(range).map_err(|e| {
            format!("{version}'s range of installed versions `{range}` does not parse: {e}")
        })?;
        Ok(InstalledVersions {
            req,
            range: range.to_string(),
        })
    }

    /// Why `version` may not be installed over `running`; `None` when it may.
    pub fn refuses(&self, running: &str, version: &str) -> Option<String> {
        let range = &self.range;
        match semver::Version::parse(running) {
            Ok(v) if self.req.matches(&v) => None,
            Ok(_) => Some(format!(
                "runs {running}, and {version} installs only over `{range}`"
            )),
            Err(_) => Some(format!(
                "runs `{running}`, not a semver version, and {version} installs only over `{range}`"
            )),
        }
    }
}
