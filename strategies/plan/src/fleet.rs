//! Generated fleets for demonstrations, tests and benchmarks.

use crate::Device;

/// Regions of a generated fleet, with uneven shares so proportional spreading shows.
pub const REGIONS: [(&str, u32); 3] = [("eu-west", 50), ("us-east", 30), ("ap-south", 20)];

/// `n` devices with ids `dev-000001` up, spread over `regions` (the first `regions` of
/// [`REGIONS`], at most 3) in their shares, on version 1.0.0, one in twenty offline; every device
/// is in group `all` and in `even` or `odd`. The same `n` and `regions` give the same fleet.
pub fn generate(n: usize, regions: usize) -> Vec<Device> {
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
