//! Wakes devices waiting in a long-poll check-in (`?wait=`) when the store hands them
//! something: a wave that reaches them, a rollback that sends them back, a deployment that
//! resumes. Each waiting device listens on its own bell, so a wave of 1,000 devices wakes those
//! 1,000 and not the rest of a fleet waiting its turn. A ring that comes while a device is not
//! waiting is not needed: its next check-in finds the assignment in the store.
//!
//! Replicas on one PostgreSQL database pass their rings on to each other
//! ([`hotswap_store::Announcer`]): a device waiting on one replica is woken when another hands
//! it something.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use hotswap_protocol::UnixMillis;
use tokio::sync::Notify;

/// The most devices waiting at once: each waiting check-in holds a few kilobytes (its request,
/// its HTTP/2 stream or connection). Past it, check-ins are answered at once, as without `?wait`,
/// and the devices poll instead.
pub const MAX_WAITING_DEVICES: usize = 250_000;

pub struct Doorbell {
    /// One bell per waiting device, shared by its concurrent check-ins.
    waiting: Mutex<HashMap<String, Arc<Notify>>>,
    /// Set when the server shuts down: nobody waits any more.
    closed: AtomicBool,
    capacity: usize,
    /// Rings due later (milliseconds since the epoch, device): an assignment retried after a
    /// backoff is handed out again when the backoff ends.
    later: Mutex<BinaryHeap<Reverse<(UnixMillis, String)>>>,
    /// Passes this replica's rings to the others (PostgreSQL only).
    announcer: Option<hotswap_store::Announcer>,
}

impl Default for Doorbell {
    fn default() -> Self {
        Doorbell::with_capacity(MAX_WAITING_DEVICES)
    }
}

/// A device's place among the waiting; leaving it (dropping) removes the bell when it was the
/// last one listening.
pub struct Listener<'a> {
    doorbell: &'a Doorbell,
    device_id: String,
    bell: Arc<Notify>,
}

impl Doorbell {
    /// A doorbell for at most `capacity` waiting devices.
    pub fn with_capacity(capacity: usize) -> Doorbell {
        Doorbell {
            waiting: Mutex::default(),
            closed: AtomicBool::new(false),
            capacity,
            later: Mutex::default(),
            announcer: None,
        }
    }

    /// A doorbell whose rings `announcer` passes on to the other replicas.
    pub fn announcing(announcer: Option<hotswap_store::Announcer>) -> Doorbell {
        Doorbell {
            announcer,
            ..Doorbell::default()
        }
    }

    /// What another replica announced: its devices rung here; or, once the listener listens
    /// again after missing announcements, everyone.
    pub fn wake(&self, heard: &hotswap_store::Heard) {
        match heard {
            hotswap_store::Heard::Devices(ids) => self.ring_here(ids.iter().map(String::as_str)),
            hotswap_store::Heard::Listening => self.ring_all(),
            hotswap_store::Heard::Credentials(_) | hotswap_store::Heard::Deaf => {}
        }
    }

