//! The health policy's decisions, each stored with the inputs it was shown (wave statistics,
//! and the health samples deflated), so a verdict can be read back, or replayed, as it was made.

use std::io::Read;

use hotswap_protocol::{Decision, HealthSample, UnixSeconds};
use serde::Serialize;

use crate::db::{Value, params};
use crate::{Store, StoreError, decode_json};

impl Store {
    /// The newest `limit` decisions of a deployment, oldest first.
    pub fn decisions(
        &self,
        id: i64,
        limit: usize,
        with_samples: bool,
    ) -> Result<Vec<Decision>, StoreError> {
        let mut decisions = self.reader()?.query_map(
            "SELECT id, wave, policy, config, stats, CASE WHEN ?3 = 1 THEN samples END, verdict, at FROM decisions WHERE deployment_id = ?1 ORDER BY id DESC LIMIT ?2",
            params![id, limit as i64, with_samples],
            |r| {
            Ok(Decision {
                id: r.get(0)?,
                wave: r.get(1)?,
                policy: r.get(2)?,
                config: r.get(3)?,
                stats: decode_json(4, &r.get::<String>(4)?)?,
                samples: samples_from(r.value(5)?)?,
                verdict: decode_json(6, &r.get::<String>(6)?)?,
                at: UnixSeconds(r.get(7)?),
            })
            },
        )?;
        decisions.reverse();
        Ok(decisions)
    }
}

/// A decision's health samples as stored: their JSON, deflated (a wave of 100,000 devices has
/// ~11 MB of it per decision, ~40 times less deflated, as the samples differ in little but the
/// device). Rows stored before hold the JSON text itself; [`Store::decisions`] reads both.
pub(crate) fn deflated_json<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    serde_json::to_writer(&mut encoder, value).expect("decision samples serialize");
    encoder.finish().expect("deflating into memory cannot fail")
}

/// A decision's samples as [`deflated_json`] stored them, or as JSON text (rows stored before
/// samples were deflated); `None` when they were not asked for.
fn samples_from(stored: Value<'_>) -> Result<Option<Vec<HealthSample>>, StoreError> {
    let unreadable =
        |e: &dyn std::fmt::Display| StoreError::Corrupt(format!("decision samples: {e}"));
    let text = match stored {
        Value::Null => return Ok(None),
        Value::Blob(deflated) => {
            let mut text = Vec::new();
            flate2::read::DeflateDecoder::new(deflated)
                .read_to_end(&mut text)
                .map_err(|e| unreadable(&e))?;
            text
        }
        Value::Text(text) => text.as_bytes().to_vec(),
        other => return Err(unreadable(&format!("{other:?} is neither text nor bytes"))),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| unreadable(&e))
}

/// JSON text for the decision log.
pub(crate) fn json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("decision inputs serialize")
}
