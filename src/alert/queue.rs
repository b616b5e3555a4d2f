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
}

impl<T> Queue<T> {
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                items: VecDeque::new(),
                closed: false,
            }),
            ready: Notify::new(),
            capacity: capacity.max(1),
            dropped: AtomicU64::new(0),
        }
    }

    /// Adds `item`; when full, the oldest entry goes. Returns whether one was dropped.
    /// Never waits for the consumer.
    pub fn push(&self, item: T) -> bool {
        let dropped = {
            let mut inner = self.lock();
            if inner.closed {
                return false;
            }
            let dropped = if inner.items.len() >= self.capacity {
                inner.items.pop_front();
                true
            } else {
                false
            };
            inner.items.push_back(item);
            dropped
        };
        if dropped {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        self.ready.notify_one();
        dropped
    }

    /// Moves every waiting entry to `out`, oldest first. Returns false once the queue is
    /// closed and empty.
    pub fn take_all(&self, out: &mut Vec<T>) -> bool {
        let mut inner = self.lock();
        out.extend(inner.items.drain(..));
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
    async fn a_push_before_the_wait_is_not_lost() {
        let q = Queue::new(3);
        q.push(1);
        tokio::time::timeout(std::time::Duration::from_secs(1), q.wait())
            .await
            .expect("woken by the earlier push");
    }
}
