//! A deterministic order over a fleet that spreads every prefix across regions.

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::FleetView;

/// Orders device indices so that any prefix of the order is a seeded sample spread across regions
/// in proportion to their sizes, with online devices before offline ones.
///
/// Within a region devices are ranked by a hash of their id and `seed`; the order then walks all
/// regions at the same pace (systematic stratified sampling). The result depends on the set of
/// devices and the seed, not on the order the devices come in, and not on ids sorting together:
/// `device-0001` to `device-0100` are not the first hundred.
pub fn spread_order<F: FleetView + ?Sized>(fleet: &F, seed: u64) -> Vec<u32> {
    let n = fleet.len();
    let hashes: Vec<u64> = (0..n)
        .map(|i| xxh3_64_with_seed(fleet.id(i).as_bytes(), seed))
        .collect();
    // Equal hashes (never seen in practice) fall back to the id, so input order never matters.
    let cmp = |a: u32, b: u32| {
        hashes[a as usize]
            .cmp(&hashes[b as usize])
            .then_with(|| fleet.id(a as usize).cmp(fleet.id(b as usize)))
    };

    let mut order = Vec::with_capacity(n);
    for online in [true, false] {
        // Devices by region index; a region index the fleet does not name is its own region.
        let mut buckets: Vec<Vec<u32>> = Vec::new();
        for i in (0..n).filter(|&i| fleet.online(i) == online) {
            let r = fleet.region(i) as usize;
            if buckets.len() <= r {
                buckets.resize_with(r + 1, Vec::new);
            }
            buckets[r].push(i as u32);
        }
        // (position within its region as a 32.32 fixed-point fraction, device) for every device.
        let mut keyed: Vec<(u64, u32)> = Vec::with_capacity(n);
        for members in &mut buckets {
            members.sort_unstable_by(|&a, &b| cmp(a, b));
            let len = members.len() as u128;
            keyed.extend(
                members
                    .iter()
                    .enumerate()
                    .map(|(rank, &i)| ((((2 * rank as u128 + 1) << 32) / (2 * len)) as u64, i)),
            );
        }
        keyed.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| cmp(a.1, b.1)));
        order.extend(keyed.into_iter().map(|(_, i)| i));
    }
    order
}
