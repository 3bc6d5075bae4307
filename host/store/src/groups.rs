//! Device groups: named sets of target devices, either a fixed list of device ids (static) or a
//! filter evaluated when the group is used (dynamic). Distinct from the `groups` tags a device
//! carries from registration, which filters match with `group`.

use crate::db::{Row, params};
use crate::{DeviceFilter, Store, StoreError, decode_json, parse_label};
use hotswap_protocol::{DeviceGroup, DeviceRecord, GroupFilter, UnixSeconds};

impl DeviceFilter {
    /// The device filter a group filter stands for, over every matching device.
    pub fn matching(filter: &GroupFilter) -> Result<DeviceFilter, String> {
        let label = filter.label.as_deref().map(parse_label).transpose()?;
        Ok(DeviceFilter {
            device_model: filter.device_model.clone(),
            region: filter.region.clone(),
            group: filter.group.clone(),
            label,
            firmware_version: filter.firmware_version.clone(),
            limit: i64::MAX as usize,
            ..DeviceFilter::default()
        })
    }
}

fn from_row(r: &Row<'_>) -> Result<DeviceGroup, StoreError> {
    let members: Option<String> = r.get(1)?;
    let filter: Option<String> = r.get(2)?;
    Ok(DeviceGroup {
        name: r.get(0)?,
        devices: members.map(|m| decode_json(1, &m)).transpose()?,
        filter: filter.map(|f| decode_json(2, &f)).transpose()?,
        created_at: UnixSeconds(r.get(3)?),
        requires_approval: r.get(4)?,
    })
}

impl Store {
    /// The groups that need an approval and hold one of `device_ids` now (static members or a
    /// dynamic filter's matches).
    pub fn protecting_groups(&self, device_ids: &[String]) -> Result<Vec<String>, StoreError> {
        let wanted: std::collections::HashSet<&str> =
            device_ids.iter().map(String::as_str).collect();
        let mut names = Vec::new();
        for g in self.list_groups()? {
            if !g.requires_approval {
                continue;
            }
            if self
                .group_devices(&g)?
                .iter()
                .any(|d| wanted.contains(d.device_id.as_str()))
            {
                names.push(g.name);
            }
        }
        Ok(names)
    }

    pub fn add_group(&self, group: &DeviceGroup) -> Result<DeviceGroup, StoreError> {
        let members = group
            .devices
            .as_ref()
            .map(|d| serde_json::to_string(d).expect("device ids serialize"));
        let filter = group
            .filter
            .as_ref()
            .map(|f| serde_json::to_string(f).expect("a filter serializes"));
        let inserted = self.conn()?.execute(
            "INSERT INTO device_groups (name, members, filter, created_at, requires_approval) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (name) DO NOTHING",
            params![
                group.name,
                members,
                filter,
                self.clock.now().seconds().0,
                group.requires_approval
            ],
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
        self.reader()?
            .query_opt(
                "SELECT name, members, filter, created_at, requires_approval FROM device_groups WHERE name = ?1",
                params![name],
                from_row,
            )?
            .ok_or_else(|| StoreError::NotFound(format!("no device group `{name}`")))
    }

    pub fn list_groups(&self) -> Result<Vec<DeviceGroup>, StoreError> {
        self.reader()?.query_map(
            "SELECT name, members, filter, created_at, requires_approval FROM device_groups ORDER BY name",
            params![],
            from_row,
        )
    }

    /// The devices a group stands for now. Static members that were since removed are skipped.
    pub fn group_devices(&self, group: &DeviceGroup) -> Result<Vec<DeviceRecord>, StoreError> {
        match (&group.devices, &group.filter) {
            (Some(ids), _) => Ok(self.devices_by_id(ids)?.0),
            (None, Some(filter)) => {
                self.list_devices(&DeviceFilter::matching(filter).map_err(StoreError::Conflict)?)
            }
            (None, None) => Ok(Vec::new()),
        }
    }
}
