//! The device registry: identity, model, region, labels, groups, the version a device runs and
//! its status.

use std::collections::BTreeMap;

use crate::db::{Dialect, Row, Tx, params};
use crate::{Store, StoreError, decode, decode_json};
use hotswap_protocol::{DeviceRecord, DeviceStatus, FirmwareStatus, Spelling, UnixSeconds};

/// A device to register, its fields checked.
pub struct NewDevice {
    pub device_id: String,
    pub device_model: String,
    pub region: String,
    pub labels: BTreeMap<String, String>,
    pub groups: Vec<String>,
    pub firmware_version: String,
    /// SHA-256 of the device's credential, hex; `None` gives it none (it cannot check in).
    pub token_sha256: Option<String>,
}

/// Which devices to list; every field narrows the list. Paging by `after` (the last device id of
/// the previous page) keeps pages stable while devices are added.
#[derive(Debug, Default)]
pub struct DeviceFilter {
    pub device_model: Option<String>,
    pub region: Option<String>,
    pub group: Option<String>,
    pub label: Option<(String, String)>,
    pub firmware_version: Option<String>,
    pub status: Option<DeviceStatus>,
    /// Where the version a device runs stands (at the store's clock's now).
    pub firmware_status: Option<FirmwareStatus>,
    pub after: Option<String>,
    pub limit: usize,
}

/// The standing of the version a row of `devices` runs, at the time bound to the parameter
/// `now` (`?N`): `sunset`, `deprecated` or `current`, or NULL when the version is not
/// registered for its model.
pub(crate) fn firmware_status_of_device(now: &str) -> String {
    format!(
        "(SELECT CASE
            WHEN f.sunset_at IS NOT NULL AND f.sunset_at <= {now} THEN 'sunset'
            WHEN f.deprecated <> 0 THEN 'deprecated'
            ELSE 'current' END
        FROM firmware_models m JOIN firmware f ON f.id = m.firmware_id
        WHERE m.device_model = devices.model AND m.version = devices.version)"
    )
}

/// Parses a label filter written `key=value`.
pub fn parse_label(label: &str) -> Result<(String, String), String> {
    hotswap_protocol::Label::parse("label", label)
        .map(|l| (l.key.to_string(), l.value))
        .map_err(|e| e.to_string())
}

const COLUMNS: &str =
    "device_id, model, region, labels, groups, version, status, last_seen, created_at, public_key";

/// How an operator tells an enrolled device's key: `sha256:` and the SHA-256 of the key's 32
/// bytes, in hex. `None` for a key that is not hex (none is stored).
pub fn key_fingerprint(public_key_hex: &str) -> Option<String> {
    use sha2::Digest;
    let bytes = hex::decode(public_key_hex).ok()?;
    Some(format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(bytes))
    ))
}

fn from_row(r: &Row<'_>) -> Result<DeviceRecord, StoreError> {
    Ok(DeviceRecord {
        device_id: r.get(0)?,
        device_model: r.get(1)?,
        region: r.get(2)?,
        labels: decode_json(3, &r.get::<String>(3)?)?,
        groups: decode_json(4, &r.get::<String>(4)?)?,
        firmware_version: r.get(5)?,
        status: decode(6, &r.get::<String>(6)?)?,
        last_seen: r.get::<Option<i64>>(7)?.map(UnixSeconds),
        created_at: UnixSeconds(r.get(8)?),
        key_fingerprint: r
            .get::<Option<String>>(9)?
            .as_deref()
            .and_then(key_fingerprint),
    })
}

impl Store {
    pub fn add_device(&self, d: NewDevice) -> Result<DeviceRecord, StoreError> {
        if !insert_device(&self.conn()?, &d, self.clock.now().seconds())? {
            return Err(StoreError::Conflict(format!(
                "device `{}` is already registered",
                d.device_id
            )));
        }
        self.device(&d.device_id)
    }

    /// Registers `devices` in one transaction. Devices registered already are skipped and
    /// returned when `skip_registered`; otherwise they refuse the whole batch.
    pub fn add_devices(
        &self,
        devices: &[NewDevice],
        skip_registered: bool,
    ) -> Result<(usize, Vec<String>), StoreError> {
        let tx = self.begin()?;
        let created_at = self.clock.now().seconds();
        let mut skipped = Vec::new();
        for d in devices {
            if !insert_device(&tx, d, created_at)? {
                skipped.push(d.device_id.clone());
            }
        }
        if !skip_registered && !skipped.is_empty() {
            let named: Vec<String> = skipped.iter().take(5).map(|id| format!("`{id}`")).collect();
            return Err(StoreError::Conflict(format!(
                "{} of the devices are already registered ({}{}); nothing was registered: send \"ifRegistered\": \"skip\" to register the others",
                skipped.len(),
                named.join(", "),
                if skipped.len() > 5 { ", …" } else { "" }
            )));
        }
        tx.commit()?;
        Ok((devices.len() - skipped.len(), skipped))
    }

