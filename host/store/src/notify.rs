//! What one replica tells the others. A device waits in a long poll on the replica it reached;
//! the assignment that ends its wait may be handed out by another (the one orchestrating its
//! deployment, or the one an operator asked to resume it). With PostgreSQL every replica
//! announces the devices it handed something to with `NOTIFY` on [`DOORBELL_CHANNEL`], after the
//! change is committed, and listens on it to wake its own waiting devices. Credentials work the
//! same way on [`CREDENTIALS_CHANNEL`]: a replica that revokes a token or changes a device's
//! credential or standing names what changed, and every other replica forgets what it cached of
//! it. SQLite has one server: nothing crosses.
//!
//! A notification is a wake-up call, never state: a device woken reads its assignment from the
//! database, and one not woken (a listener reconnecting) finds it at its next check-in. A
//! replica that may have missed notifications is told so ([`Heard::Deaf`] when its listener's
//! connection ends, [`Heard::Listening`] once it listens again), so it can stop trusting what it
//! cached meanwhile.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;

use crate::{Backend, Store};

/// The PostgreSQL channel the replicas announce devices on.
pub const DOORBELL_CHANNEL: &str = "hotswap_doorbell";

/// The PostgreSQL channel the replicas announce changed credentials on.
pub const CREDENTIALS_CHANNEL: &str = "hotswap_credentials";

/// The most bytes of device ids one notification carries (PostgreSQL takes up to 8000); more
/// devices are announced in several.
pub const MAX_NOTIFICATION_BYTES: usize = 7_000;

/// How long a listener waits before connecting again after its connection failed.
pub const RECONNECT_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// What a replica hears from the others, or of its own listening.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// These devices were handed something.
    Devices(Vec<String>),
    /// These credentials changed (keys as the announcing replica named them): what is cached of
    /// them is stale.
    Credentials(Vec<String>),
    /// The listener listens (again): announcements made while it did not were missed.
    Listening,
    /// The listener's connection ended: announcements go unheard until [`Heard::Listening`].
    Deaf,
}

/// Sends this replica's announcements, in the background, in the order given.
#[derive(Clone)]
pub struct Announcer {
    sent: mpsc::UnboundedSender<(&'static str, Vec<String>)>,
}

impl Announcer {
    /// Announces that `devices` were handed something (already committed).
    pub fn announce(&self, devices: Vec<String>) {
        self.send(DOORBELL_CHANNEL, devices);
    }

    /// Announces that the credentials `keys` changed (already committed).
    pub fn credentials_changed(&self, keys: Vec<String>) {
        self.send(CREDENTIALS_CHANNEL, keys);
    }

    fn send(&self, channel: &'static str, items: Vec<String>) {
        if !items.is_empty() {
            // The task ends only with the store; announcing after that has nobody to tell.
            let _ = self.sent.send((channel, items));
        }
    }
}

impl Store {
    /// The announcer other replicas hear this one through; `None` on SQLite.
    pub fn announcer(&self) -> Option<Announcer> {
        let Backend::Postgres(pg) = &self.backend else {
            return None;
        };
        let (sent, mut announced) = mpsc::unbounded_channel::<(&'static str, Vec<String>)>();
        let pool = pg.pool().clone();
        let me = self.replica.clone();
        pg.runtime().spawn(async move {
            while let Some((channel, batch)) = announced.recv().await {
                for payload in payloads(&me, &batch) {
                    let sent = async {
                        let client = pool.get().await.map_err(|e| e.to_string())?;
                        client
                            .execute("SELECT pg_notify($1, $2)", &[&channel, &payload])
                            .await
                            .map_err(|e| crate::db::message(&e))
                    };
                    if let Err(e) = sent.await {
                        tracing::warn!(channel, error = %e, "announcing to the other replicas failed; devices find their assignments at their next check-in, and a replica drops its cached credentials when its listener reconnects");
                    }
                }
            }
        });
        Some(Announcer { sent })
    }

    /// Calls `wake` with what the other replicas announce, until the store is dropped; nothing
    /// on SQLite.
    pub fn listen(&self, wake: impl Fn(Heard) + Send + Sync + 'static) {
        let Backend::Postgres(pg) = &self.backend else {
            return;
        };
        let me = self.replica.clone();
        let config = pg.config.clone();
        let wake = Arc::new(wake);
        pg.runtime()
            .spawn(listen(config, me, wake, pg.shown.clone()));
    }
}

/// Notification payloads: this replica's name, then device ids, one per line.
fn payloads(me: &str, devices: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut payload = String::new();
    for id in devices {
        if !payload.is_empty() && payload.len() + id.len() + 1 > MAX_NOTIFICATION_BYTES {
            out.push(std::mem::take(&mut payload));
        }
        if payload.is_empty() {
            payload.push_str(me);
        }
        payload.push('\n');
        payload.push_str(id);
    }
    if !payload.is_empty() {
        out.push(payload);
    }
    out
}

async fn listen(
    config: tokio_postgres::Config,
    me: String,
    wake: Arc<dyn Fn(Heard) + Send + Sync>,
    shown: String,
) {
    loop {
        match config.connect(tokio_postgres::NoTls).await {
            Err(e) => {
                tracing::warn!(database = %shown, error = %crate::db::message(&e), "the doorbell cannot listen to the other replicas; connecting again");
            }
            Ok((client, mut connection)) => {
                let (heard, mut notifications) = mpsc::unbounded_channel();
                let polling = tokio::spawn(async move {
                    loop {
                        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                            Some(Ok(AsyncMessage::Notification(n))) => {
                                let message = (n.channel().to_string(), n.payload().to_string());
                                if heard.send(message).is_err() {
                                    return;
                                }
                            }
                            Some(Ok(_)) => {}
                            Some(Err(_)) | None => return,
                        }
                    }
                });
                match client
                    .batch_execute(&format!(
                        "LISTEN {DOORBELL_CHANNEL}; LISTEN {CREDENTIALS_CHANNEL}"
                    ))
                    .await
                {
                    Err(e) => {
                        tracing::warn!(error = %crate::db::message(&e), "LISTEN failed; connecting again");
                    }
                    Ok(()) => {
                        wake(Heard::Listening);
                        while let Some((channel, payload)) = notifications.recv().await {
                            let mut lines = payload.lines();
                            if lines.next() == Some(me.as_str()) {
                                continue;
                            }
                            let items = lines.map(String::from).collect();
                            wake(if channel == CREDENTIALS_CHANNEL {
                                Heard::Credentials(items)
                            } else {
                                Heard::Devices(items)
                            });
                        }
                        tracing::warn!(
                            "the connection listening to the other replicas ended; connecting again"
                        );
                    }
                }
                polling.abort();
                wake(Heard::Deaf);
            }
        }
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_are_split_under_the_notification_limit() {
        let devices: Vec<String> = (0..3000).map(|i| format!("device-{i:05}")).collect();
        let payloads = payloads("r1", &devices);
        assert!(payloads.len() > 1);
        let mut back = Vec::new();
        for p in &payloads {
            assert!(p.len() <= MAX_NOTIFICATION_BYTES, "{}", p.len());
            let mut lines = p.lines();
            assert_eq!(lines.next(), Some("r1"));
            back.extend(lines.map(String::from));
        }
        assert_eq!(back, devices);
    }
}
