//! The health policy's decisions, each stored with the inputs it was shown (wave statistics,
//! and the health samples deflated), so a verdict can be read back, or replayed, as it was made.

use std::io::Read;

use hotswap_protocol::{Decision, HealthSample, UnixSeconds};
use rusqlite::params;
use rusqlite::types::ValueRef;
use serde::Serialize;

use crate::{Store, StoreError, decode_json};

impl Store {
    /// The newest `limit` decisions of a deployment, oldest first.
    pub fn decisions(
        &self,
        id: i64,
        limit: usize,
        with_samples: bool,
    ) -> Result<Vec<Decision>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT id, wave, policy, config, stats, CASE WHEN ?3 THEN samples END, verdict, at FROM decisions WHERE deployment_id = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![id, limit as i64, with_samples], |r| {
            Ok(Decision {
                id: r.get(0)?,
                wave: r.get(1)?,
                policy: r.get(2)?,
                config: r.get(3)?,
                stats: decode_json(4, &r.get::<_, String>(4)?)?,
                samples: samples_from(r.get_ref(5)?)?,
                verdict: decode_json(6, &r.get::<_, String>(6)?)?,
                at: UnixSeconds(r.get(7)?),
            })
        })?;
        let mut decisions: Vec<Decision> = rows.collect::<Result<_, _>>()?;
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
fn samples_from(stored: ValueRef<'_>) -> rusqlite::Result<Option<Vec<HealthSample>>> {
    let unreadable = |kind, e: Box<dyn std::error::Error + Send + Sync>| {
        rusqlite::Error::FromSqlConversionFailure(5, kind, e)
    };
    let text = match stored {
        ValueRef::Null => return Ok(None),
        ValueRef::Blob(deflated) => {
            let mut text = Vec::new();
            flate2::read::DeflateDecoder::new(deflated)
                .read_to_end(&mut text)
                .map_err(|e| unreadable(rusqlite::types::Type::Blob, Box::new(e)))?;
            text
        }
        text => text.as_bytes()?.to_vec(),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| unreadable(rusqlite::types::Type::Text, Box::new(e)))
}

/// JSON text for the decision log.
pub(crate) fn json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("decision inputs serialize")
}
