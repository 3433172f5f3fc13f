//! The clock timers follow: the wall clock in `weir run`, a clock the input moves
//! in `weir test` and `weir diff`.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, from the wall clock or a virtual one.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// `None`: the wall clock.
    virtual_ms: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The wall clock.
    pub fn wall() -> Clock {
        Clock { virtual_ms: None }
    }

    /// A virtual clock standing at `ms`; its clones move together.
    pub fn fixed(ms: i64) -> Clock {
        Clock {
            virtual_ms: Some(Arc::new(AtomicI64::new(ms))),
        }
    }

    pub fn now_ms(&self) -> i64 {
        match &self.virtual_ms {
            Some(ms) => ms.load(Ordering::SeqCst),
            None => wall_ms(),
        }
    }

    /// Moves a virtual clock to `ms` (never back); the wall clock does not move.
    pub fn advance_to(&self, ms: i64) {
        if let Some(now) = &self.virtual_ms {
            now.fetch_max(ms, Ordering::SeqCst);
        }
    }
}

/// The wall clock, in milliseconds since the Unix epoch.
pub fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
