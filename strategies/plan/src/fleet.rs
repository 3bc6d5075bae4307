//! Fleets: the devices a strategy plans over, mirroring `types.fleet` in `wit/plugin`, and
//! generated fleets for demonstrations, tests and benchmarks.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// What a strategy reads of a fleet. Implemented by [`Fleet`] and by the fleet record the WIT
/// bindings generate, so planning never copies a fleet.
pub trait FleetView {
    /// How many devices the fleet has.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn id(&self, device: usize) -> &str;
    /// The device's region, an index into the region names.
    fn region(&self, device: usize) -> u32;
    /// A region's name; `""` for an index the fleet does not have.
    fn region_name(&self, region: u32) -> &str;
    fn online(&self, device: usize) -> bool;
}

/// A device group and its members (device indices).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
    pub members: Vec<u32>,
}

/// A key/value label and the devices (indices) that carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    pub key: String,
    pub value: String,
    pub members: Vec<u32>,
}

/// The devices a deployment targets, column by column, with shared names listed once; the
/// shape of `types.fleet` in the WIT.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fleet {
    /// Every device's id, back to back; device `i`'s ends at `id_ends[i]`.
    pub ids: String,
    pub id_ends: Vec<u32>,
    pub region: Vec<u32>,
    pub version: Vec<u32>,
    pub online: Vec<bool>,
    pub regions: Vec<String>,
    pub versions: Vec<String>,
    pub groups: Vec<Group>,
    pub labels: Vec<Label>,
}

/// Device `device`'s id in a columnar fleet; `""` where the columns do not hold one.
pub fn id_in<'a>(ids: &'a str, id_ends: &[u32], device: usize) -> &'a str {
    let start = if device == 0 {
        0
    } else {
        id_ends.get(device - 1).map_or(0, |&e| e as usize)
    };
    let end = id_ends.get(device).map_or(start, |&e| e as usize);
    ids.get(start..end).unwrap_or("")
}

/// One device with all its names spelled out: the convenient form to build a [`Fleet`] from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub id: String,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub labels: Vec<(String, String)>,
    #[serde(default)]
    pub version: String,
    #[serde(default = "yes")]
    pub online: bool,
}

fn yes() -> bool {
    true
}

/// Hands out indices for names, first come first served.
struct Interner<K> {
    index: HashMap<K, u32>,
    names: Vec<K>,
}

impl<K: std::hash::Hash + Eq + Clone> Interner<K> {
    fn new() -> Self {
        Interner {
            index: HashMap::new(),
            names: Vec::new(),
        }
    }

    fn intern(&mut self, name: &K) -> u32 {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let i = self.names.len() as u32;
        self.index.insert(name.clone(), i);
        self.names.push(name.clone());
        i
    }
}

impl Fleet {
    /// Builds a fleet from devices with their names spelled out.
    pub fn from_devices(devices: &[Device]) -> Fleet {
        let mut regions = Interner::new();
        let mut versions = Interner::new();
        let mut groups: Interner<String> = Interner::new();
        let mut labels: Interner<(String, String)> = Interner::new();
        let mut group_members: Vec<Vec<u32>> = Vec::new();
        let mut label_members: Vec<Vec<u32>> = Vec::new();
        let mut fleet = Fleet::default();
        for (i, d) in devices.iter().enumerate() {
            for g in &d.groups {
                let gi = groups.intern(g) as usize;
                group_members.resize_with(groups.names.len(), Vec::new);
                group_members[gi].push(i as u32);
            }
            for l in &d.labels {
                let li = labels.intern(l) as usize;
                label_members.resize_with(labels.names.len(), Vec::new);
                label_members[li].push(i as u32);
            }
            fleet.ids.push_str(&d.id);
            fleet.id_ends.push(fleet.ids.len() as u32);
            fleet.region.push(regions.intern(&d.region));
            fleet.version.push(versions.intern(&d.version));
            fleet.online.push(d.online);
        }
        Fleet {
            regions: regions.names,
            versions: versions.names,
            groups: groups
                .names
                .into_iter()
                .zip(group_members)
                .map(|(name, members)| Group { name, members })
                .collect(),
            labels: labels
                .names
                .into_iter()
                .zip(label_members)
                .map(|((key, value), members)| Label {
                    key,
                    value,
                    members,
                })
                .collect(),
            ..fleet
        }
    }
}

/// Implements [`FleetView`] for a type with the columnar fields of `types.fleet` (`ids`,
/// `id_ends`, `region`, `online`, `regions`): [`Fleet`] here, and the records the WIT bindings
/// generate for guests and for the host.
#[macro_export]
macro_rules! impl_fleet_view {
    ($fleet:ty) => {
        impl $crate::FleetView for $fleet {
            fn len(&self) -> usize {
                self.id_ends.len()
            }
            fn id(&self, device: usize) -> &str {
                $crate::fleet::id_in(&self.ids, &self.id_ends, device)
            }
            fn region(&self, device: usize) -> u32 {
                self.region.get(device).copied().unwrap_or(u32::MAX)
            }
            fn region_name(&self, region: u32) -> &str {
                self.regions.get(region as usize).map_or("", String::as_str)
            }
            fn online(&self, device: usize) -> bool {
                self.online.get(device).copied().unwrap_or(false)
            }
        }
    };
}

impl_fleet_view!(Fleet);

/// Regions of a generated fleet, with uneven shares so proportional spreading shows.
pub const REGIONS: [(&str, u32); 3] = [("eu-west", 50), ("us-east", 30), ("ap-south", 20)];

/// `n` devices with ids `dev-000001` up, spread over `regions` (the first `regions` of
/// [`REGIONS`], at most 3) in their shares, on version 1.0.0, one in twenty offline; every device
/// is in group `all` and in `even` or `odd`, and labelled `model=sensor-v1`. The same `n` and
/// `regions` give the same devices.
pub fn generate_devices(n: usize, regions: usize) -> Vec<Device> {
    let regions = &REGIONS[..regions.clamp(1, REGIONS.len())];
    let total: u32 = regions.iter().map(|r| r.1).sum();
    (0..n)
        .map(|i| {
            // A fixed permutation of positions so regions interleave instead of running in blocks.
            let slot = ((i as u64 * 37) % 100) as u32 * total / 100;
            let mut acc = 0;
            let region = regions
                .iter()
                .find(|(_, share)| {
                    acc += share;
                    slot < acc
                })
                .map_or(regions[0].0, |r| r.0);
            Device {
                id: format!("dev-{:06}", i + 1),
                region: region.to_string(),
                groups: vec![
                    "all".to_string(),
                    if i % 2 == 0 { "odd" } else { "even" }.to_string(),
                ],
                labels: vec![("model".to_string(), "sensor-v1".to_string())],
                version: "1.0.0".to_string(),
                online: i % 20 != 7,
            }
        })
        .collect()
}

/// [`generate_devices`] as a [`Fleet`].
pub fn generate(n: usize, regions: usize) -> Fleet {
    Fleet::from_devices(&generate_devices(n, regions))
}
