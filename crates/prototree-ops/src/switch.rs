//! A process switch for the ops: on when its environment variable says so (read once per
//! process) or, on one thread, inside a scope. The generic-path switch
//! ([`crate::dispatch`]) and the deterministic reductions ([`crate::reduction`]) are two.

use std::cell::Cell;
use std::sync::OnceLock;
use std::thread::LocalKey;

/// A switch read from `env` (`1`, `true`, `yes`) or set on a thread by [`Switch::scoped`].
pub(crate) struct Switch {
    env: &'static str,
    by_env: OnceLock<bool>,
    here: &'static LocalKey<Cell<bool>>,
}

impl Switch {
    /// The switch of the environment variable `env`, scoped through the thread-local `here`.
    pub(crate) const fn new(env: &'static str, here: &'static LocalKey<Cell<bool>>) -> Self {
        Self {
            env,
            by_env: OnceLock::new(),
            here,
        }
    }

    /// Whether the environment turns the switch on.
    pub(crate) fn on_by_env(&self) -> bool {
        *self.by_env.get_or_init(|| {
            std::env::var(self.env)
                .map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
                .unwrap_or(false)
        })
    }

    /// Whether the switch is on on this thread.
    pub(crate) fn is_on(&self) -> bool {
        self.on_by_env() || self.here.with(Cell::get)
    }

    /// Runs `f` with the switch on on this thread (nested calls keep it on; the previous
    /// setting is restored afterwards, also on a panic).
    pub(crate) fn scoped<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Restore(&'static LocalKey<Cell<bool>>, bool);
        impl Drop for Restore {
            fn drop(&mut self) {
                self.0.with(|c| c.set(self.1));
            }
        }
        let _restore = Restore(self.here, self.here.with(|c| c.replace(true)));
        f()
    }
}
