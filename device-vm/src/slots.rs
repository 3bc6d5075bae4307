//! Slots and journal over any NOR flash: reads, aligned writes, erases, and full verification.

use alloc::vec::Vec;

use ed25519_dalek::{Signature, VerifyingKey};
use embedded_storage::nor_flash::{NorFlash, NorFlashError, NorFlashErrorKind};
use sha2::{Digest, Sha256};

use crate::image::{CRC32, HEADER_SIZE, HeaderError, KeyId, SlotHeader};
use crate::journal::{Cursor, RECORD_SIZE, Record};
use crate::layout::{Layout, Slot};

/// A public key the device accepts releases from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedKey {
    pub id: KeyId,
    pub key: VerifyingKey,
}

impl TrustedKey {
    pub fn new(key: VerifyingKey) -> TrustedKey {
        TrustedKey {
            id: KeyId::of(key.as_bytes()),
            key,
        }
    }
}

/// Why a slot does not hold a valid, verified agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    #[error("flash error: {0:?}")]
    Flash(NorFlashErrorKind),
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error("image of {size} bytes does not fit the slot's {max} bytes")]
    TooLarge { size: u32, max: u32 },
    #[error("image CRC-32 is {computed:#010x}, the header says {expected:#010x}")]
    Crc { expected: u32, computed: u32 },
    #[error("image SHA-256 does not match the signed manifest")]
    Hash,
    #[error("manifest signed by key {0}, which the device does not trust")]
    UnknownKey(KeyId),
    #[error("manifest signature does not verify against trusted key {0}")]
    BadSignature(KeyId),
}

pub(crate) fn flash_error<E: NorFlashError>(e: E) -> SlotError {
    SlotError::Flash(e.kind())
}

/// Verifies a manifest's signature against the trusted keys.
pub fn verify_signature(
    keys: &[TrustedKey],
    manifest: &crate::Manifest,
    key_id: KeyId,
    signature: &[u8; 64],
) -> Result<(), SlotError> {
    let key = keys
        .iter()
        .find(|k| k.id == key_id)
        .ok_or(SlotError::UnknownKey(key_id))?;
    key.key
        .verify_strict(&manifest.signing_bytes(), &Signature::from_bytes(signature))
        .map_err(|_| SlotError::BadSignature(key_id))
}

/// The two slots and the journal of one flash device.
pub struct SlotStore<F> {
    pub(crate) flash: F,
    pub(crate) layout: Layout,
}

/// Reads go through a buffer of this many bytes.
const CHUNK: usize = 512;

impl<F: NorFlash> SlotStore<F> {
    pub fn new(flash: F, layout: Layout) -> Self {
        SlotStore { flash, layout }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Gives the flash back (to power-cycle a simulated device, say).
    pub fn into_flash(self) -> F {
        self.flash
    }

    pub fn flash(&self) -> &F {
        &self.flash
    }

    pub fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), SlotError> {
        self.flash.read(offset, buf).map_err(flash_error)
    }

    pub fn read_header(&mut self, slot: Slot) -> Result<SlotHeader, SlotError> {
        let mut buf = [0u8; HEADER_SIZE];
        self.read(self.layout.slot_start(slot), &mut buf)?;
        Ok(SlotHeader::decode(&buf)?)
    }

    /// Checks a slot end to end: header, size, CRC-32, SHA-256 and signature.
    pub fn verify(&mut self, slot: Slot, keys: &[TrustedKey]) -> Result<SlotHeader, SlotError> {
        let header = self.read_header(slot)?;
        let size = header.manifest.size;
        let max = self.layout.max_image();
        if size > max {
            return Err(SlotError::TooLarge { size, max });
        }
        let (crc, sha) = self.digest(slot, size)?;
        if crc != header.crc32 {
            return Err(SlotError::Crc {
                expected: header.crc32,
                computed: crc,
            });
        }
        if sha != header.manifest.sha256 {
            return Err(SlotError::Hash);
        }
        verify_signature(keys, &header.manifest, header.key_id, &header.signature)?;
        Ok(header)
    }

    /// CRC-32 and SHA-256 of the first `size` image bytes of a slot, read back from flash.
    pub fn digest(&mut self, slot: Slot, size: u32) -> Result<(u32, [u8; 32]), SlotError> {
        let mut crc = CRC32.digest();
        let mut sha = Sha256::new();
        let start = self.layout.slot_start(slot) + HEADER_SIZE as u32;
        let mut buf = [0u8; CHUNK];
        let mut done = 0;
        while done < size {
            let n = (size - done).min(CHUNK as u32) as usize;
            self.read(start + done, &mut buf[..n])?;
            crc.update(&buf[..n]);
            sha.update(&buf[..n]);
            done += n as u32;
        }
        Ok((crc.finalize(), sha.finalize().into()))
    }

    /// The image bytes of a verified slot.
    pub fn read_image(&mut self, slot: Slot, header: &SlotHeader) -> Result<Vec<u8>, SlotError> {
        let mut image = alloc::vec![0u8; header.manifest.size as usize];
        self.read(
            self.layout.slot_start(slot) + HEADER_SIZE as u32,
            &mut image,
        )?;
        Ok(image)
    }

    /// Erases a slot sector by sector, header sector first, so a cut erase never leaves a header
    /// over a half-erased image.
    pub fn erase_slot(&mut self, slot: Slot) -> Result<(), SlotError> {
        let start = self.layout.slot_start(slot);
        let sector = self.layout.sector;
        for s in 0..self.layout.slot_size / sector {
            let from = start + s * sector;
            self.flash.erase(from, from + sector).map_err(flash_error)?;
        }
        Ok(())
    }

    pub fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), SlotError> {
        self.flash.write(offset, bytes).map_err(flash_error)
    }

    /// Finds the newest valid record and where the next one goes.
    pub fn scan_journal(&mut self) -> Result<Cursor, SlotError> {
        let mut newest: Option<(Record, u8)> = None;
        let mut ends = [0u32; 2];
        let mut buf = [0u8; RECORD_SIZE as usize];
        for sector in 0..2u8 {
            let base = self.layout.journal_sector(sector);
            let mut at = 0;
            while at + RECORD_SIZE <= self.layout.sector {
                self.read(base + at, &mut buf)?;
                if buf.iter().any(|&b| b != 0xff) {
                    // Anything programmed, valid or torn, moves the end past it.
                    ends[sector as usize] = at + RECORD_SIZE;
                    if let Some(r) = Record::decode(&buf)
                        && newest.is_none_or(|(n, _)| r.sequence > n.sequence)
                    {
                        newest = Some((r, sector));
                    }
                }
                at += RECORD_SIZE;
            }
        }
        Ok(match newest {
            Some((record, sector)) => Cursor {
                newest: Some(record),
                sector,
                next: ends[sector as usize],
            },
            None => Cursor {
                newest: None,
                sector: 0,
                next: ends[0],
            },
        })
    }

    /// Appends a record after `cursor`, switching sectors when the current one is full.
    pub fn append(&mut self, cursor: Cursor, record: Record) -> Result<Cursor, SlotError> {
        let (sector, at) = if cursor.next + RECORD_SIZE <= self.layout.sector {
            (cursor.sector, cursor.next)
        } else {
            let other = 1 - cursor.sector;
            let base = self.layout.journal_sector(other);
            self.flash
                .erase(base, base + self.layout.sector)
                .map_err(flash_error)?;
            (other, 0)
        };
        self.write(self.layout.journal_sector(sector) + at, &record.encode())?;
        Ok(Cursor {
            newest: Some(record),
            sector,
            next: at + RECORD_SIZE,
        })
    }
}
