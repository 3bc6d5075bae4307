//! Device benchmarks: a whole update of a 14 KiB agent (verify, write, instantiate, self-test,
//! confirm), a rollback, an agent `step` against the same call in raw wasmi, and the memory one
//! simulated device takes. `cargo bench -p hotswap-device-vm --bench device`.

use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use hotswap_device_vm::agent::{self, Agent, AgentLimits, RecordingHost};
use hotswap_device_vm::layout::DEFAULT_SLOT_SIZE;
use hotswap_device_vm::release::{Release, ReleaseKey};
use hotswap_device_vm::sim::SimFlash;
use hotswap_device_vm::{Device, DeviceConfig, Layout, TrialOutcome, Version};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: AllocLayout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: AllocLayout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

type Flash = SimFlash<4, 1024>;
const CAPACITY: usize = 2 * 1024 + 2 * DEFAULT_SLOT_SIZE as usize;

fn host() -> RecordingHost {
    RecordingHost {
        sensors: vec![("temperature".into(), 21.0)],
        ..RecordingHost::default()
    }
}

/// The alarm agent padded with a custom section to `size` bytes: a full 14 KiB slot's worth.
fn agent_of_size(size: usize, tag: u8) -> Vec<u8> {
    let mut image = hotswap_agents::THRESHOLD_ALARM.to_vec();
    let payload = size - image.len() - 4;
    // Custom section: id 0, LEB128 size (2 bytes), name "p" (len 1), payload.
    let body = 2 + payload - 1;
    image.extend_from_slice(&[0, (body as u8 & 0x7f) | 0x80, (body >> 7) as u8, 1]);
    image.extend_from_slice(&vec![tag; payload - 1]);
    image.insert(image.len() - payload + 1, b'p');
    image.truncate(size);
    assert!(agent::compile(&agent::engine(&AgentLimits::default()), &image).is_ok());
    image
}

fn install(device: &mut Device<Flash>, r: &Release) {
    device
        .begin_update(r.manifest, r.key_id, r.signature)
        .unwrap();
    device.write_chunk(0, &r.image).unwrap();
    device.finish_download(0).unwrap();
    device.activate().unwrap();
    let outcome = device
        .run_trial(|image| {
            agent::trial(image, host(), AgentLimits::default(), "{}")
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .unwrap();
    assert!(matches!(outcome, TrialOutcome::Confirmed { .. }));
}

fn device(c: &mut Criterion) {
    let key = ReleaseKey::from_seed([7; 32]);
    let config = DeviceConfig {
        keys: vec![key.trusted()],
        allow_downgrade: true,
    };
    let layout = Layout::new(1024, DEFAULT_SLOT_SIZE, 4, CAPACITY as u32).unwrap();
    let max = layout.max_image() as usize;
    let releases = [
        key.release(Version::new(1, 0, 0), &agent_of_size(max, 1), 0),
        key.release(Version::new(1, 0, 1), &agent_of_size(max, 2), 0),
    ];

    let before = LIVE.load(Ordering::Relaxed);
    let mut device = Device::boot(Flash::new(CAPACITY), layout, config.clone())
        .unwrap_or_else(|f| panic!("{}", f.error));
    install(&mut device, &releases[0]);
    let image = device.active_image().unwrap();
    let mut agent = Agent::load(&image, host(), AgentLimits::default()).unwrap();
    agent.init("{}").unwrap();
    let per_device = LIVE.load(Ordering::Relaxed) - before;
    println!(
        "memory per simulated device (flash image, device state, running agent): {per_device} bytes"
    );
    println!(
        "  of which agent linear memory: {} bytes; image: {} bytes",
        agent.memory_size(),
        image.len()
    );
    drop(agent);

    let mut n = 0;
    c.bench_function(
        "update, 14 KiB agent: verify + write + instantiate + self-test + confirm",
        |b| {
            b.iter(|| {
                n += 1;
                install(&mut device, &releases[n % 2]);
            })
        },
    );
    c.bench_function(
        "rollback: verify other slot + journal write + instantiate + init",
        |b| {
            b.iter(|| {
                device.rollback().unwrap();
                let image = device.active_image().unwrap();
                let mut agent = Agent::load(&image, host(), AgentLimits::default()).unwrap();
                agent.init("{}").unwrap();
                black_box(agent);
            })
        },
    );
    c.bench_function("rollback: journal and verify only", |b| {
        b.iter(|| black_box(device.rollback().unwrap()))
    });

    let alarm = hotswap_agents::THRESHOLD_ALARM;
    let mut ours = Agent::load(alarm, host(), AgentLimits::default()).unwrap();
    ours.init("{}").unwrap();
    c.bench_function("agent step, through the device VM", |b| {
        b.iter(|| ours.step().unwrap())
    });

    // The same export called in raw wasmi: same engine settings, and host functions that do what
    // any host must (read the name out of linear memory, check it is UTF-8) and nothing more.
    let engine = agent::engine(&AgentLimits::default());
    let module = wasmi::Module::new(&engine, alarm).unwrap();
    let mut store = wasmi::Store::new(&engine, None::<wasmi::Memory>);
    store.set_fuel(u64::MAX).unwrap();
    fn name_len(caller: &wasmi::Caller<'_, Option<wasmi::Memory>>, ptr: i32, len: i32) -> usize {
        let data = caller.data().unwrap().data(caller);
        std::str::from_utf8(&data[ptr as usize..(ptr + len) as usize])
            .unwrap()
            .len()
    }
    let mut linker = wasmi::Linker::<Option<wasmi::Memory>>::new(&engine);
    linker
        .func_wrap(
            "hotswap:agent/sensors@0.1.0",
            "read",
            |c: wasmi::Caller<'_, Option<wasmi::Memory>>, p: i32, l: i32| -> f32 {
                black_box(name_len(&c, p, l));
                21.0
            },
        )
        .unwrap();
    linker
        .func_wrap(
            "hotswap:agent/actuators@0.1.0",
            "set",
            |c: wasmi::Caller<'_, Option<wasmi::Memory>>, p: i32, l: i32, v: f32| {
                black_box((name_len(&c, p, l), v));
            },
        )
        .unwrap();
    linker
        .func_wrap(
            "hotswap:agent/log@0.1.0",
            "log",
            |c: wasmi::Caller<'_, Option<wasmi::Memory>>, _: i32, p: i32, l: i32| {
                black_box(name_len(&c, p, l));
            },
        )
        .unwrap();
    linker
        .func_wrap("hotswap:agent/clock@0.1.0", "now-ms", || -> i64 { 0 })
        .unwrap();
    let instance = linker.instantiate_and_start(&mut store, &module).unwrap();
    *store.data_mut() = instance.get_memory(&store, "memory");
    let step = instance.get_typed_func::<(), i32>(&store, "step").unwrap();
    let post = instance
        .get_typed_func::<i32, ()>(&store, "cabi_post_step")
        .unwrap();
    c.bench_function("agent step, raw wasmi", |b| {
        b.iter(|| {
            let ret = step.call(&mut store, ()).unwrap();
            post.call(&mut store, ret).unwrap();
        })
    });

    c.bench_function("agent load + init + self-test (no shared module)", |b| {
        b.iter(|| black_box(agent::trial(alarm, host(), AgentLimits::default(), "{}").unwrap()))
    });
}

criterion_group!(benches, device);
criterion_main!(benches);