    /// Rings for `device_id` once [`Doorbell::ring_due`] is called at or after `at`.
    pub fn ring_at(&self, device_id: &str, at: UnixMillis) {
        self.later
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Reverse((at, device_id.to_string())));
    }

    /// Rings every ring due by `now` (the orchestrator calls it every tick).
    pub fn ring_due(&self, now: UnixMillis) {
        let mut due = Vec::new();
        {
            let mut later = self.later.lock().unwrap_or_else(|e| e.into_inner());
            while later.peek().is_some_and(|Reverse((at, _))| *at <= now) {
                let Reverse((_, device)) = later.pop().expect("peeked");
                due.push(device);
            }
        }
        if !due.is_empty() {
            self.ring(due.iter().map(String::as_str));
        }
    }

    /// How many rings are due later.
    pub fn scheduled(&self) -> usize {
        self.later.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Starts listening for `device_id`; `None` when the server is shutting down or as many
    /// devices as it takes already wait. Call [`Listener::notified`] and enable the future
    /// before looking in the store, so a ring between the look and the wait is not missed.
    pub fn listen(&self, device_id: &str) -> Option<Listener<'_>> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if self.is_closed() || waiting.len() >= self.capacity && !waiting.contains_key(device_id) {
            return None;
        }
        let bell = waiting
            .entry(device_id.to_string())
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone();
        Some(Listener {
            doorbell: self,
            device_id: device_id.to_string(),
            bell,
        })
    }

    /// Wakes these devices, if they are waiting here or, with replicas, on another.
    pub fn ring<'d>(&self, device_ids: impl IntoIterator<Item = &'d str>) {
        match &self.announcer {
            None => self.ring_here(device_ids),
            Some(announcer) => {
                let ids: Vec<String> = device_ids.into_iter().map(String::from).collect();
                self.ring_here(ids.iter().map(String::as_str));
                announcer.announce(ids);
            }
        }
    }

    /// Wakes these devices if they are waiting on this replica.
    fn ring_here<'d>(&self, device_ids: impl IntoIterator<Item = &'d str>) {
        let waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if waiting.is_empty() {
            return;
        }
        for id in device_ids {
            if let Some(bell) = waiting.get(id) {
                bell.notify_waiters();
            }
        }
    }

    /// Wakes every waiting device.
    pub fn ring_all(&self) {
        let waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        for bell in waiting.values() {
            bell.notify_waiters();
        }
    }

    /// Wakes every waiting device and lets none wait from now on (the server is shutting down).
    pub fn close(&self) {
        // Under the lock, so no device starts listening between the flag and the ring.
        let waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        self.closed.store(true, Ordering::SeqCst);
        for bell in waiting.values() {
            bell.notify_waiters();
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// How many devices wait.
    pub fn waiting(&self) -> usize {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Listener<'_> {
    /// The next ring for this device.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.bell.notified()
    }
}

impl Drop for Listener<'_> {
    fn drop(&mut self) {
        let mut waiting = self
            .doorbell
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Every clone is made under this lock: two left are the map's and this one.
        if Arc::strong_count(&self.bell) == 2 {
            waiting.remove(&self.device_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_wakes_the_devices_rung_for_and_no_other() {
        let bell = Doorbell::default();
        let a = bell.listen("a").unwrap();
        let b = bell.listen("b").unwrap();
        let mut wake_b = std::pin::pin!(b.notified());
        wake_b.as_mut().enable();
        {
            let mut wake_a = std::pin::pin!(a.notified());
            wake_a.as_mut().enable();
            bell.ring(["a", "c"]);
            assert!(futures_poll_once(wake_a.as_mut()).is_ready(), "a was rung");
        }
        // `b` was not rung: its future is still pending.
        assert!(futures_poll_once(wake_b.as_mut()).is_pending());
        assert_eq!(bell.waiting(), 2);
        drop(a);
        assert_eq!(bell.waiting(), 1);
        bell.close();
        assert!(futures_poll_once(wake_b.as_mut()).is_ready());
        assert!(bell.is_closed());
        assert!(bell.listen("c").is_none(), "nobody waits once closed");
    }

    #[test]
    fn a_ring_set_for_later_rings_when_it_is_due() {
        let bell = Doorbell::default();
        let a = bell.listen("a").unwrap();
        let mut wake_a = std::pin::pin!(a.notified());
        wake_a.as_mut().enable();
        bell.ring_at("a", UnixMillis(2_000));
        bell.ring_at("b", UnixMillis(1_000));
        bell.ring_due(UnixMillis(1_500));
        assert!(futures_poll_once(wake_a.as_mut()).is_pending());
        assert_eq!(bell.scheduled(), 1);
        bell.ring_due(UnixMillis(2_000));
        assert!(futures_poll_once(wake_a.as_mut()).is_ready());
        assert_eq!(bell.scheduled(), 0);
    }

    #[test]
    fn past_its_capacity_a_device_is_not_let_wait() {
        let bell = Doorbell::with_capacity(2);
        let a = bell.listen("a").unwrap();
        let _b = bell.listen("b").unwrap();
        assert!(bell.listen("c").is_none());
        // A device already waiting may wait again (a retried check-in).
        assert!(bell.listen("a").is_some());
        drop(a);
        assert!(bell.listen("c").is_some());
    }

    #[test]
    fn a_bell_stays_while_any_check_in_of_the_device_listens() {
        let bell = Doorbell::default();
        let first = bell.listen("d").unwrap();
        let second = bell.listen("d").unwrap();
        drop(first);
        assert_eq!(bell.waiting(), 1);
        drop(second);
        assert_eq!(bell.waiting(), 0);
    }

    fn futures_poll_once<F: Future>(f: std::pin::Pin<&mut F>) -> std::task::Poll<F::Output> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        f.poll(&mut cx)
    }
}
