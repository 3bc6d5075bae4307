//! Device groups: named sets of target devices, either a fixed list of device ids (static) or a
//! filter evaluated when the group is used (dynamic). Distinct from the `groups` tags a device
//! carries from registration, which filters match with `group`.

use rusqlite::{OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use super::{DeviceFilter, DeviceRecord, Store, StoreError, now};

/// The filter of a dynamic group; every field narrows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// A device tag set at registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `key=value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware_version: Option<String>,
}

impl GroupFilter {
    /// The device filter this group stands for, over every matching device.
    pub fn to_device_filter(&self) -> Result<DeviceFilter, String> {
        let label = self.label.as_deref().map(super::parse_label).transpose()?;
        Ok(DeviceFilter {
            device_model: self.device_model.clone(),
            region: self.region.clone(),
            group: self.group.clone(),
            label,
            firmware_version: self.firmware_version.clone(),
            limit: i64::MAX as usize,
            ..DeviceFilter::default()
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceGroup {
    pub name: String,
    /// The device ids of a static group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<String>>,
    /// The filter of a dynamic group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<GroupFilter>,
    pub created_at: i64,
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<DeviceGroup> {
    let members: Option<String> = r.get(1)?;
    let filter: Option<String> = r.get(2)?;
    Ok(DeviceGroup {
        name: r.get(0)?,
        devices: members.and_then(|m| serde_json::from_str(&m).ok()),
        filter: filter.and_then(|f| serde_json::from_str(&f).ok()),
        created_at: r.get(3)?,
    })
}

impl Store {
    pub fn add_group(&self, group: &DeviceGroup) -> Result<DeviceGroup, StoreError> {
        let members = group
            .devices
            .as_ref()
            .map(|d| serde_json::to_string(d).unwrap_or_default());
        let filter = group
            .filter
            .as_ref()
            .map(|f| serde_json::to_string(f).unwrap_or_default());
        let inserted = self.conn().execute(
            "INSERT INTO device_groups (name, members, filter, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (name) DO NOTHING",
            params![group.name, members, filter, now()],
        )?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!(
                "device group `{}` already exists",
                group.name
            )));
        }
        self.group(&group.name)
    }

    pub fn group(&self, name: &str) -> Result<DeviceGroup, StoreError> {
        self.conn()
            .query_row(
                "SELECT name, members, filter, created_at FROM device_groups WHERE name = ?1",
                [name],
                from_row,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("no device group `{name}`")))
    }

    pub fn list_groups(&self) -> Result<Vec<DeviceGroup>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT name, members, filter, created_at FROM device_groups ORDER BY name")?;
        let rows = stmt.query_map([], from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The devices a group stands for now. Static members that were since removed are skipped.
    pub fn group_devices(&self, group: &DeviceGroup) -> Result<Vec<DeviceRecord>, StoreError> {
        match (&group.devices, &group.filter) {
            (Some(ids), _) => Ok(self.devices_by_id(ids)?.0),
            (None, Some(filter)) => {
                self.list_devices(&filter.to_device_filter().map_err(StoreError::Conflict)?)
            }
            (None, None) => Ok(Vec::new()),
        }
    }
}
