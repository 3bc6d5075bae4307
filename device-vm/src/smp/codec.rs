//! The client's side of SMP's CBOR: the bodies of the requests a manager sends (image state,
//! upload, echo, and the empty body of a reset or a read) and the answers it reads back ([`Value`], [`SlotImage`],
//! [`UploadAnswer`], [`Refusal`]). Written once, beside the [`server`](super::server) that
//! answers them, for every manager: the push tool over a serial line and the device's own gRPC
//! and check-in paths that hand their requests to the same loop.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use minicbor::data::Type;
use minicbor::{Decoder, Encoder};

/// A CBOR value, as answers are read.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
    Bool(bool),
    Array(Vec<Value>),
    Map(Vec<(String, Value)>),
    Other,
}

impl Value {
    /// A map's field.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// A map's integer field.
    pub fn int(&self, key: &str) -> Option<i64> {
        match self.get(key) {
            Some(Value::Int(n)) => Some(*n),
            _ => None,
        }
    }

    /// Whether a map's field is `true`.
    pub fn flag(&self, key: &str) -> bool {
        self.get(key) == Some(&Value::Bool(true))
    }

    /// A map's text field; empty when absent.
    pub fn text(&self, key: &str) -> String {
        match self.get(key) {
            Some(Value::Text(t)) => t.clone(),
            _ => String::new(),
        }
    }

    /// A map's byte-string field.
    pub fn bytes(&self, key: &str) -> Option<&[u8]> {
        match self.get(key) {
            Some(Value::Bytes(b)) => Some(b),
            _ => None,
        }
    }
}

/// An answer's CBOR body, read.
pub fn decode(body: &[u8]) -> Result<Value, minicbor::decode::Error> {
    read_value(&mut Decoder::new(body))
}

fn read_value(d: &mut Decoder<'_>) -> Result<Value, minicbor::decode::Error> {
    Ok(match d.datatype()? {
        Type::U8
        | Type::U16
        | Type::U32
        | Type::U64
        | Type::I8
        | Type::I16
        | Type::I32
        | Type::I64
        | Type::Int => Value::Int(d.i64()?),
        Type::String => Value::Text(d.str()?.to_string()),
        Type::Bytes => Value::Bytes(d.bytes()?.to_vec()),
        Type::Bool => Value::Bool(d.bool()?),
        Type::Array => {
            let n = d.array()?.unwrap_or(0);
            Value::Array((0..n).map(|_| read_value(d)).collect::<Result<_, _>>()?)
        }
        Type::Map => {
            let n = d.map()?.unwrap_or(0);
            let mut fields = Vec::new();
            for _ in 0..n {
                let k = d.str()?.to_string();
                fields.push((k, read_value(d)?));
            }
            Value::Map(fields)
        }
        _ => {
            d.skip()?;
            Value::Other
        }
    })
}

/// A device's refusal: the return code an answer carried and its reason, when it gave one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub rc: i64,
    pub reason: String,
}

impl Refusal {
    /// The refusal an answer carries, if it carries one (a return code other than 0).
    pub fn of(answer: &Value) -> Option<Refusal> {
        let rc = answer.int("rc").filter(|rc| *rc != 0)?;
        let reason = match answer.get("rsn") {
            Some(Value::Text(t)) => t.clone(),
            _ => alloc::format!("rc {rc}"),
        };
        Some(Refusal { rc, reason })
    }
}

type EncodeResult = Result<(), minicbor::encode::Error<core::convert::Infallible>>;

/// A CBOR map of `n` entries that `fields` writes: a request's body.
fn map(fields: impl FnOnce(&mut Encoder<&mut Vec<u8>>) -> EncodeResult, n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = Encoder::new(&mut out);
    // Writing into a `Vec` cannot fail.
    let _ = e.map(n).map(drop);
    let _ = fields(&mut e);
    out
}

/// The body of a request that takes no field: image state, reset, parameters.
pub fn empty() -> Vec<u8> {
    map(|_| Ok(()), 0)
}

/// An echo of `text`.
pub fn echo(text: &str) -> Vec<u8> {
    map(|e| e.str("d")?.str(text).map(drop), 1)
}

/// An image state write: with a hash, test that agent at the next reset, kept once it passes
/// when `confirm`; without, confirm the agent on trial (when `confirm`).
pub fn image_state(hash: Option<&[u8]>, confirm: bool) -> Vec<u8> {
    match hash {
        Some(hash) => map(
            |e| {
                e.str("hash")?
                    .bytes(hash)?
                    .str("confirm")?
                    .bool(confirm)
                    .map(drop)
            },
            2,
        ),
        None => map(|e| e.str("confirm")?.bool(confirm).map(drop), 1),
    }
}