    pub fn device(&self, device_id: &str) -> Result<DeviceRecord, StoreError> {
        self.reader()?
            .query_opt(
                &format!("SELECT {COLUMNS} FROM devices WHERE device_id = ?1"),
                params![device_id],
                from_row,
            )?
            .ok_or_else(|| StoreError::NotFound(format!("no device `{device_id}`")))
    }

    /// The fleet counted by version, status and region: three grouped counts, whatever its size.
    pub fn fleet_summary(&self) -> Result<hotswap_protocol::FleetSummary, StoreError> {
        let conn = self.reader()?;
        let group = |column: &str| -> Result<BTreeMap<String, u64>, StoreError> {
            Ok(conn
                .query_map(
                    &format!("SELECT {column}, COUNT(*) FROM devices GROUP BY {column}"),
                    params![],
                    |r| Ok((r.get::<String>(0)?, r.get::<u64>(1)?)),
                )?
                .into_iter()
                .collect())
        };
        let by_version = group("version")?;
        Ok(hotswap_protocol::FleetSummary {
            devices: by_version.values().sum(),
            by_version,
            by_status: group("status")?,
            by_region: group("region")?,
        })
    }

    pub fn list_devices(&self, f: &DeviceFilter) -> Result<Vec<DeviceRecord>, StoreError> {
        let conn = self.reader()?;
        // Groups are JSON text; each database reads it with its own functions. Labels are
        // found through their index, `device_labels`.
        let in_group = match conn.dialect() {
            Dialect::Sqlite => "EXISTS (SELECT 1 FROM json_each(groups) WHERE value = ?3)",
            Dialect::Postgres => {
                "EXISTS (SELECT 1 FROM jsonb_array_elements_text(groups::jsonb) AS g WHERE g = CAST(?3 AS TEXT))"
            }
        };
        let labelled = "device_id IN (SELECT device_id FROM device_labels
                                      WHERE key = CAST(?4 AS TEXT) AND value = CAST(?5 AS TEXT))";
        let (label_key, label_value) = f.label.clone().unzip();
        conn.query_map(
            &format!(
                "SELECT {COLUMNS} FROM devices
                 WHERE (CAST(?1 AS TEXT) IS NULL OR model = ?1)
                   AND (CAST(?2 AS TEXT) IS NULL OR region = ?2)
                   AND (CAST(?3 AS TEXT) IS NULL OR {in_group})
                   AND (CAST(?4 AS TEXT) IS NULL OR {labelled})
                   AND (CAST(?6 AS TEXT) IS NULL OR version = ?6)
                   AND (CAST(?7 AS TEXT) IS NULL OR status = ?7)
                   AND (CAST(?8 AS TEXT) IS NULL OR {} = ?8)
                   AND (CAST(?10 AS TEXT) IS NULL OR device_id > ?10)
                 ORDER BY device_id LIMIT ?11",
                firmware_status_of_device("?9")
            ),
            params![
                f.device_model,
                f.region,
                f.group,
                label_key,
                label_value,
                f.firmware_version,
                f.status.map(Spelling::as_str),
                f.firmware_status.map(Spelling::as_str),
                self.clock.now().seconds().0,
                f.after,
                f.limit as i64
            ],
            from_row,
        )
    }
}

impl Store {
    /// Records a device that enrolled itself: `pending`, with its public key and no credential.
    /// A device that asks again keeps its place; a registered one is a conflict.
    pub fn enroll_device(
        &self,
        d: &NewDevice,
        public_key: &str,
    ) -> Result<DeviceRecord, StoreError> {
        let conn = self.conn()?;
        let inserted = conn.execute(
            "INSERT INTO devices (device_id, model, region, labels, groups, version, status, created_at, public_key)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?8) ON CONFLICT (device_id) DO NOTHING",
            params![
                d.device_id,
                d.device_model,
                d.region,
                serde_json::to_string(&d.labels).expect("labels serialize"),
                serde_json::to_string(&d.groups).expect("groups serialize"),
                d.firmware_version,
                self.clock.now().seconds().0,
                public_key
            ],
        )?;
        if inserted > 0 {
            index_labels(&conn, &d.device_id, &d.labels)?;
        }
        if inserted == 0 {
            let known: Option<String> = conn
                .query_opt(
                    "SELECT public_key FROM devices WHERE device_id = ?1",
                    params![d.device_id],
                    |r| r.get(0),
                )?
                .flatten();
            if known.as_deref() != Some(public_key) {
                return Err(StoreError::Conflict(format!(
                    "device `{}` is registered already, with another key",
                    d.device_id
                )));
            }
        }
        drop(conn);
        self.device(&d.device_id)
    }

