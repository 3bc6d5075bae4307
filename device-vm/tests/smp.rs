//! The device's SMP server, driven as an MCUmgr client drives it: each request CBOR-encoded,
//! framed for the serial line, decoded on the device, answered, and the answer read back through
//! the same framing. Upload (resumable), test, reset, confirm; a reset before confirming goes
//! back; a failing self-test reverts; a tampered image and one signed by an unknown key are
//! refused before anything is kept.

mod common;

use common::*;
use hotswap_device_vm::mcuboot::{self, SignedManifest};
use hotswap_device_vm::release::ReleaseKey;
use hotswap_device_vm::smp::serial::{self, Decoder, MAX_LINE};
use hotswap_device_vm::smp::server::{BUFFER_SIZE, rc};
use hotswap_device_vm::smp::{Effect, ResetOutcome, Server, reset};
use hotswap_device_vm::{Device, Version};
use minicbor::data::Type;
use minicbor::{Decoder as Cbor, Encoder};

/// A CBOR value as the tests read answers.
#[derive(Debug, Clone, PartialEq)]
enum V {
    U(u64),
    S(String),
    B(Vec<u8>),
    Bool(bool),
    A(Vec<V>),
    M(Vec<(String, V)>),
}

impl V {
    fn get(&self, key: &str) -> Option<&V> {
        match self {
            V::M(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

fn read(d: &mut Cbor<'_>) -> V {
    match d.datatype().unwrap() {
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => V::U(d.u64().unwrap()),
        Type::String => V::S(d.str().unwrap().to_string()),
        Type::Bytes => V::B(d.bytes().unwrap().to_vec()),
        Type::Bool => V::Bool(d.bool().unwrap()),
        Type::Array => {
            let n = d.array().unwrap().unwrap();
            V::A((0..n).map(|_| read(d)).collect())
        }
        Type::Map => {
            let n = d.map().unwrap().unwrap();
            V::M(
                (0..n)
                    .map(|_| (d.str().unwrap().to_string(), read(d)))
                    .collect(),
            )
        }
        other => panic!("unexpected CBOR {other:?}"),
    }
}

/// One SMP device with its server, its serial line decoder and the next sequence number.
struct Line {
    device: Option<Device<Flash>>,
    server: Server,
    device_side: Decoder,
    client_side: Decoder,
    sequence: u8,
}

impl Line {
    fn new(device: Device<Flash>) -> Line {
        Line {
            device: Some(device),
            server: Server::new(),
            device_side: Decoder::new(BUFFER_SIZE),
            client_side: Decoder::new(BUFFER_SIZE),
            sequence: 0,
        }
    }

    /// Sends `body` as (group, command, write) over the line; the answer's body, read, and
    /// what the device must do.
    fn call(&mut self, group: u16, command: u8, write: bool, body: &[u8]) -> (V, Effect) {
        self.sequence = self.sequence.wrapping_add(1);
        let mut message = vec![(1 << 3) | if write { 2 } else { 0 }, 0];
        message.extend_from_slice(&(body.len() as u16).to_be_bytes());
        message.extend_from_slice(&group.to_be_bytes());
        message.extend_from_slice(&[self.sequence, command]);
        message.extend_from_slice(body);
        let mut got = None;
        for b in serial::encode(&message, MAX_LINE) {
            if let Some(packet) = self.device_side.push(b) {
                got = Some(packet.unwrap());
            }
        }
        let request = got.expect("the device read a whole packet");
        let (answer, effect) = self
            .server
            .handle(self.device.as_mut().unwrap(), &request, 0)
            .expect("an answer");
        let mut back = None;
        for b in serial::encode(&answer, MAX_LINE) {
            if let Some(packet) = self.client_side.push(b) {
                back = Some(packet.unwrap());
            }
        }
        let back = back.unwrap();
        assert_eq!(
            back[0],
            (1 << 3) | if write { 3 } else { 1 },
            "the answer's op"
        );
        assert_eq!(back[6], self.sequence, "the answer copies the sequence");
        assert_eq!(back[7], command);
        (read(&mut Cbor::new(&back[8..])), effect)
    }

    fn state(&mut self) -> Vec<V> {
        let (answer, _) = self.call(1, 0, false, &map(|_| {}, 0));
        match answer.get("images") {
            Some(V::A(images)) => images.clone(),
            other => panic!("no images: {answer:?} {other:?}"),
        }
    }

    /// Uploads `file` in chunks: the first of `first` bytes, the others of `chunk`.
    fn upload(&mut self, file: &[u8], first: usize, chunk: usize) -> V {
        let sha: [u8; 32] =
            sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(file)).into();
        let mut off = 0usize;
        loop {
            let size = if off == 0 { first } else { chunk };
            let data = &file[off..(off + size).min(file.len())];
            let body = map(
                |e| {
                    e.str("off").unwrap().u64(off as u64).unwrap();
                    e.str("data").unwrap().bytes(data).unwrap();
                    if off == 0 {
                        e.str("image").unwrap().u8(0).unwrap();
                        e.str("len").unwrap().u64(file.len() as u64).unwrap();
                        e.str("sha").unwrap().bytes(&sha).unwrap();
                    }
                },
                if off == 0 { 5 } else { 2 },
            );
            let (answer, _) = self.call(1, 1, true, &body);
            match answer.get("off") {
                Some(V::U(next)) if *next as usize == file.len() => return answer,
                Some(V::U(next)) => off = *next as usize,
                _ => return answer,
            }
        }
    }

    fn reset(&mut self) -> ResetOutcome {
        let (_, effect) = self.call(0, 5, true, &map(|_| {}, 0));
        assert_eq!(effect, Effect::Reset);
        let device = self.device.take().unwrap();
        let (device, outcome) = reset(&mut self.server, device, layout(), config(), self_test)
            .map_err(|f| f.error)
            .unwrap();
        self.device = Some(device);
        outcome
    }
}

fn map(fields: impl FnOnce(&mut Encoder<&mut Vec<u8>>), n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = Encoder::new(&mut out);
    e.map(n).unwrap();
    fields(&mut e);
    out
}

fn image_file(version: Version, agent: &[u8], key: &ReleaseKey) -> Vec<u8> {
    let r = key.release(version, agent, 0);
    mcuboot::write(
        &SignedManifest {
            manifest: r.manifest,
            key_id: r.key_id,
            signature: r.signature,
        },
        &r.image,
    )
    .unwrap()
}

fn hash_of(file: &[u8]) -> Vec<u8> {
    mcuboot::parse(file).unwrap().2.to_vec()
}

fn flag(image: &V, name: &str) -> bool {
    image.get(name) == Some(&V::Bool(true))
}

#[test]
fn an_agent_is_uploaded_tested_reset_and_confirmed_over_smp() {
    let factory = release(v(1), alarm(), 0);
    let mut line = Line::new(device_with(&factory));

    let (echo, _) = line.call(
        0,
        0,
        true,
        &map(
            |e| {
                e.str("d").unwrap().str("hello").unwrap();
            },
            1,
        ),
    );
    assert_eq!(echo, V::M(vec![("r".into(), V::S("hello".into()))]));
    let (params, _) = line.call(0, 6, false, &map(|_| {}, 0));
    assert_eq!(params.get("buf_size"), Some(&V::U(BUFFER_SIZE as u64)));
    let (unknown, _) = line.call(9, 1, false, &map(|_| {}, 0));
    assert_eq!(
        unknown,
        V::M(vec![("rc".into(), V::U(u64::from(rc::NOT_SUPPORTED)))])
    );

    // The factory agent: slot 0, active and confirmed, its hash the one its image file has.
    let images = line.state();
    assert_eq!(images.len(), 1, "{images:?}");
    assert!(flag(&images[0], "active") && flag(&images[0], "confirmed"));
    let factory_file = image_file(v(1), alarm(), &release_key());
    assert_eq!(images[0].get("hash"), Some(&V::B(hash_of(&factory_file))));

    // 2.0.0 uploaded; its first chunk of 87 bytes is shorter than the image header.
    let two = image_file(Version::new(2, 0, 0), &alarm_variant(2), &release_key());
    let done = line.upload(&two, 87, 400);
    assert_eq!(done.get("match"), Some(&V::Bool(true)), "{done:?}");
    // The last chunk sent again (its answer lost on the line): answered as it was, not
    // refused for want of an upload.
    let last = two.len() - 100;
    let repeated = map(
        |e| {
            e.str("off").unwrap().u64(last as u64).unwrap();
            e.str("data").unwrap().bytes(&two[last..]).unwrap();
        },
        2,
    );
    let (again, _) = line.call(1, 1, true, &repeated);
    assert_eq!(again.get("off"), Some(&V::U(two.len() as u64)), "{again:?}");
    assert_eq!(again.get("match"), Some(&V::Bool(true)), "{again:?}");
    let images = line.state();
    assert_eq!(images[1].get("version"), Some(&V::S("2.0.0".into())));
    assert!(!flag(&images[1], "pending"));

    // Test it, reset: it runs on trial, not confirmed; slot 1 holds the one before.
    let (tested, _) = line.call(
        1,
        0,
        true,
        &map(
            |e| {
                e.str("hash").unwrap().bytes(&hash_of(&two)).unwrap();
            },
            1,
        ),
    );
    assert!(flag(
        &tested
            .get("images")
            .map(|i| match i {
                V::A(a) => a[1].clone(),
                _ => unreachable!(),
            })
            .unwrap(),
        "pending"
    ));
    assert_eq!(line.reset(), ResetOutcome::OnTrial(Version::new(2, 0, 0)));
    let images = line.state();
    assert_eq!(images[0].get("version"), Some(&V::S("2.0.0".into())));
    assert!(flag(&images[0], "active") && !flag(&images[0], "confirmed"));
    assert_eq!(images[1].get("version"), Some(&V::S("1.0.1".into())));

    // Confirmed: it stays across resets.
    line.call(
        1,
        0,
        true,
        &map(
            |e| {
                e.str("confirm").unwrap().bool(true).unwrap();
            },
            1,
        ),
    );
    assert!(flag(&line.state()[0], "confirmed"));
    assert_eq!(line.reset(), ResetOutcome::Booted);
    assert_eq!(
        running(line.device.as_mut().unwrap()),
        Version::new(2, 0, 0)
    );

    // 3.0.0 tested, then a reset before confirming, then another: back on 2.0.0.
    let three = image_file(Version::new(3, 0, 0), &alarm_variant(3), &release_key());
    assert_eq!(
        line.upload(&three, 87, 512).get("match"),
        Some(&V::Bool(true))
    );
    line.call(
        1,
        0,
        true,
        &map(
            |e| {
                e.str("hash").unwrap().bytes(&hash_of(&three)).unwrap();
            },
            1,
        ),
    );
    assert_eq!(line.reset(), ResetOutcome::OnTrial(Version::new(3, 0, 0)));
    assert_eq!(line.reset(), ResetOutcome::Booted);
    assert_eq!(
        running(line.device.as_mut().unwrap()),
        Version::new(2, 0, 0)
    );

    // A failing self-test reverts on its own at the reset.
    let bad = image_file(Version::new(4, 0, 0), broken(), &release_key());
    assert_eq!(
        line.upload(&bad, 87, 512).get("match"),
        Some(&V::Bool(true))
    );
    line.call(
        1,
        0,
        true,
        &map(
            |e| {
                e.str("hash").unwrap().bytes(&hash_of(&bad)).unwrap();
            },
            1,
        ),
    );
    assert!(matches!(line.reset(), ResetOutcome::Reverted { .. }));
    assert_eq!(
        running(line.device.as_mut().unwrap()),
        Version::new(2, 0, 0)
    );
}

#[test]
fn an_upload_resumes_from_the_devices_offset_and_bad_images_are_refused() {
    let factory = release(v(1), alarm(), 0);
    let mut line = Line::new(device_with(&factory));
    let two = image_file(Version::new(2, 0, 0), &alarm_variant(2), &release_key());
    let sha: [u8; 32] =
        sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&two)).into();
    // The first 600 bytes, then a chunk at the wrong offset: answered with the expected one.
    let first = map(
        |e| {
            e.str("off").unwrap().u8(0).unwrap();
            e.str("data").unwrap().bytes(&two[..600]).unwrap();
            e.str("len").unwrap().u64(two.len() as u64).unwrap();
            e.str("sha").unwrap().bytes(&sha).unwrap();
        },
        4,
    );
    assert_eq!(line.call(1, 1, true, &first).0.get("off"), Some(&V::U(600)));
    let wrong = map(
        |e| {
            e.str("off").unwrap().u64(1000).unwrap();
            e.str("data").unwrap().bytes(&two[1000..1100]).unwrap();
        },
        2,
    );
    assert_eq!(line.call(1, 1, true, &wrong).0.get("off"), Some(&V::U(600)));
    // A client starting over with the same image is told where to carry on.
    let again = map(
        |e| {
            e.str("off").unwrap().u8(0).unwrap();
            e.str("data").unwrap().bytes(&two[..100]).unwrap();
            e.str("len").unwrap().u64(two.len() as u64).unwrap();
            e.str("sha").unwrap().bytes(&sha).unwrap();
        },
        4,
    );
    assert_eq!(line.call(1, 1, true, &again).0.get("off"), Some(&V::U(600)));

    // A byte of the body changed: the trailer's hash does not match, nothing is kept.
    let mut tampered = two.clone();
    tampered[400] ^= 0x40;
    let answer = line.upload(&tampered, 87, 512);
    assert!(answer.get("rc").is_some(), "{answer:?}");
    assert_eq!(line.state().len(), 1, "nothing staged");
    // Signed by a key the device does not trust: refused once the header is whole.
    let stranger = image_file(
        Version::new(2, 0, 0),
        &alarm_variant(2),
        &ReleaseKey::from_seed([9; 32]),
    );
    let answer = line.upload(&stranger, 87, 512);
    assert!(answer.get("rc").is_some(), "{answer:?}");
    match answer.get("rsn") {
        Some(V::S(reason)) => assert!(reason.contains("key"), "{reason}"),
        other => panic!("no reason: {other:?}"),
    }
    // A downgrade is refused the same way.
    let old = image_file(Version::new(0, 9, 0), &alarm_variant(1), &release_key());
    assert!(line.upload(&old, 87, 512).get("rc").is_some());
    assert_eq!(running(line.device.as_mut().unwrap()), v(1));
}

// An upload's header is read before its signature is checked, so its size may be anything:
// a size near 4 GiB used to overflow the addition of the header and trailer sizes (a panic in
// a debug build, a wrapped length in a release one). It is refused, and the device runs on.
#[test]
fn an_unsigned_header_announcing_a_huge_size_is_refused_without_overflow() {
    let factory = release(v(1), alarm(), 0);
    let mut line = Line::new(device_with(&factory));
    let r = release_key().release(Version::new(2, 0, 0), &alarm_variant(2), 0);
    let mut manifest = r.manifest;
    manifest.size = u32::MAX - 8;
    let header = mcuboot::header(&SignedManifest {
        manifest,
        key_id: r.key_id,
        signature: [0; 64],
    })
    .unwrap();
    let first = map(
        |e| {
            e.str("off").unwrap().u8(0).unwrap();
            e.str("data").unwrap().bytes(&header).unwrap();
            e.str("image").unwrap().u8(0).unwrap();
            e.str("len").unwrap().u64(4096).unwrap();
        },
        4,
    );
    let (answer, _) = line.call(1, 1, true, &first);
    match answer.get("rsn") {
        Some(V::S(reason)) => assert!(reason.contains("no image file that large"), "{reason}"),
        other => panic!("not refused: {answer:?} {other:?}"),
    }
    assert_eq!(line.state().len(), 1, "nothing staged");
    assert_eq!(running(line.device.as_mut().unwrap()), v(1));
}