/// One chunk of an image file at `offset`; the first (`offset` 0) also names the file's
/// `length` and its `sha256`, so the device can start the upload or resume it.
pub fn upload(offset: u64, data: &[u8], length: u64, sha256: &[u8]) -> Vec<u8> {
    if offset == 0 {
        map(
            |e| {
                e.str("image")?.u8(0)?;
                e.str("len")?.u64(length)?;
                e.str("off")?.u64(0)?;
                e.str("sha")?.bytes(sha256)?;
                e.str("data")?.bytes(data).map(drop)
            },
            5,
        )
    } else {
        map(
            |e| {
                e.str("off")?
                    .u64(offset)?
                    .str("data")?
                    .bytes(data)
                    .map(drop)
            },
            2,
        )
    }
}

/// One slot, as an image state answer gives it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotImage {
    pub slot: u32,
    pub version: String,
    /// The SHA-256 of the image file the slot holds.
    pub hash: Vec<u8>,
    pub pending: bool,
    pub confirmed: bool,
    pub active: bool,
    pub permanent: bool,
}

/// The slots an image state answer lists; `None` when it lists none.
pub fn images(answer: &Value) -> Option<Vec<SlotImage>> {
    let Some(Value::Array(images)) = answer.get("images") else {
        return None;
    };
    Some(
        images
            .iter()
            .map(|i| SlotImage {
                slot: i
                    .int("slot")
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or(0),
                version: i.text("version"),
                hash: i.bytes("hash").map(<[u8]>::to_vec).unwrap_or_default(),
                pending: i.flag("pending"),
                confirmed: i.flag("confirmed"),
                active: i.flag("active"),
                permanent: i.flag("permanent"),
            })
            .collect(),
    )
}

/// What an upload request's answer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadAnswer {
    /// Where the next chunk goes (the device's own offset after a resumed or repeated chunk).
    pub next_offset: u64,
    /// Set on the last chunk: whether the image is the one announced and passed every check.
    pub matched: Option<bool>,
}

impl UploadAnswer {
    /// The answer read; `None` when it carries no offset.
    pub fn of(answer: &Value) -> Option<UploadAnswer> {
        let next = answer.int("off").and_then(|n| u64::try_from(n).ok())?;
        Some(UploadAnswer {
            next_offset: next,
            matched: match answer.get("match") {
                Some(Value::Bool(m)) => Some(*m),
                _ => None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_body_reads_back_as_the_value_it_was_written_from() {
        let body = upload(0, b"abc", 3, &[7; 32]);
        let v = decode(&body).unwrap();
        assert_eq!(v.int("len"), Some(3));
        assert_eq!(v.int("off"), Some(0));
        assert_eq!(v.bytes("sha"), Some(&[7u8; 32][..]));
        assert_eq!(v.bytes("data"), Some(&b"abc"[..]));
        let v = decode(&upload(512, b"x", 0, &[])).unwrap();
        assert_eq!(
            v,
            Value::Map(alloc::vec![
                ("off".into(), Value::Int(512)),
                ("data".into(), Value::Bytes(b"x".to_vec())),
            ])
        );
        let v = decode(&image_state(Some(&[1, 2]), true)).unwrap();
        assert!(v.flag("confirm"));
        assert_eq!(v.bytes("hash"), Some(&[1u8, 2][..]));
        assert_eq!(decode(&empty()).unwrap(), Value::Map(Vec::new()));
    }

    #[test]
    fn a_refusal_is_read_with_its_reason_and_an_answer_without_one_is_not() {
        let answer = Value::Map(alloc::vec![
            ("rc".into(), Value::Int(3)),
            ("rsn".into(), Value::Text("bad signature".into())),
        ]);
        assert_eq!(
            Refusal::of(&answer),
            Some(Refusal {
                rc: 3,
                reason: "bad signature".into()
            })
        );
        let bare = Value::Map(alloc::vec![("rc".into(), Value::Int(6))]);
        assert_eq!(Refusal::of(&bare).map(|r| r.reason), Some("rc 6".into()));
        assert_eq!(
            Refusal::of(&Value::Map(alloc::vec![("rc".into(), Value::Int(0))])),
            None
        );
        assert_eq!(UploadAnswer::of(&Value::Map(Vec::new())), None);
    }
}
