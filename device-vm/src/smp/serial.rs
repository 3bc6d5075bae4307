//! The SMP serial transport (MCUmgr's "SMP over console"): a message becomes one packet, its
//! big-endian length (the message and its CRC), the message, and a CRC-16/XMODEM of the message;
//! the packet is base64 text cut into lines of at most [`MAX_LINE`] bytes, the first started by
//! `0x06 0x09`, the others by `0x04 0x14`, each ended by a newline. Each line's text is cut at a
//! multiple of four characters, so each decodes on its own, as every client decodes it.
//!
//! Anything else on the line (a console's own output) is not SMP and is passed over.

use alloc::vec::Vec;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The longest line either side sends, marker and newline included (MCUmgr's limit).
pub const MAX_LINE: usize = 127;

/// Starts the first line of a packet.
pub const START: [u8; 2] = [0x06, 0x09];
/// Starts every other line of a packet.
pub const CONTINUE: [u8; 2] = [0x04, 0x14];

const CRC: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_XMODEM);

/// Why a packet that came was dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// A line's text is not base64.
    Base64,
    /// The first line carries fewer than the two bytes of the length.
    NoLength,
    /// The length is below the CRC's two bytes or above the largest packet taken.
    Length { said: usize, limit: usize },
    /// The lines carried more bytes than the length said.
    Overrun { said: usize, came: usize },
    /// The CRC does not match the message: a byte changed on the line.
    Crc { said: u16, computed: u16 },
    /// A line longer than any packet of the largest size needs.
    LineTooLong { limit: usize },
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FrameError::Base64 => f.write_str("an SMP line's text is not base64"),
            FrameError::NoLength => f.write_str("an SMP packet's first line carries no length"),
            FrameError::Length { said, limit } => {
                write!(f, "an SMP packet of {said} bytes; 2 to {limit} are taken")
            }
            FrameError::Overrun { said, came } => {
                write!(f, "an SMP packet said {said} bytes and {came} came")
            }
            FrameError::Crc { said, computed } => write!(
                f,
                "an SMP packet's CRC is {said:#06x}, its bytes give {computed:#06x}"
            ),
            FrameError::LineTooLong { limit } => {
                write!(f, "an SMP line over {limit} bytes")
            }
        }
    }
}

/// The lines that carry `message`, none over `max_line` bytes (at least 8).
pub fn encode(message: &[u8], max_line: usize) -> Vec<u8> {
    let mut packet = Vec::with_capacity(message.len() + 4);
    // The length counts the message and its CRC; an SMP message is far below 64 KiB.
    packet.extend_from_slice(&((message.len() + 2) as u16).to_be_bytes());
    packet.extend_from_slice(message);
    packet.extend_from_slice(&CRC.checksum(message).to_be_bytes());
    let text = STANDARD.encode(&packet);
    // Marker and newline take three bytes; the text is cut at a multiple of four characters.
    let per_line = (max_line.max(8) - 3) / 4 * 4;
    let mut lines = Vec::with_capacity(text.len() + text.len() / per_line * 3 + 3);
    for (i, chunk) in text.as_bytes().chunks(per_line).enumerate() {
        lines.extend_from_slice(if i == 0 { &START } else { &CONTINUE });
        lines.extend_from_slice(chunk);
        lines.push(b'\n');
    }
    lines
}

/// Reads SMP packets from the bytes of a line, one byte at a time, as a UART hands them over.
pub struct Decoder {
    line: Vec<u8>,
    /// The packet so far and the length its first line said.
    packet: Option<(usize, Vec<u8>)>,
    max_packet: usize,
    max_line: usize,
    /// The line being read is too long: it is passed over up to its newline.
    skipping: bool,
}

impl Decoder {
    /// A decoder of packets up to `max_packet` bytes (the message and its CRC).
    pub fn new(max_packet: usize) -> Decoder {
        Decoder {
            line: Vec::new(),
            packet: None,
            max_packet,
            // A client may send one packet on one long line: its base64, a marker, a newline.
            max_line: (max_packet + 2).div_ceil(3) * 4 + 4,
            skipping: false,
        }
    }

    /// The most bytes its buffers hold at once: a line and a packet, each at its limit.
    pub fn buffer_bytes(&self) -> usize {
        self.max_line + self.max_packet
    }

    /// Takes one byte; a message once its packet is whole, or why the packet was dropped.
    pub fn push(&mut self, byte: u8) -> Option<Result<Vec<u8>, FrameError>> {
        if byte != b'\n' {
            if self.skipping {
                return None;
            }
            if self.line.len() >= self.max_line {
                self.line.clear();
                self.packet = None;
                self.skipping = true;
                return Some(Err(FrameError::LineTooLong {
                    limit: self.max_line,
                }));
            }
            self.line.push(byte);
            return None;
        }
        if core::mem::take(&mut self.skipping) {
            return None;
        }
        let mut line = core::mem::take(&mut self.line);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let result = self.line_done(&line);
        // The buffer is kept for the next line, so a steady stream allocates nothing.
        line.clear();
        self.line = line;
        result
    }

