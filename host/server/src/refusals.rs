//! Credentials refused to anonymous callers, counted rather than written one by one: an
//! attacker sending bad tokens as fast as the network allows must not make the audit log grow
//! as fast. The first refusal of a source on a route in a minute is written at once (before the
//! answer, like every audit entry); the rest of that minute are counted and written as one entry
//! with their count when the minute is over ([`Refusals::due`], called by the server every
//! [`FLUSH_EVERY`]). What the log keeps of a source is then at most two entries a route and a
//! minute, whatever it sends.

use std::collections::HashMap;
use std::sync::Mutex;

use hotswap_store::NewAudit;

/// How often the server writes the counts of minutes that are over.
pub const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

/// The most sources (a client address and a route) counted at once; refusals from further
/// ones in the same minute are counted together, under no source.
pub const MAX_SOURCES_COUNTED: usize = 10_000;

/// What refusals are counted by: the client's address and what was refused.
type Key = (Option<String>, String);

/// The refusals of one source in one minute, beyond its first.
struct Tally {
    minute: i64,
    more: u32,
    /// The latest of them, as the entry that stands for all.
    latest: Option<NewAudit>,
}

/// The refusals counted, by source.
#[derive(Default)]
pub struct Refusals {
    sources: Mutex<HashMap<Key, Tally>>,
    /// Counts of minutes over, replaced by a source's next minute before a flush wrote them.
    carried: Mutex<Vec<NewAudit>>,
}

impl Refusals {
    /// A refusal at `at` (Unix seconds): the entry to write now, if it is its source's first
    /// this minute; otherwise it is counted and `None`.
    pub fn refused(&self, at: i64, entry: NewAudit) -> Option<NewAudit> {
        let minute = at.div_euclid(60);
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        let key = (entry.source.clone(), entry.action.clone());
        let key = if sources.len() < MAX_SOURCES_COUNTED || sources.contains_key(&key) {
            key
        } else {
            (None, String::new())
        };
        match sources.get_mut(&key) {
            Some(t) if t.minute == minute => {
                t.more = t.more.saturating_add(1);
                t.latest = Some(NewAudit {
                    source: key.0.clone(),
                    ..entry
                });
                None
            }
            _ => {
                // A new minute: what the old one counted is written by the next flush.
                let old = sources.insert(
                    key,
                    Tally {
                        minute,
                        more: 0,
                        latest: None,
                    },
                );
                if let Some(old) = old.and_then(Tally::entry) {
                    self.pending(old);
                }
                Some(entry)
            }
        }
    }

    /// The entries of the minutes over by `at` (all of them when `at` is `None`: the server
    /// stops), each with its count; they are forgotten here.
    pub fn due(&self, at: Option<i64>) -> Vec<NewAudit> {
        let minute = at.map(|s| s.div_euclid(60));
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        let mut due = Vec::new();
        sources.retain(|_, t| {
            if minute.is_some_and(|m| t.minute >= m) {
                return true;
            }
            due.extend(
                std::mem::replace(
                    t,
                    Tally {
                        minute: 0,
                        more: 0,
                        latest: None,
                    },
                )
                .entry(),
            );
            false
        });
        drop(sources);
        due.extend(
            self.carried
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain(..),
        );
        due
    }

    fn pending(&self, entry: NewAudit) {
        self.carried
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(entry);
    }
}

impl Tally {
    fn entry(self) -> Option<NewAudit> {
        let latest = self.latest?;
        Some(NewAudit {
            count: self.more,
            ..latest
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(source: &str, path: &str) -> NewAudit {
        NewAudit {
            actor: "anonymous".into(),
            token_id: None,
            source: Some(source.into()),
            action: "credential refused: GET /api/v1/devices".into(),
            object: Some(path.into()),
            status: 401,
            count: 1,
        }
    }

    #[test]
    fn a_source_leaves_one_entry_a_minute_and_one_count() {
        let r = Refusals::default();
        assert!(r.refused(600, refusal("10.0.0.1", "/a")).is_some());
        for i in 0..999 {
            assert!(r.refused(601 + i % 50, refusal("10.0.0.1", "/b")).is_none());
        }
        // Another source is its own first.
        assert!(r.refused(610, refusal("10.0.0.2", "/c")).is_some());
        assert!(r.due(Some(650)).is_empty(), "the minute is not over");
        let due = r.due(Some(660));
        assert_eq!(due.len(), 1, "{due:?}");
        assert_eq!((due[0].count, due[0].object.as_deref()), (999, Some("/b")));
        assert!(r.due(Some(720)).is_empty(), "written once");
    }

    #[test]
    fn a_new_minute_before_the_flush_keeps_the_old_count() {
        let r = Refusals::default();
        r.refused(0, refusal("s", "/"));
        r.refused(1, refusal("s", "/"));
        r.refused(2, refusal("s", "/"));
        assert!(
            r.refused(61, refusal("s", "/")).is_some(),
            "first of its minute"
        );
        let due = r.due(None);
        assert_eq!(due.iter().map(|e| e.count).collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn sources_beyond_the_bound_are_counted_together() {
        let r = Refusals::default();
        for i in 0..MAX_SOURCES_COUNTED + 500 {
            r.refused(0, refusal(&format!("10.{i}"), "/"));
        }
        assert_eq!(r.sources.lock().unwrap().len(), MAX_SOURCES_COUNTED + 1);
    }
}
