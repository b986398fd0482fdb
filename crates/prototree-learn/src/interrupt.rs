//! The interrupt handle: whoever holds a clone (the CLI's Ctrl-C handler, a test) can ask
//! training to stop; the learner polls it between batches, saves the batches trained so
//! far and returns [`crate::Error::Interrupted`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A shared stop flag.
#[derive(Debug, Clone, Default)]
pub struct Interrupter(Arc<AtomicBool>);

impl Interrupter {
    /// A handle that has not been stopped.
    pub fn new() -> Self {
        Self::default()
    }

    /// A handle over an existing flag (e.g. one a signal handler sets).
    pub fn from_flag(flag: Arc<AtomicBool>) -> Self {
        Self(flag)
    }

    /// Asks training to stop at the next batch.
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked for.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// The shared flag.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.0.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_flag() {
        let a = Interrupter::new();
        let b = a.clone();
        assert!(!b.is_stopped());
        a.stop();
        assert!(b.is_stopped() && Interrupter::from_flag(a.flag()).is_stopped());
        fn check<T: Send + Sync>() {}
        check::<Interrupter>();
    }
}
