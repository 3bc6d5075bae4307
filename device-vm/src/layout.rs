//! Where things sit in flash: two sectors of state journal, then slot A, then slot B.
//!
//! ```text
//! | journal sector 0 | journal sector 1 | slot A: header, image ... | slot B: header, image ... |
//! ```
//!
//! Each slot starts with a [`crate::image::HEADER_SIZE`]-byte header, written last, followed by
//! the agent image. Slot sizes are whole erase sectors.

use core::fmt;

/// One of the two agent slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    pub(crate) fn index(self) -> u8 {
        match self {
            Slot::A => 0,
            Slot::B => 1,
        }
    }

    pub(crate) fn from_index(i: u8) -> Option<Slot> {
        match i {
            0 => Some(Slot::A),
            1 => Some(Slot::B),
            _ => None,
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Slot::A => "A",
            Slot::B => "B",
        })
    }
}

/// The default slot size of the original design: 14 KiB.
pub const DEFAULT_SLOT_SIZE: u32 = 14 * 1024;

/// Offsets and sizes of the journal and the slots in one flash device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The flash's erase sector size.
    pub sector: u32,
    /// The size of each slot, header included: a whole number of sectors.
    pub slot_size: u32,
}

/// A layout that does not fit the flash it is meant for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("slot size {slot_size} is not a whole number of {sector}-byte erase sectors")]
    SlotNotSectorAligned { slot_size: u32, sector: u32 },
    #[error("a {sector}-byte sector cannot hold two journal records of {record} bytes")]
    SectorTooSmall { sector: u32, record: u32 },
    #[error("the layout needs {needed} bytes of flash, the flash has {capacity}")]
    FlashTooSmall { needed: u32, capacity: u32 },
    #[error(
        "flash write size {write} is larger than {max} bytes, which this layout does not support"
    )]
    WriteSizeTooLarge { write: u32, max: u32 },
}

impl Layout {
    /// A layout for a flash with `sector`-byte erase sectors and `slot_size`-byte slots.
    pub fn new(
        sector: u32,
        slot_size: u32,
        write_size: u32,
        capacity: u32,
    ) -> Result<Layout, LayoutError> {
        if write_size > crate::journal::RECORD_SIZE {
            return Err(LayoutError::WriteSizeTooLarge {
                write: write_size,
                max: crate::journal::RECORD_SIZE,
            });
        }
        if slot_size == 0 || !slot_size.is_multiple_of(sector) {
            return Err(LayoutError::SlotNotSectorAligned { slot_size, sector });
        }
        if sector < 2 * crate::journal::RECORD_SIZE {
            return Err(LayoutError::SectorTooSmall {
                sector,
                record: crate::journal::RECORD_SIZE,
            });
        }
        let layout = Layout { sector, slot_size };
        if layout.end() > capacity {
            return Err(LayoutError::FlashTooSmall {
                needed: layout.end(),
                capacity,
            });
        }
        Ok(layout)
    }

    /// Where journal sector 0 or 1 starts.
    pub fn journal_sector(&self, i: u8) -> u32 {
        u32::from(i) * self.sector
    }

    /// Where a slot starts.
    pub fn slot_start(&self, slot: Slot) -> u32 {
        2 * self.sector + u32::from(slot.index()) * self.slot_size
    }

    /// The largest image a slot holds.
    pub fn max_image(&self) -> u32 {
        self.slot_size - crate::image::HEADER_SIZE as u32
    }

    /// The flash the layout uses.
    pub fn end(&self) -> u32 {
        2 * self.sector + 2 * self.slot_size
    }
}
