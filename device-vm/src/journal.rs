//! The state journal: which slot is active and whether it is confirmed or on trial.
//!
//! Two erase sectors hold fixed-size records, each with a sequence number and a CRC-32; the valid
//! record with the highest sequence number is the state. A change of state appends one record,
//! a single small write, so a power cut leaves either the old state (a torn record fails its CRC
//! and is ignored) or the new one. When a sector fills, the other is erased and the next record
//! starts it; the full sector keeps the newest state until then. No word is written twice
//! without an erase in between.

use crate::image::CRC32;
use crate::layout::Slot;

/// Bytes of one record; a multiple of every supported flash write size.
pub const RECORD_SIZE: u32 = 32;
const MAGIC: [u8; 2] = *b"SJ";

/// What a record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// `active` runs and is confirmed good.
    Confirmed { active: Slot },
    /// `active` runs on trial; a boot in this state goes back to `previous`.
    Trial { active: Slot, previous: Slot },
}

impl State {
    pub fn active(&self) -> Slot {
        match *self {
            State::Confirmed { active } | State::Trial { active, .. } => active,
        }
    }
}

/// One journal record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub sequence: u32,
    pub state: State,
    /// The anti-rollback counter; only a confirm raises it.
    pub security_counter: u32,
}

impl Record {
    pub fn encode(&self) -> [u8; RECORD_SIZE as usize] {
        let mut out = [0u8; RECORD_SIZE as usize];
        out[..2].copy_from_slice(&MAGIC);
        let (kind, active, previous) = match self.state {
            State::Confirmed { active } => (1, active, 0xff),
            State::Trial { active, previous } => (2, active, previous.index()),
        };
        out[2] = kind;
        out[3] = active.index();
        out[4] = previous;
        out[8..12].copy_from_slice(&self.sequence.to_le_bytes());
        out[12..16].copy_from_slice(&self.security_counter.to_le_bytes());
        let crc = CRC32.checksum(&out[..28]);
        out[28..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses a record; `None` for anything that is not a whole, valid record. Never panics.
    pub fn decode(bytes: &[u8; RECORD_SIZE as usize]) -> Option<Record> {
        if bytes[..2] != MAGIC {
            return None;
        }
        let crc = u32::from_le_bytes([bytes[28], bytes[29], bytes[30], bytes[31]]);
        if CRC32.checksum(&bytes[..28]) != crc {
            return None;
        }
        let active = Slot::from_index(bytes[3])?;
        let state = match bytes[2] {
            1 => State::Confirmed { active },
            2 => State::Trial {
                active,
                previous: Slot::from_index(bytes[4]).filter(|p| *p != active)?,
            },
            _ => return None,
        };
        Some(Record {
            sequence: u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
            state,
            security_counter: u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]),
        })
    }
}

/// Where the next record goes, found by scanning both sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The newest valid record, if any.
    pub newest: Option<Record>,
    /// The sector that holds it (0 when there is none).
    pub sector: u8,
    /// The offset in that sector after the last programmed record; equal to the sector size
    /// when the sector is full.
    pub next: u32,
}