    fn line_done(&mut self, line: &[u8]) -> Option<Result<Vec<u8>, FrameError>> {
        let (marker, text) = (line.get(..2)?, &line[2..]);
        let start = marker == START;
        if !start && (marker != CONTINUE || self.packet.is_none()) {
            return None;
        }
        let fail = |this: &mut Decoder, e| {
            this.packet = None;
            Some(Err(e))
        };
        let Ok(bytes) = STANDARD.decode(text) else {
            return fail(self, FrameError::Base64);
        };
        if start {
            let Some((length, rest)) = bytes.split_first_chunk::<2>() else {
                return fail(self, FrameError::NoLength);
            };
            let said = usize::from(u16::from_be_bytes(*length));
            if !(2..=self.max_packet).contains(&said) {
                return fail(
                    self,
                    FrameError::Length {
                        said,
                        limit: self.max_packet,
                    },
                );
            }
            let mut packet = Vec::with_capacity(said);
            packet.extend_from_slice(rest);
            self.packet = Some((said, packet));
        } else if let Some((_, packet)) = self.packet.as_mut() {
            packet.extend_from_slice(&bytes);
        }
        let (said, came) = self.packet.as_ref().map(|(s, p)| (*s, p.len()))?;
        if came < said {
            return None;
        }
        let (_, mut packet) = self.packet.take()?;
        if came > said {
            return Some(Err(FrameError::Overrun { said, came }));
        }
        let crc = packet.split_off(said - 2);
        let said_crc = u16::from_be_bytes([crc[0], crc[1]]);
        let computed = CRC.checksum(&packet);
        if said_crc != computed {
            return Some(Err(FrameError::Crc {
                said: said_crc,
                computed,
            }));
        }
        Some(Ok(packet))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(decoder: &mut Decoder, bytes: &[u8]) -> Vec<Result<Vec<u8>, FrameError>> {
        bytes.iter().filter_map(|b| decoder.push(*b)).collect()
    }

    #[test]
    fn packets_are_the_lines_the_python_smp_package_writes() {
        // `smp.packet.encode(b"Hello, world!")` and the same with `line_length=8`.
        assert_eq!(
            encode(b"Hello, world!", 8192),
            b"\x06\tAA9IZWxsbywgd29ybGQhet4=\n".to_vec()
        );
        let short = encode(b"Hello, world!", 8);
        assert_eq!(
            short,
            b"\x06\tAA9I\n\x04\x14ZWxs\n\x04\x14bywg\n\x04\x14d29y\n\x04\x14bGQh\n\x04\x14et4=\n"
                .to_vec()
        );
        let mut d = Decoder::new(1024);
        for lines in [encode(b"Hello, world!", 8192), short] {
            assert_eq!(
                decode_all(&mut d, &lines),
                vec![Ok(b"Hello, world!".to_vec())]
            );
        }
    }

    #[test]
    fn no_line_is_longer_than_the_limit_and_every_size_reads_back() {
        let mut d = Decoder::new(4096);
        for size in [0, 1, 2, 3, 87, 88, 89, 90, 91, 200, 1000, 4000] {
            let message: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
            let lines = encode(&message, MAX_LINE);
            assert!(
                lines.split(|b| *b == b'\n').all(|l| l.len() < MAX_LINE),
                "{size}"
            );
            assert_eq!(decode_all(&mut d, &lines), vec![Ok(message)], "{size}");
        }
    }

    #[test]
    fn a_changed_byte_is_caught_and_the_next_packet_still_reads() {
        let message = b"\x0a\x00\x00\x07\x00\x00\x01\x00\xa1adcHi!".to_vec();
        let lines = encode(&message, MAX_LINE);
        let mut d = Decoder::new(1024);
        // Every position of the base64 text, each letter changed for another base64 letter.
        for i in 2..lines.len() - 1 {
            let mut bad = lines.clone();
            bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
            let got = decode_all(&mut d, &bad);
            assert!(
                got.iter().all(|r| r.is_err()) || got.is_empty(),
                "position {i}: {got:?}"
            );
            assert_eq!(
                decode_all(&mut d, &lines),
                vec![Ok(message.clone())],
                "after {i}"
            );
        }
    }

    #[test]
    fn console_text_between_packets_is_passed_over() {
        let mut bytes = b"boot: hotswap device\r\n".to_vec();
        bytes.extend(encode(b"abc", MAX_LINE));
        bytes.extend_from_slice(b"\x04\x14stray continuation\n");
        let mut d = Decoder::new(64);
        assert_eq!(decode_all(&mut d, &bytes), vec![Ok(b"abc".to_vec())]);
        let too_big = encode(&[0; 100], 8192);
        let got = decode_all(&mut d, &too_big);
        assert!(
            matches!(got[..], [Err(FrameError::LineTooLong { .. })]),
            "{got:?}"
        );
        assert_eq!(
            decode_all(&mut d, &encode(b"abc", MAX_LINE)),
            vec![Ok(b"abc".to_vec())]
        );
    }
}
