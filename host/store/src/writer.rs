//! Group commit for the writes devices make (check-ins and reports): each request's work runs in
//! its own savepoint inside a transaction shared with whatever else arrived meanwhile, and every
//! request is answered only after that transaction is committed and synced. Durable before
//! acknowledged, at the cost of one sync per batch instead of one per request.
//!
//! With PostgreSQL, where each statement is a round trip to the database, [`WRITER_SHARDS`]
//! writers each batch their own share of the devices on a connection of their own: a device's
//! writes always go to the same writer, in the order they came. SQLite has one writing
//! connection, so one writer.

use std::sync::mpsc;

use crate::db::{Tx, params};
use crate::{Backend, StoreError, WriteLock};

/// The most requests one transaction carries.
pub const MAX_BATCH: usize = 1000;

/// How many writers batch the devices' writes at once on PostgreSQL.
pub const WRITER_SHARDS: usize = 4;

/// The key a write is sharded by: what it is about (its device).
pub(crate) fn key(of: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    of.hash(&mut h);
    h.finish()
}

/// Runs `work` in the transaction and returns what to tell the caller once the commit is known.
type Job = Box<dyn FnOnce(&Tx<'_>) -> Finish + Send>;
type Finish = Box<dyn FnOnce(Result<(), String>) + Send>;

#[derive(Clone)]
pub(crate) struct BatchWriter {
    shards: Vec<mpsc::Sender<Job>>,
}

impl BatchWriter {
    /// Starts the writer threads; they end when the last `BatchWriter` is dropped.
    pub(crate) fn start(backend: Backend) -> BatchWriter {
        let n = match backend {
            Backend::Sqlite { .. } => 1,
            Backend::Postgres(_) => WRITER_SHARDS,
        };
        let shards = (0..n)
            .map(|i| {
                let (tx, rx) = mpsc::channel::<Job>();
                let backend = backend.clone();
                std::thread::Builder::new()
                    .name(format!("hotswap-store-writer-{i}"))
                    .spawn(move || run(&backend, &rx))
                    .expect("the store writer thread starts");
                tx
            })
            .collect();
        BatchWriter { shards }
    }

    /// Runs `work` in the next batch of the writer for `key` ([`key`]); resolves once its
    /// effects are committed (or not).
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        key: u64,
        work: impl FnOnce(&Tx<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |tx| {
            let result = savepoint(tx, work);
            Box::new(move |committed: Result<(), String>| {
                let outcome = match committed {
                    Ok(()) => result,
                    Err(e) => Err(StoreError::Unavailable(format!("commit failed: {e}"))),
                };
                let _ = reply.send(outcome);
            })
        });
        self.shards[(key % self.shards.len() as u64) as usize]
            .send(job)
            .map_err(|_| StoreError::Unavailable("the store is closing".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the store writer stopped".into()))?
    }
}

/// Runs `work` so that its failure undoes only its own changes.
fn savepoint<T>(
    tx: &Tx<'_>,
    work: impl FnOnce(&Tx<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    // Prepared once per connection: these run around every check-in and report.
    tx.execute("SAVEPOINT job", params![])?;
    match work(tx) {
        Ok(value) => {
            tx.execute("RELEASE job", params![])?;
            Ok(value)
        }
        Err(e) => {
            tx.batch("ROLLBACK TO job; RELEASE job")?;
            Err(e)
        }
    }
}

fn run(backend: &Backend, jobs: &mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let tx = match backend.begin(WriteLock::Shared) {
            Ok(tx) => tx,
            Err(e) => {
                // Nothing ran; dropping the jobs answers every caller with an error.
                tracing::error!(error = %e, "store writer cannot begin a transaction");
                drop(batch);
                continue;
            }
        };
        let finishes: Vec<Finish> = batch.into_iter().map(|job| job(&tx)).collect();
        let committed = tx.commit().map_err(|e| e.to_string());
        for finish in finishes {
            finish(committed.clone());
        }
    }
}
