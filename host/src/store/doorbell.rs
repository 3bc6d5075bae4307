//! Wakes devices waiting in a long-poll check-in (`?wait=`) when the store hands them
//! something: a wave that reaches them, a rollback that sends them back, a deployment that
//! resumes. Each waiting device listens on its own bell, so a wave of 1,000 devices wakes those
//! 1,000 and not the rest of a fleet waiting its turn. A ring that comes while a device is not
//! waiting is not needed: its next check-in finds the assignment in the store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

#[derive(Default)]
pub struct Doorbell {
    /// One bell per waiting device, shared by its concurrent check-ins.
    waiting: Mutex<HashMap<String, Arc<Notify>>>,
    /// Set when the server shuts down: nobody waits any more.
    closed: AtomicBool,
}

/// A device's place among the waiting; leaving it (dropping) removes the bell when it was the
/// last one listening.
pub struct Listener<'a> {
    doorbell: &'a Doorbell,
    device_id: String,
    bell: Arc<Notify>,
}

impl Doorbell {
    /// Starts listening for `device_id`. Call [`Listener::notified`] and enable the future
    /// before looking in the store, so a ring between the look and the wait is not missed.
    pub fn listen(&self, device_id: &str) -> Listener<'_> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let bell = waiting
            .entry(device_id.to_string())
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone();
        Listener {
            doorbell: self,
            device_id: device_id.to_string(),
            bell,
        }
    }

    /// Wakes these devices, if they are waiting.
    pub fn ring<'d>(&self, device_ids: impl IntoIterator<Item = &'d str>) {
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
        self.closed.store(true, Ordering::SeqCst);
        self.ring_all();
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
        let a = bell.listen("a");
        let b = bell.listen("b");
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
    }

    #[test]
    fn a_bell_stays_while_any_check_in_of_the_device_listens() {
        let bell = Doorbell::default();
        let first = bell.listen("d");
        let second = bell.listen("d");
        drop(first);
        assert_eq!(bell.waiting(), 1);
        drop(second);
        assert_eq!(bell.waiting(), 0);
    }

    fn futures_poll_once<F: std::future::Future>(
        f: std::pin::Pin<&mut F>,
    ) -> std::task::Poll<F::Output> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        f.poll(&mut cx)
    }
}
