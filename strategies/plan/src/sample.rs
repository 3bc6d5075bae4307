//! A deterministic order over a fleet that spreads every prefix across regions.

use std::collections::BTreeMap;

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::DeviceView;

/// Orders device indices so that any prefix of the order is a seeded sample spread across regions
/// in proportion to their sizes, with online devices before offline ones.
///
/// Within a region devices are ranked by a hash of their id and `seed`; the order then walks all
/// regions at the same pace (systematic stratified sampling). The result depends on the set of
/// devices and the seed, not on the order the devices come in, and not on ids sorting together:
/// `device-0001` to `device-0100` are not the first hundred.
pub fn spread_order<D: DeviceView>(devices: &[D], seed: u64) -> Vec<u32> {
    let mut order = Vec::with_capacity(devices.len());
    for online in [true, false] {
        // region -> (hash, id, index); BTreeMap keeps regions in a stable order.
        let mut regions: BTreeMap<&str, Vec<(u64, &str, u32)>> = BTreeMap::new();
        for (i, d) in devices.iter().enumerate() {
            if d.online() == online {
                let id = d.id();
                regions.entry(d.region()).or_default().push((
                    xxh3_64_with_seed(id.as_bytes(), seed),
                    id,
                    i as u32,
                ));
            }
        }
        // (position within its region in [0, 1), hash, index) for every device.
        let mut keyed: Vec<(f64, u64, &str, u32)> = Vec::new();
        for members in regions.values_mut() {
            members.sort_unstable();
            let n = members.len() as f64;
            keyed.extend(
                members
                    .iter()
                    .enumerate()
                    .map(|(rank, &(h, id, i))| ((rank as f64 + 0.5) / n, h, id, i)),
            );
        }
        keyed.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(b.2)));
        order.extend(keyed.into_iter().map(|k| k.3));
    }
    order
}
