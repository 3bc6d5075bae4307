//! The SMP header: `res:3 ver:2 op:3`, flags, a big-endian body length, a big-endian group,
//! a sequence number and a command id. An answer copies the request's version, group, sequence
//! and command id.

/// The header's size in bytes.
pub const HEADER_SIZE: usize = 8;

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    ReadResponse,
    Write,
    WriteResponse,
}

impl Op {
    fn code(self) -> u8 {
        match self {
            Op::Read => 0,
            Op::ReadResponse => 1,
            Op::Write => 2,
            Op::WriteResponse => 3,
        }
    }

    fn from_code(code: u8) -> Option<Op> {
        Some(match code {
            0 => Op::Read,
            1 => Op::ReadResponse,
            2 => Op::Write,
            3 => Op::WriteResponse,
            _ => return None,
        })
    }

    /// The answer's op to a request's.
    pub fn response(self) -> Op {
        match self {
            Op::Read | Op::ReadResponse => Op::ReadResponse,
            Op::Write | Op::WriteResponse => Op::WriteResponse,
        }
    }
}

/// The management groups a HotSwap device serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// OS: echo, reset, buffer parameters.
    Os,
    /// Image: state, upload, erase.
    Image,
    /// Any other; answered "not supported".
    Other(u16),
}

impl Group {
    pub fn id(self) -> u16 {
        match self {
            Group::Os => 0,
            Group::Image => 1,
            Group::Other(id) => id,
        }
    }

    pub fn from_id(id: u16) -> Group {
        match id {
            0 => Group::Os,
            1 => Group::Image,
            other => Group::Other(other),
        }
    }
}

/// A decoded header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub op: Op,
    /// 0: SMP v1 (errors as `rc`), 1: v2 (errors as `err: {group, rc}`).
    pub version: u8,
    pub flags: u8,
    /// The body's length in bytes.
    pub length: u16,
    pub group: Group,
    pub sequence: u8,
    pub command: u8,
}

/// Why bytes are not an SMP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer than [`HEADER_SIZE`] bytes.
    Short,
    /// An op code above 3.
    Op(u8),
    /// A version above 1.
    Version(u8),
    /// The length says a body other than the one that came.
    Length { said: u16, came: usize },
}

impl core::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HeaderError::Short => write!(f, "an SMP message is at least {HEADER_SIZE} bytes"),
            HeaderError::Op(op) => write!(f, "no SMP op {op}"),
            HeaderError::Version(v) => write!(f, "no SMP version {v} (0 or 1)"),
            HeaderError::Length { said, came } => {
                write!(f, "the SMP header says a body of {said} bytes, {came} came")
            }
        }
    }
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let [l0, l1] = self.length.to_be_bytes();
        let [g0, g1] = self.group.id().to_be_bytes();
        [
            ((self.version & 0b11) << 3) | self.op.code(),
            self.flags,
            l0,
            l1,
            g0,
            g1,
            self.sequence,
            self.command,
        ]
    }

    /// The header of `message` and its body; the length must be the body's.
    pub fn decode(message: &[u8]) -> Result<(Header, &[u8]), HeaderError> {
        let Some((head, body)) = message.split_first_chunk::<HEADER_SIZE>() else {
            return Err(HeaderError::Short);
        };
        let op = Op::from_code(head[0] & 0b111).ok_or(HeaderError::Op(head[0] & 0b111))?;
        let version = (head[0] >> 3) & 0b11;
        if version > 1 {
            return Err(HeaderError::Version(version));
        }
        let length = u16::from_be_bytes([head[2], head[3]]);
        if usize::from(length) != body.len() {
            return Err(HeaderError::Length {
                said: length,
                came: body.len(),
            });
        }
        Ok((
            Header {
                op,
                version,
                flags: head[1],
                length,
                group: Group::from_id(u16::from_be_bytes([head[4], head[5]])),
                sequence: head[6],
                command: head[7],
            },
            body,
        ))
    }

    /// A whole SMP v2 request: a read or a write (`write`) of `command` in `group`, with
    /// `body`, as a client sends it.
    pub fn request(
        write: bool,
        group: u16,
        sequence: u8,
        command: u8,
        body: &[u8],
    ) -> alloc::vec::Vec<u8> {
        let header = Header {
            op: if write { Op::Write } else { Op::Read },
            version: 1,
            flags: 0,
            // An SMP body is far below 64 KiB: the device's buffer bounds it.
            length: body.len() as u16,
            group: Group::from_id(group),
            sequence,
            command,
        };
        let mut message = alloc::vec::Vec::with_capacity(HEADER_SIZE + body.len());
        message.extend_from_slice(&header.encode());
        message.extend_from_slice(body);
        message
    }

    /// The header of the answer to this request, for a body of `length` bytes.
    pub fn answer(&self, length: u16) -> Header {
        Header {
            op: self.op.response(),
            flags: 0,
            length,
            ..*self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_reads_back_as_written_and_the_answer_copies_the_request() {
        // An echo request as the Python `smp` package writes it (v2, sequence 0x8c).
        let request = [0x0a, 0x00, 0x00, 0x07, 0x00, 0x00, 0x8c, 0x00];
        let body = [0xa1, 0x61, 0x64, 0x63, b'H', b'i', b'!'];
        let mut message = request.to_vec();
        message.extend_from_slice(&body);
        let (h, b) = Header::decode(&message).unwrap();
        assert_eq!(b, body);
        assert_eq!(
            (h.op, h.version, h.group, h.sequence),
            (Op::Write, 1, Group::Os, 0x8c)
        );
        assert_eq!(h.encode(), request);
        let answer = h.answer(7).encode();
        // The same answer header the package's own example decodes: 0b 00 00 07 00 00 8c 00.
        assert_eq!(answer, [0x0b, 0x00, 0x00, 0x07, 0x00, 0x00, 0x8c, 0x00]);
        assert_eq!(Header::decode(&message[..5]), Err(HeaderError::Short));
        assert_eq!(
            Header::decode(&message[..10]),
            Err(HeaderError::Length { said: 7, came: 2 })
        );
    }
}
