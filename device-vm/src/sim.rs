//! Simulated NOR flash, in memory, that enforces NOR rules and injects faults.
//!
//! Rules, each a panic because breaking one is a bug in the code under test: reads, writes and
//! erases aligned to `READ_SIZE`/`WRITE_SIZE`/`ERASE_SIZE` and inside the flash; a word written
//! only once between erases; a write only onto erased (0xFF) bytes.
//!
//! Faults, each an error the code under test must survive: power cut before the k-th write or
//! erase; power cut after k bytes programmed or erased (a torn write, a half-erased sector);
//! failed writes in a range; flipped bits. After a power cut every operation fails until
//! [`SimFlash::power_cycle`], as on a device that lost power.

use std::ops::Range;

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

/// What a simulated operation can fail with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimError {
    /// The power went; nothing works until the device is power-cycled.
    PowerCut,
    /// A write the fault plan made fail; the flash itself is unchanged.
    WriteFailed,
}

impl NorFlashError for SimError {
    fn kind(&self) -> NorFlashErrorKind {
        NorFlashErrorKind::Other
    }
}

/// Faults to inject; the counts are of operations and bytes since the flash was made.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Cut power instead of performing this write or erase (0 is the first).
    pub cut_before_op: Option<u64>,
    /// Cut power once this many bytes have been programmed or erased: the operation in progress
    /// is torn.
    pub cut_after_bytes: Option<u64>,
    /// Writes touching this range fail.
    pub fail_writes: Option<Range<u32>>,
}

/// In-memory NOR flash with `W`-byte words and `E`-byte erase sectors.
#[derive(Debug, Clone)]
pub struct SimFlash<const W: usize = 4, const E: usize = 1024> {
    data: Vec<u8>,
    /// Words written since their last erase.
    written: Vec<bool>,
    pub faults: Faults,
    ops: u64,
    bytes: u64,
    dead: bool,
}

impl<const W: usize, const E: usize> SimFlash<W, E> {
    /// An erased flash of `capacity` bytes (a whole number of sectors).
    pub fn new(capacity: usize) -> Self {
        assert!(
            capacity.is_multiple_of(E) && E.is_multiple_of(W),
            "capacity must be whole sectors of whole words"
        );
        SimFlash {
            data: vec![0xff; capacity],
            written: vec![false; capacity / W],
            faults: Faults::default(),
            ops: 0,
            bytes: 0,
            dead: false,
        }
    }

    /// A flash holding `data` (a whole number of sectors), as a file kept it: a word that is
    /// not all `0xff` counts as written.
    pub fn from_contents(data: Vec<u8>) -> Self {
        let mut flash = SimFlash::new(data.len());
        flash.written = data
            .chunks(W)
            .map(|word| word.iter().any(|&b| b != 0xff))
            .collect();
        flash.data = data;
        flash
    }

    /// Writes and erases performed or attempted so far.
    pub fn ops(&self) -> u64 {
        self.ops
    }

    /// Bytes programmed or erased so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Power comes back: operations work again and the power-cut faults are cleared.
    pub fn power_cycle(&mut self) {
        self.dead = false;
        self.faults.cut_before_op = None;
        self.faults.cut_after_bytes = None;
    }

    /// Flips one bit, as a worn cell or a cosmic ray would.
    pub fn flip_bit(&mut self, offset: usize, bit: u8) {
        self.data[offset] ^= 1 << bit;
    }

    /// The raw contents.
    pub fn contents(&self) -> &[u8] {
        &self.data
    }

    /// Counts the operation; false when the power goes instead.
    fn begin_op(&mut self) -> bool {
        let op = self.ops;
        self.ops += 1;
        if self.faults.cut_before_op == Some(op) {
            self.dead = true;
        }
        !self.dead
    }

    /// How many bytes of an operation of `len` bytes happen before the power goes.
    fn byte_budget(&mut self, len: usize) -> usize {
        let Some(limit) = self.faults.cut_after_bytes else {
            self.bytes += len as u64;
            return len;
        };
        let left = limit.saturating_sub(self.bytes) as usize;
        let done = left.min(len);
        self.bytes += done as u64;
        if done < len || self.bytes >= limit {
            self.dead = true;
        }
        done
    }
}

impl<const W: usize, const E: usize> ErrorType for SimFlash<W, E> {
    type Error = SimError;
}

