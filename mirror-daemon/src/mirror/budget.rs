//! The memory budget of the shadow path: bytes of copies (heads and body chunks) held by the
//! daemon for all targets together, from the moment a copy is made until every target has written
//! or dropped it.
//!
//! Buffers are `Bytes` whose owner gives its size back to the budget when the last clone is
//! dropped, so the count is exact whatever the senders do. A copy that does not fit is dropped and
//! counted; the primary path never waits for room.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use bytes::Bytes;

#[derive(Debug)]
pub struct Budget {
    used: AtomicU64,
    limit: u64,
}

impl Budget {
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicU64::new(0),
            limit,
        })
    }

    /// The most bytes held at once.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes held now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// A copy of `data` charged to the budget, or `None` when it does not fit.
    pub fn copy(self: &Arc<Self>, data: &[u8]) -> Option<Bytes> {
        self.adopt(data.to_vec())
    }

    /// `data` charged to the budget, or `None` when it does not fit.
    pub fn adopt(self: &Arc<Self>, data: Vec<u8>) -> Option<Bytes> {
        let size = data.len() as u64;
        let before = self.used.fetch_add(size, Ordering::Relaxed);
        if before + size > self.limit {
            self.used.fetch_sub(size, Ordering::Relaxed);
            return None;
        }
        Some(Bytes::from_owner(Charged {
            data,
            budget: self.clone(),
        }))
    }
}

/// A buffer that gives its size back to the budget when dropped.
struct Charged {
    data: Vec<u8>,
    budget: Arc<Budget>,
}

impl AsRef<[u8]> for Charged {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Charged {
    fn drop(&mut self) {
        self.budget
            .used
            .fetch_sub(self.data.len() as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_given_back_when_the_last_clone_goes() {
        let budget = Budget::new(10);
        let a = budget.copy(b"123456").expect("fits");
        let shared = a.clone();
        assert_eq!(budget.used(), 6);
        assert!(budget.copy(b"12345").is_none(), "6 + 5 > 10");
        assert_eq!(budget.used(), 6, "a refused copy is not charged");
        drop(a);
        assert_eq!(budget.used(), 6, "a clone still holds the bytes");
        drop(shared);
        assert_eq!(budget.used(), 0);
        assert!(budget.copy(b"1234567890").is_some());
    }
}
