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
    // Equal hashes (never seen in practice) fall back to the id, so input order never matters.
    let tie = |a: u32, b: u32| fleet.id(a as usize).cmp(fleet.id(b as usize));

    let mut order = Vec::with_capacity(n);
    for online in [true, false] {
        // (hash, device) by region index; a region index the fleet does not name is its own region.
        let mut buckets: Vec<Vec<(u64, u32)>> = Vec::new();
        for i in (0..n).filter(|&i| fleet.online(i) == online) {
            let r = fleet.region(i) as usize;
            if buckets.len() <= r {
                buckets.resize_with(r + 1, Vec::new);
            }
            buckets[r].push((xxh3_64_with_seed(fleet.id(i).as_bytes(), seed), i as u32));
        }
        // (position within its region as a 32.32 fixed-point fraction, hash, device).
        let mut keyed: Vec<(u64, u64, u32)> = Vec::with_capacity(n);
        for members in &mut buckets {
            members.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| tie(a.1, b.1)));
            let len = members.len() as u128;
            keyed.extend(members.iter().enumerate().map(|(rank, &(hash, i))| {
                ((((2 * rank as u128 + 1) << 32) / (2 * len)) as u64, hash, i)
            }));
        }
        keyed.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)).then_with(|| tie(a.2, b.2)));
        order.extend(keyed.into_iter().map(|(_, _, i)| i));
    }
    order
}
