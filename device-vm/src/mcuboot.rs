//! Agents as MCUboot image files, so the tools that upload MCUboot images (`smpmgr`, `mcumgr`,
//! mcumgr-web) take a HotSwap agent as they take any firmware:
//!
//! - the MCUboot image header (little-endian: magic [`IMAGE_MAGIC`], header size
//!   [`IMAGE_HEADER_SIZE`], image size, version);
//! - HotSwap's signed manifest inside the header area, after MCUboot's 32 bytes: the version,
//!   size, SHA-256 and security counter the release key signed, the key's id and the signature;
//! - the WebAssembly module as the body;
//! - a TLV trailer with the SHA-256 of the header and body (type [`TLV_SHA256`]), which MCUmgr
//!   clients read as the image's hash.
//!
//! Everything is a function of the release, so the device can rebuild the header of the agent
//! it runs and report the same hash a client computed from the file.

use alloc::vec::Vec;

use sha2::{Digest, Sha256};

use crate::image::{KeyId, Manifest, Version};

/// MCUboot's image magic.
pub const IMAGE_MAGIC: u32 = 0x96f3_b83d;
/// The header area: MCUboot's header, then HotSwap's manifest, then zeros.
pub const IMAGE_HEADER_SIZE: usize = 256;
/// The unprotected TLV area's magic.
pub const TLV_INFO_MAGIC: u16 = 0x6907;
/// The TLV of the SHA-256 of the header and body.
pub const TLV_SHA256: u16 = 0x10;
/// The bytes after the body: the TLV info header and the SHA-256 record.
pub const TRAILER_SIZE: usize = 4 + 4 + 32;
/// Where HotSwap's manifest starts in the header area.
const MANIFEST_AT: usize = 32;
const MANIFEST_TAG: [u8; 4] = *b"HSMF";

/// A release as the device checks it: the manifest and its signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedManifest {
    pub manifest: Manifest,
    pub key_id: KeyId,
    pub signature: [u8; 64],
}

/// Why bytes are not a HotSwap agent as an MCUboot image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageFileError {
    Short {
        need: usize,
        have: usize,
    },
    Magic(u32),
    HeaderSize(u16),
    /// No HotSwap manifest in the header area: an MCUboot image of some other firmware.
    NoManifest,
    /// MCUboot's version and the manifest's differ.
    Version {
        header: Version,
        manifest: Version,
    },
    /// The header's image size and the manifest's differ.
    Size {
        header: u32,
        manifest: u32,
    },
    /// A version MCUboot's header cannot hold (major and minor are one byte each).
    VersionTooLarge(Version),
    TlvMagic(u16),
    NoHash,
    /// The SHA-256 record does not match the header and body.
    Hash,
    /// The body's SHA-256 is not the manifest's.
    BodyHash,
}

impl core::fmt::Display for ImageFileError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        use ImageFileError::*;
        match self {
            Short { need, have } => write!(f, "an image file of {have} bytes; it needs {need}"),
            Magic(m) => write!(
                f,
                "not an MCUboot image: magic {m:#010x}, expected {IMAGE_MAGIC:#010x}"
            ),
            HeaderSize(s) => write!(
                f,
                "an MCUboot header of {s} bytes; HotSwap's are {IMAGE_HEADER_SIZE}"
            ),
            NoManifest => {
                f.write_str("an MCUboot image without a HotSwap manifest (not a HotSwap agent)")
            }
            Version { header, manifest } => write!(
                f,
                "the MCUboot header says version {header}, the manifest {manifest}"
            ),
            Size { header, manifest } => write!(
                f,
                "the MCUboot header says {header} bytes, the manifest {manifest}"
            ),
            VersionTooLarge(v) => write!(
                f,
                "version {v} does not fit an MCUboot header (major and minor at most 255)"
            ),
            TlvMagic(m) => write!(
                f,
                "the image's TLV area starts with {m:#06x}, expected {TLV_INFO_MAGIC:#06x}"
            ),
            NoHash => f.write_str("the image has no SHA-256 TLV"),
            Hash => f.write_str("the image's SHA-256 TLV does not match its header and body"),
            BodyHash => f.write_str("the image's body is not the one its manifest signs"),
        }
    }
}

