//! The health policy's decisions, each stored with the inputs it was shown (wave statistics,
//! and the health samples deflated), so a verdict can be read back, or replayed, as it was made.

use std::io::Read;

use hotswap_protocol::{Decision, HealthSample, UnixSeconds};
use serde::Serialize;

use crate::db::{Value, params};
use crate::{Store, StoreError, decode_json};

/// The most bytes of health samples (as JSON) one page of decisions holds: a decision of a
/// wave of 100,000 devices carries ~11 MB. The newest decisions come first; older ones past it
/// are left out of the page (ask for them with `samples=false`, or a smaller `limit`).
pub const DECISIONS_SAMPLES_MAX_BYTES: usize = 32 << 20;

/// A decision's samples as read (`None` when not asked for), and their bytes of JSON.
type SamplesRead = (Option<Vec<HealthSample>>, usize);

/// A decision's samples as read, not yet inflated.
enum Stored {
    None,
    Deflated(Vec<u8>),
    Text(String),
}

impl Store {
    /// The newest `limit` decisions of a deployment, oldest first; with samples, as many of
    /// the newest as [`DECISIONS_SAMPLES_MAX_BYTES`] of samples allow (at least one).
    pub fn decisions(
        &self,
        id: i64,
        limit: usize,
        with_samples: bool,
    ) -> Result<Vec<Decision>, StoreError> {
        let rows = self.reader()?.query_map(
            "SELECT id, wave, policy, config, stats, CASE WHEN ?3 = 1 THEN samples END, verdict, at FROM decisions WHERE deployment_id = ?1 ORDER BY id DESC LIMIT ?2",
            params![id, limit as i64, with_samples],
            |r| {
                let stored = match r.value(5)? {
                    Value::Null => Stored::None,
                    Value::Blob(b) => Stored::Deflated(b.to_vec()),
                    Value::Text(t) => Stored::Text(t.to_string()),
                    other => {
                        return Err(StoreError::Corrupt(format!(
                            "decision samples: {other:?} is neither text nor bytes"
                        )));
                    }
                };
                Ok((
                    Decision {
                        id: r.get(0)?,
                        wave: r.get(1)?,
                        policy: r.get(2)?,
                        config: r.get(3)?,
                        stats: decode_json(4, &r.get::<String>(4)?)?,
                        samples: None,
                        verdict: decode_json(6, &r.get::<String>(6)?)?,
                        at: UnixSeconds(r.get(7)?),
                    },
                    stored,
                ))
            },
        )?;
        let mut decisions = Vec::with_capacity(rows.len());
        let mut budget = DECISIONS_SAMPLES_MAX_BYTES;
        for (mut decision, stored) in rows {
            // The newest decision comes whole whatever its size; the older ones while they fit.
            let allowance = if decisions.is_empty() {
                usize::MAX
            } else {
                budget
            };
            let Some((samples, used)) = samples_from(stored, allowance)? else {
                break;
            };
            budget = budget.saturating_sub(used);
            decision.samples = samples;
            decisions.push(decision);
        }
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
/// samples were deflated), and how many bytes of JSON they are; `Some((None, 0))` when they were
/// not asked for, and `None` when they hold more than `allowance` bytes.
fn samples_from(stored: Stored, allowance: usize) -> Result<Option<SamplesRead>, StoreError> {
    let unreadable =
        |e: &dyn std::fmt::Display| StoreError::Corrupt(format!("decision samples: {e}"));
    let text = match stored {
        Stored::None => return Ok(Some((None, 0))),
        Stored::Deflated(deflated) => {
            let mut text = Vec::new();
            flate2::read::DeflateDecoder::new(deflated.as_slice())
                .take(
                    u64::try_from(allowance)
                        .unwrap_or(u64::MAX)
                        .saturating_add(1),
                )
                .read_to_end(&mut text)
                .map_err(|e| unreadable(&e))?;
            text
        }
        Stored::Text(text) => text.into_bytes(),
    };
    if text.len() > allowance {
        return Ok(None);
    }
    let samples = serde_json::from_slice(&text).map_err(|e| unreadable(&e))?;
    Ok(Some((Some(samples), text.len())))
}

/// JSON text for the decision log.
pub(crate) fn json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("decision inputs serialize")
}