impl<const W: usize, const E: usize> ReadNorFlash for SimFlash<W, E> {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), SimError> {
        let start = offset as usize;
        assert!(
            start + bytes.len() <= self.data.len(),
            "read of {} bytes at {offset} is outside the flash",
            bytes.len()
        );
        if self.dead {
            return Err(SimError::PowerCut);
        }
        bytes.copy_from_slice(&self.data[start..start + bytes.len()]);
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.data.len()
    }
}

impl<const W: usize, const E: usize> NorFlash for SimFlash<W, E> {
    const WRITE_SIZE: usize = W;
    const ERASE_SIZE: usize = E;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), SimError> {
        let (from, to) = (from as usize, to as usize);
        assert!(
            from.is_multiple_of(E) && to.is_multiple_of(E) && from <= to,
            "misaligned erase {from}..{to}"
        );
        assert!(
            to <= self.data.len(),
            "erase {from}..{to} is outside the flash"
        );
        if !self.begin_op() {
            return Err(SimError::PowerCut);
        }
        let done = self.byte_budget(to - from);
        self.data[from..from + done].fill(0xff);
        // A word counts as erased only once all of it is.
        self.written[from / W..(from + done) / W].fill(false);
        if done < to - from || self.dead {
            return Err(SimError::PowerCut);
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), SimError> {
        let start = offset as usize;
        assert!(
            start.is_multiple_of(W) && bytes.len().is_multiple_of(W),
            "misaligned write of {} bytes at {offset}",
            bytes.len()
        );
        assert!(
            start + bytes.len() <= self.data.len(),
            "write of {} bytes at {offset} is outside the flash",
            bytes.len()
        );
        if !self.begin_op() {
            return Err(SimError::PowerCut);
        }
        if let Some(range) = &self.faults.fail_writes
            && (offset as u64) < u64::from(range.end)
            && (start + bytes.len()) as u64 > u64::from(range.start)
        {
            return Err(SimError::WriteFailed);
        }
        for word in start / W..(start + bytes.len()) / W {
            assert!(
                !self.written[word],
                "word at {} written twice without an erase",
                word * W
            );
            let at = word * W;
            assert!(
                self.data[at..at + W].iter().all(|&b| b == 0xff),
                "write to unerased word at {at}"
            );
        }
        let done = self.byte_budget(bytes.len());
        self.data[start..start + done].copy_from_slice(&bytes[..done]);
        self.written[start / W..(start + done).div_ceil(W)].fill(true);
        if done < bytes.len() || self.dead {
            return Err(SimError::PowerCut);
        }
        Ok(())
    }
}

/// NOR flash kept in a file, so a device's state survives its process: every write and erase
/// goes to the file before it returns, and killing the process is a power cut between two
/// operations (the NOR rules of [`SimFlash`] still hold).
pub struct FileFlash {
    flash: SimFlash,
    file: std::fs::File,
}

impl FileFlash {
    /// The flash in `path`; a new file of `capacity` erased bytes when there is none. Whether
    /// it was made now (a device from the factory).
    pub fn open(path: &std::path::Path, capacity: usize) -> std::io::Result<(FileFlash, bool)> {
        use std::io::{Error, ErrorKind};
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let len = file.metadata()?.len();
        let created = len == 0;
        let data = if created {
            let data = vec![0xff; capacity];
            std::io::Write::write_all(&mut file, &data)?;
            file.sync_all()?;
            data
        } else if len == capacity as u64 {
            std::fs::read(path)?
        } else {
            return Err(Error::new(
                ErrorKind::InvalidData,
                format!(
                    "{} holds {len} bytes, not a flash of {capacity}: another device's, or not a flash file",
                    path.display()
                ),
            ));
        };
        Ok((
            FileFlash {
                flash: SimFlash::from_contents(data),
                file,
            },
            created,
        ))
    }

    fn mirror(&mut self, from: usize, to: usize) -> Result<(), SimError> {
        use std::os::unix::fs::FileExt;
        self.file
            .write_all_at(&self.flash.contents()[from..to], from as u64)
            .map_err(|_| SimError::WriteFailed)
    }
}

impl ErrorType for FileFlash {
    type Error = SimError;
}

impl ReadNorFlash for FileFlash {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), SimError> {
        self.flash.read(offset, bytes)
    }

    fn capacity(&self) -> usize {
        self.flash.capacity()
    }
}

impl NorFlash for FileFlash {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = 1024;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), SimError> {
        self.flash.erase(from, to)?;
        self.mirror(from as usize, to as usize)
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), SimError> {
        self.flash.write(offset, bytes)?;
        self.mirror(offset as usize, offset as usize + bytes.len())
    }
}
