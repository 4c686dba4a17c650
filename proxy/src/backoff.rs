//! The pause before retrying an accept that failed (EMFILE, ENFILE, ENOBUFS...), shared by the
//! data-path listeners and the admin server: a process out of file descriptors waits for some
//! to close instead of spinning, and logs a handful of warnings in the first second and one a
//! second after that.

use std::time::Duration;

/// First pause after an error; it doubles on each further error.
const MIN: Duration = Duration::from_millis(5);
/// Longest pause.
const MAX: Duration = Duration::from_secs(1);

/// The pause before the next accept after an error.
#[derive(Debug)]
pub(crate) struct Backoff(Duration);

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff(MIN)
    }

    /// The pause to take now; the next one is twice as long, up to the maximum.
    pub(crate) fn next(&mut self) -> Duration {
        let now = self.0;
        self.0 = (self.0 * 2).min(MAX);
        now
    }

    /// After a success: the next error pauses for the minimum again.
    pub(crate) fn reset(&mut self) {
        self.0 = MIN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_5ms_to_1s_and_resets() {
        let mut b = Backoff::new();
        let pauses: Vec<_> = (0..10).map(|_| b.next().as_millis()).collect();
        assert_eq!(pauses, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.reset();
        assert_eq!(b.next(), MIN);
    }
}
