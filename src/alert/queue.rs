//! The hand-over between the guard and one endpoint's delivery task: bounded, never blocking
//! the side that pushes, and dropping the oldest entry when full (the newest says most about
//! the key now). The lock is held only to move an entry in or out, never across I/O.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

#[derive(Debug)]
pub struct Queue<T> {
    inner: Mutex<Inner<T>>,
    /// Wakes the delivery task. A `notify_one` without a waiter leaves a permit, so a push
    /// between the task's check and its wait is not lost.
    ready: Notify,
    capacity: usize,
    /// Entries pushed out by newer ones, since start.
    dropped: AtomicU64,
}

#[derive(Debug)]
struct Inner<T> {
    items: VecDeque<T>,
    closed: bool,
    /// Since the consumer last took the entries, it was woken for a new one / for a loss.
    /// One wake-up of each per batch is enough: a busy consumer comes back for the rest, so
    /// the guard does not wake it for every report while it waits on a slow endpoint.
    woken_for_item: bool,
    woken_for_loss: bool,
}

impl<T> Queue<T> {
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                items: VecDeque::new(),
                closed: false,
                woken_for_item: false,
                woken_for_loss: false,
            }),
            ready: Notify::new(),
            capacity: capacity.max(1),
            dropped: AtomicU64::new(0),
        }
    }

    /// Adds `item`; when full, the oldest entry goes. Returns whether one was dropped.
    /// Never waits for the consumer, and wakes it at most twice per batch it takes.
    pub fn push(&self, item: T) -> bool {
        let (dropped, wake) = {
            let mut inner = self.lock();
            if inner.closed {
                return false;
            }
            let dropped = inner.items.len() >= self.capacity;
            if dropped {
                inner.items.pop_front();
            }
            inner.items.push_back(item);
            let wake = if dropped {
                !std::mem::replace(&mut inner.woken_for_loss, true)
            } else {
                !std::mem::replace(&mut inner.woken_for_item, true)
            };
            (dropped, wake)
        };
        if dropped {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        if wake {
            self.ready.notify_one();
        }
        dropped
    }

    /// Moves every waiting entry to `out`, oldest first. Returns false once the queue is
    /// closed and empty.
    pub fn take_all(&self, out: &mut Vec<T>) -> bool {
        let mut inner = self.lock();
        out.extend(inner.items.drain(..));
        inner.woken_for_item = false;
        inner.woken_for_loss = false;
        !(inner.closed && out.is_empty())
    }

    /// Waits until something was pushed (or the queue closed) since the last wait.
    pub async fn wait(&self) {
        self.ready.notified().await;
    }

    /// No more pushes; the consumer delivers what is left and stops.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<T>> {
        // Nothing panics while holding the lock (and panics abort), so a poisoned lock still
        // holds consistent data.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_drops_the_oldest_and_counts() {
        let q = Queue::new(3);
        for i in 0..5 {
            q.push(i);
        }
        assert_eq!(q.dropped(), 2);
        let mut out = Vec::new();
        assert!(q.take_all(&mut out));
        assert_eq!(out, vec![2, 3, 4]);
    }

    #[test]
    fn closed_queue_drains_then_ends() {
        let q = Queue::new(3);
        q.push(1);
        q.close();
        assert!(!q.push(2), "no pushes after close");
        let mut out = Vec::new();
        assert!(q.take_all(&mut out));
        assert_eq!(out, vec![1]);
        out.clear();
        assert!(!q.take_all(&mut out));
    }

    #[tokio::test]
    async fn a_busy_consumer_is_woken_once_per_batch_for_items_and_once_for_a_loss() {
        use std::time::Duration;
        let q = Queue::new(2);
        let mut out = Vec::new();
        q.take_all(&mut out);
        q.push(1);
        q.push(2);
        q.wait().await;
        let quiet = tokio::time::timeout(Duration::from_millis(20), q.wait()).await;
        assert!(quiet.is_err(), "the second item did not wake again");
        q.push(3);
        q.push(4);
        q.wait().await;
        assert_eq!(q.dropped(), 2);
        let quiet = tokio::time::timeout(Duration::from_millis(20), q.wait()).await;
        assert!(quiet.is_err(), "the second loss did not wake again");
        q.take_all(&mut out);
        q.push(5);
        tokio::time::timeout(Duration::from_secs(1), q.wait())
            .await
            .expect("a new batch wakes again");
    }

    #[tokio::test]
    async fn a_push_before_the_wait_is_not_lost() {
        let q = Queue::new(3);
        q.push(1);
        tokio::time::timeout(std::time::Duration::from_secs(1), q.wait())
            .await
            .expect("woken by the earlier push");
    }
}
