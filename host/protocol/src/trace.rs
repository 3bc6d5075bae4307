//! W3C trace context (`traceparent`) as the device protocol carries it: a deployment is one
//! trace, an assignment carries the context of its wave, and a device sends it back with its
//! reports so that what the device did becomes spans of that trace.
//!
//! The spans of a deployment (the deployment itself, each wave) are recorded when they end,
//! possibly by a server restarted since they began, so their ids cannot be remembered: they are
//! derived from the trace id and what the span is ([`TraceParent::child`]). The same deployment
//! and wave give the same span id on every server.

use std::fmt;
use std::str::FromStr;

/// A W3C `traceparent`: version `00`, a 16-byte trace id, an 8-byte parent span id and the
/// flags, as `00-<32 hex>-<16 hex>-<2 hex>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// Bit 0: sampled.
    pub flags: u8,
}

/// Why a `traceparent` was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadTraceParent(pub String);

impl fmt::Display for BadTraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "traceparent {:?}: expected 00-<32 hex digits>-<16 hex digits>-<2 hex digits>, with ids not all zero",
            self.0
        )
    }
}

impl std::error::Error for BadTraceParent {}

impl TraceParent {
    /// Whether the trace is sampled (bit 0 of the flags).
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The context of the span `what` (`deployment`, `wave`) number `n` of this trace: the same
    /// trace and flags, and a span id derived from the trace id, `what` and `n` alone.
    pub fn child(&self, what: &str, n: u64) -> TraceParent {
        let mut input = Vec::with_capacity(16 + what.len() + 8);
        input.extend_from_slice(&self.trace_id);
        input.extend_from_slice(what.as_bytes());
        input.extend_from_slice(&n.to_le_bytes());
        let mut id = xxhash_rust::xxh3::xxh3_64(&input);
        // An all-zero span id is invalid; one in 2^64, but never emitted.
        if id == 0 {
            id = 1;
        }
        TraceParent {
            trace_id: self.trace_id,
            span_id: id.to_be_bytes(),
            flags: self.flags,
        }
    }

    /// The context of a deployment's own span, child of the request that started it.
    pub fn deployment(&self) -> TraceParent {
        self.child("deployment", 0)
    }

    /// The context of wave `index` (0-based) of the deployment whose trace this is.
    pub fn wave(&self, index: u32) -> TraceParent {
        self.child("wave", u64::from(index))
    }

    /// The context of the deployment's rollback, the parent of the devices sent back.
    pub fn rollback(&self) -> TraceParent {
        self.child("rollback", 0)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-")?;
        for b in self.trace_id {
            write!(f, "{b:02x}")?;
        }
        write!(f, "-")?;
        for b in self.span_id {
            write!(f, "{b:02x}")?;
        }
        write!(f, "-{:02x}", self.flags)
    }
}

impl FromStr for TraceParent {
    type Err = BadTraceParent;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadTraceParent(s.chars().take(80).collect());
        let parts: Vec<&str> = s.trim().split('-').collect();
        let [version, trace, span, flags] = parts[..] else {
            return Err(bad());
        };
        let hex = |text: &str, out: &mut [u8]| -> Option<()> {
            if text.len() != out.len() * 2 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            for (i, o) in out.iter_mut().enumerate() {
                *o = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
            }
            Some(())
        };
        let mut v = [0u8; 1];
        let mut parsed = TraceParent {
            trace_id: [0; 16],
            span_id: [0; 8],
            flags: 0,
        };
        let mut f = [0u8; 1];
        hex(version, &mut v).ok_or_else(bad)?;
        hex(trace, &mut parsed.trace_id).ok_or_else(bad)?;
        hex(span, &mut parsed.span_id).ok_or_else(bad)?;
        hex(flags, &mut f).ok_or_else(bad)?;
        parsed.flags = f[0];
        // Version ff is invalid; ids of all zeros are invalid.
        if v[0] == 0xff || parsed.trace_id == [0; 16] || parsed.span_id == [0; 8] {
            return Err(bad());
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_reads_and_writes_as_the_w3c_example() {
        let t: TraceParent = EXAMPLE.parse().unwrap();
        assert!(t.sampled());
        assert_eq!(t.span_id, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        assert_eq!(t.to_string(), EXAMPLE);
    }

    #[test]
    fn a_bad_traceparent_is_refused_with_what_was_expected() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            let e = bad.parse::<TraceParent>().unwrap_err();
            assert!(e.to_string().contains("expected 00-<32 hex digits>"), "{e}");
        }
    }

    #[test]
    fn derived_spans_are_the_same_on_every_server_and_differ_by_wave() {
        let t: TraceParent = EXAMPLE.parse().unwrap();
        assert_eq!(t.wave(2), t.wave(2));
        assert_ne!(t.wave(1).span_id, t.wave(2).span_id);
        assert_ne!(t.deployment().span_id, t.wave(0).span_id);
        assert_eq!(t.wave(1).trace_id, t.trace_id);
        let other: TraceParent = "00-5bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap();
        assert_ne!(t.wave(0).span_id, other.wave(0).span_id);
    }
}