    /// Gives an accepted device the credential whose SHA-256 is `sha`, for a claim signed at
    /// `timestamp`: once per claim, since a claim must be later than the last one used (a
    /// captured claim replayed gives nothing). False when the claim was used, or the device is
    /// not in the fleet.
    pub fn claim_device_token(
        &self,
        device_id: &str,
        timestamp: i64,
        sha: &str,
    ) -> Result<bool, StoreError> {
        let changed = self.conn()?.execute(
            "UPDATE devices SET token_sha256 = ?2, last_claim_at = ?3
             WHERE device_id = ?1 AND status IN ('registered', 'online', 'quarantined')
               AND (last_claim_at IS NULL OR last_claim_at < ?3)",
            params![device_id, sha, timestamp],
        )?;
        Ok(changed > 0)
    }

    /// The public key a device enrolled with.
    pub fn device_public_key(&self, device_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .reader()?
            .query_opt(
                "SELECT public_key FROM devices WHERE device_id = ?1",
                params![device_id],
                |r| r.get::<Option<String>>(0),
            )?
            .flatten())
    }

    /// Sets a device's standing. `rejected` and `decommissioned` take its credential away in
    /// the same write; `pending` devices are accepted with `registered`.
    pub fn set_device_status(
        &self,
        device_id: &str,
        status: DeviceStatus,
    ) -> Result<DeviceRecord, StoreError> {
        let clears = matches!(
            status,
            DeviceStatus::Rejected | DeviceStatus::Decommissioned
        );
        let changed = self.conn()?.execute(
            "UPDATE devices SET status = ?2, token_sha256 = CASE WHEN ?3 = 1 THEN NULL ELSE token_sha256 END WHERE device_id = ?1",
            params![device_id, status.as_str(), clears],
        )?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("no device `{device_id}`")));
        }
        self.device(device_id)
    }

    /// Gives devices in the fleet new credentials (the old ones stop working): `(device, SHA-256
    /// of its new credential)`. Devices not registered, or not in the fleet (pending, rejected,
    /// decommissioned: a credential for them would undo an operator's decision), are left out of
    /// the answer.
    pub fn reissue_device_tokens(
        &self,
        devices: &[(String, String)],
    ) -> Result<Vec<String>, StoreError> {
        let tx = self.begin()?;
        let mut changed = Vec::new();
        for (device, sha) in devices {
            let n = tx.execute(
                "UPDATE devices SET token_sha256 = ?2
                 WHERE device_id = ?1 AND status IN ('registered', 'online', 'quarantined')",
                params![device, sha],
            )?;
            if n > 0 {
                changed.push(device.clone());
            }
        }
        tx.commit()?;
        Ok(changed)
    }

    /// The devices with these ids, in the order given; ids that are not registered are returned
    /// in the second list.
    pub fn devices_by_id(
        &self,
        ids: &[String],
    ) -> Result<(Vec<DeviceRecord>, Vec<String>), StoreError> {
        let mut found = Vec::with_capacity(ids.len());
        let mut missing = Vec::new();
        let conn = self.reader()?;
        let sql = format!("SELECT {COLUMNS} FROM devices WHERE device_id = ?1");
        for id in ids {
            match conn.query_opt(&sql, params![id], from_row)? {
                Some(d) => found.push(d),
                None => missing.push(id.clone()),
            }
        }
        Ok((found, missing))
    }
}

/// Inserts a device unless one with its id is registered; false when it was.
fn insert_device(
    conn: &Tx<'_>,
    d: &NewDevice,
    created_at: UnixSeconds,
) -> Result<bool, StoreError> {
    let labels = serde_json::to_string(&d.labels).expect("labels serialize");
    let groups = serde_json::to_string(&d.groups).expect("groups serialize");
    let inserted = conn.execute(
        "INSERT INTO devices (device_id, model, region, labels, groups, version, status, created_at, token_sha256)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'registered', ?7, ?8) ON CONFLICT (device_id) DO NOTHING",
        params![
            d.device_id,
            d.device_model,
            d.region,
            labels,
            groups,
            d.firmware_version,
            created_at.0,
            d.token_sha256
        ],
    )?;
    if inserted > 0 {
        index_labels(conn, &d.device_id, &d.labels)?;
    }
    Ok(inserted > 0)
}

/// Indexes a new device's labels in `device_labels`.
fn index_labels(
    conn: &Tx<'_>,
    device_id: &str,
    labels: &BTreeMap<String, String>,
) -> Result<(), StoreError> {
    for (key, value) in labels {
        conn.execute(
            "INSERT INTO device_labels (key, value, device_id) VALUES (?1, ?2, ?3)
             ON CONFLICT DO NOTHING",
            params![key, value, device_id],
        )?;
    }
    Ok(())
}
