//! Stress: 1,000 consecutive swaps, every one confirmed, and the heap no larger at the end than
//! after the first few (a counting allocator measures it). This file holds one test so nothing
//! else allocates while it counts.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use common::*;
use hotswap_device_vm::TrialOutcome;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn a_thousand_swaps_all_succeed_without_heap_growth() {
    let releases: Vec<Release> = (1..=1001)
        .map(|n| release(v(n), &alarm_variant((n % 2) as u8), 0))
        .collect();
    let mut device = device_with(&releases[0]);
    let mut baseline = 0;
    for (n, r) in releases.iter().enumerate().skip(1) {
        assert_eq!(
            install(&mut device, r).unwrap(),
            TrialOutcome::Confirmed {
                version: r.manifest.version
            },
            "swap {n}"
        );
        if n == 10 {
            baseline = LIVE.load(Ordering::Relaxed);
        }
    }
    let end = LIVE.load(Ordering::Relaxed);
    assert_eq!(running(&mut device), v(1001));
    assert!(
        end <= baseline,
        "the heap grew by {} bytes over 990 swaps",
        end - baseline
    );
}