/// The header area of the agent `signed` describes.
pub fn header(signed: &SignedManifest) -> Result<[u8; IMAGE_HEADER_SIZE], ImageFileError> {
    let m = &signed.manifest;
    let v = m.version;
    let (Ok(major), Ok(minor)) = (u8::try_from(v.major), u8::try_from(v.minor)) else {
        return Err(ImageFileError::VersionTooLarge(v));
    };
    let mut h = [0u8; IMAGE_HEADER_SIZE];
    h[0..4].copy_from_slice(&IMAGE_MAGIC.to_le_bytes());
    // load_addr (4 bytes) stays 0: the image is not executed in place.
    h[8..10].copy_from_slice(&(IMAGE_HEADER_SIZE as u16).to_le_bytes());
    // protect_tlv_size (2 bytes) stays 0.
    h[12..16].copy_from_slice(&m.size.to_le_bytes());
    // flags (4 bytes) stay 0.
    h[20] = major;
    h[21] = minor;
    h[22..24].copy_from_slice(&v.patch.to_le_bytes());
    // build number and padding stay 0.
    let mut at = MANIFEST_AT;
    let mut put = |bytes: &[u8]| {
        h[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    put(&MANIFEST_TAG);
    put(&v.major.to_le_bytes());
    put(&v.minor.to_le_bytes());
    put(&v.patch.to_le_bytes());
    put(&m.size.to_le_bytes());
    put(&m.sha256);
    put(&m.security_counter.to_le_bytes());
    put(&signed.key_id.0);
    put(&signed.signature);
    Ok(h)
}

/// The hash MCUmgr clients show for the image: SHA-256 of the header area and the body.
pub fn image_hash(header: &[u8; IMAGE_HEADER_SIZE], body: &[u8]) -> [u8; 32] {
    let mut sha = Sha256::new();
    sha.update(header);
    sha.update(body);
    sha.finalize().into()
}

/// The whole image file of `body` signed as `signed`.
pub fn write(signed: &SignedManifest, body: &[u8]) -> Result<Vec<u8>, ImageFileError> {
    let h = header(signed)?;
    let mut out = Vec::with_capacity(IMAGE_HEADER_SIZE + body.len() + TRAILER_SIZE);
    out.extend_from_slice(&h);
    out.extend_from_slice(body);
    out.extend_from_slice(&trailer(&image_hash(&h, body)));
    Ok(out)
}

/// The TLV trailer carrying `hash`.
pub fn trailer(hash: &[u8; 32]) -> [u8; TRAILER_SIZE] {
    let mut t = [0u8; TRAILER_SIZE];
    t[0..2].copy_from_slice(&TLV_INFO_MAGIC.to_le_bytes());
    t[2..4].copy_from_slice(&(TRAILER_SIZE as u16).to_le_bytes());
    t[4..6].copy_from_slice(&TLV_SHA256.to_le_bytes());
    t[6..8].copy_from_slice(&32u16.to_le_bytes());
    t[8..].copy_from_slice(hash);
    t
}

/// The manifest of a header area and the body size it announces; checks the magic, the header
/// size and that MCUboot's fields agree with the manifest.
pub fn parse_header(h: &[u8]) -> Result<SignedManifest, ImageFileError> {
    let h: &[u8; IMAGE_HEADER_SIZE] = h
        .get(..IMAGE_HEADER_SIZE)
        .and_then(|s| s.try_into().ok())
        .ok_or(ImageFileError::Short {
            need: IMAGE_HEADER_SIZE,
            have: h.len(),
        })?;
    let u16_at = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    let magic = u32_at(0);
    if magic != IMAGE_MAGIC {
        return Err(ImageFileError::Magic(magic));
    }
    let header_size = u16_at(8);
    if usize::from(header_size) != IMAGE_HEADER_SIZE {
        return Err(ImageFileError::HeaderSize(header_size));
    }
    if h[MANIFEST_AT..MANIFEST_AT + 4] != MANIFEST_TAG {
        return Err(ImageFileError::NoManifest);
    }
    let m = MANIFEST_AT + 4;
    let version = Version {
        major: u16_at(m),
        minor: u16_at(m + 2),
        patch: u16_at(m + 4),
    };
    let size = u32_at(m + 6);
    let mut sha256 = [0u8; 32];
    sha256.copy_from_slice(&h[m + 10..m + 42]);
    let security_counter = u32_at(m + 42);
    let mut key_id = [0u8; 8];
    key_id.copy_from_slice(&h[m + 46..m + 54]);
    let mut signature = [0u8; 64];
    signature.copy_from_slice(&h[m + 54..m + 118]);
    let header_version = Version {
        major: u16::from(h[20]),
        minor: u16::from(h[21]),
        patch: u16_at(22),
    };
    if header_version != version {
        return Err(ImageFileError::Version {
            header: header_version,
            manifest: version,
        });
    }
    if u32_at(12) != size {
        return Err(ImageFileError::Size {
            header: u32_at(12),
            manifest: size,
        });
    }
    Ok(SignedManifest {
        manifest: Manifest {
            version,
            size,
            sha256,
            security_counter,
        },
        key_id: KeyId(key_id),
        signature,
    })
}

/// Checks a TLV trailer against the hash of the header and body it follows.
pub fn check_trailer(trailer: &[u8], hash: &[u8; 32]) -> Result<(), ImageFileError> {
    let u16_at = |i: usize| {
        trailer
            .get(i..i + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let magic = u16_at(0).ok_or(ImageFileError::NoHash)?;
    if magic != TLV_INFO_MAGIC {
        return Err(ImageFileError::TlvMagic(magic));
    }
    let total = usize::from(u16_at(2).ok_or(ImageFileError::NoHash)?).min(trailer.len());
    let mut at = 4;
    while at + 4 <= total {
        let (kind, len) = (
            u16_at(at).unwrap_or(0),
            usize::from(u16_at(at + 2).unwrap_or(0)),
        );
        let value = trailer
            .get(at + 4..at + 4 + len)
            .ok_or(ImageFileError::NoHash)?;
        if kind == TLV_SHA256 {
            return if value == hash {
                Ok(())
            } else {
                Err(ImageFileError::Hash)
            };
        }
        at += 4 + len;
    }
    Err(ImageFileError::NoHash)
}

/// A whole image file: its signed manifest, body and hash, every field checked against the
/// others (the signature is the device's to check, against the keys it trusts).
pub fn parse(file: &[u8]) -> Result<(SignedManifest, &[u8], [u8; 32]), ImageFileError> {
    let signed = parse_header(file)?;
    let end = IMAGE_HEADER_SIZE + signed.manifest.size as usize;
    let need = end + TRAILER_SIZE;
    if file.len() < need {
        return Err(ImageFileError::Short {
            need,
            have: file.len(),
        });
    }
    let head: &[u8; IMAGE_HEADER_SIZE] = file[..IMAGE_HEADER_SIZE]
        .try_into()
        .map_err(|_| ImageFileError::NoManifest)?;
    let body = &file[IMAGE_HEADER_SIZE..end];
    let hash = image_hash(head, body);
    check_trailer(&file[end..], &hash)?;
    let body_sha: [u8; 32] = Sha256::digest(body).into();
    if body_sha != signed.manifest.sha256 {
        return Err(ImageFileError::BodyHash);
    }
    Ok((signed, body, hash))
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    fn release() -> (SignedManifest, Vec<u8>) {
        let key = crate::release::ReleaseKey::from_seed([7; 32]);
        let body: Vec<u8> = (0..14_336u32).map(|i| (i * 13 % 251) as u8).collect();
        let r = key.release(Version::parse("2.1.3").unwrap(), &body, 4);
        (
            SignedManifest {
                manifest: r.manifest,
                key_id: r.key_id,
                signature: r.signature,
            },
            r.image,
        )
    }

    #[test]
    fn an_image_file_reads_back_with_its_hash_and_a_changed_byte_is_refused() {
        let (signed, body) = release();
        let file = write(&signed, &body).unwrap();
        assert_eq!(file.len(), IMAGE_HEADER_SIZE + body.len() + TRAILER_SIZE);
        assert_eq!(
            &file[..4],
            &[0x3d, 0xb8, 0xf3, 0x96],
            "MCUboot's magic, little-endian"
        );
        let (back, back_body, hash) = parse(&file).unwrap();
        assert_eq!(back, signed);
        assert_eq!(back_body, body);
        assert_eq!(hash, image_hash(&header(&signed).unwrap(), &body));
        for at in [0, 8, 20, 40, 100, 300, file.len() - 1] {
            let mut bad = file.clone();
            bad[at] ^= 0x01;
            assert!(parse(&bad).is_err(), "a change at {at} was taken");
        }
        assert!(matches!(
            parse(&file[..file.len() - 1]),
            Err(ImageFileError::Short { .. })
        ));
    }

    #[test]
    fn a_version_mcuboot_cannot_hold_is_refused_by_name() {
        let (mut signed, body) = release();
        signed.manifest.version = Version::parse("300.0.0").unwrap();
        let err = write(&signed, &body).unwrap_err();
        assert_eq!(
            err,
            ImageFileError::VersionTooLarge(signed.manifest.version)
        );
        assert!(err.to_string().contains("300.0.0"), "{err}");
    }
}
