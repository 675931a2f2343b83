//! Signals before the daemon's own handlers exist.
//!
//! SIGHUP's default action ends the process, and `systemctl reload` or a script may send
//! one at any time — also while `imlinkd` is still loading its configuration, opening its
//! state and binding its socket. [`EarlySignals::install`], the first thing `imlinkd`
//! does, takes SIGHUP over from that moment: one arriving before the daemon listens for it
//! is recorded instead of killing the process, and the daemon may act on it once its own
//! handler is in place ([`EarlySignals::take_hup`]). SIGTERM and SIGINT are left alone:
//! during start-up they still end the process at once, as they should.
//!
//! The signal stays caught for the life of the process (signal-hook never puts the default
//! action back), so SIGHUP cannot kill `imlinkd` afterwards either; handlers registered
//! later, such as the daemon's `signal_hook::iterator::Signals`, receive it as usual.

use signal_hook::consts::SIGHUP;
use signal_hook::SigId;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// SIGHUP, caught from the start of `main` until the daemon handles it itself.
#[derive(Debug)]
pub struct EarlySignals {
    hup: Arc<AtomicBool>,
    id: SigId,
}

impl EarlySignals {
    /// Catches SIGHUP: from now on it sets a flag instead of ending the process.
    pub fn install() -> std::io::Result<EarlySignals> {
        let hup = Arc::new(AtomicBool::new(false));
        let id = signal_hook::flag::register(SIGHUP, hup.clone())?;
        Ok(EarlySignals { hup, id })
    }

    /// Whether a SIGHUP arrived since [`EarlySignals::install`] (or since the last call).
    /// The daemon calls this once its own SIGHUP handler is in place and reloads if so: the
    /// configuration may have changed after it was read at start.
    pub fn take_hup(&self) -> bool {
        self.hup.swap(false, Ordering::SeqCst)
    }

    /// Stops recording SIGHUP here, once the daemon's own handler has taken over. SIGHUP
    /// stays caught, so it still does not end the process.
    pub fn release(self) {
        signal_hook::low_level::unregister(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sighup_is_recorded_instead_of_ending_the_process() {
        let early = EarlySignals::install().unwrap();
        assert!(!early.take_hup());
        signal_hook::low_level::raise(SIGHUP).unwrap();
        assert!(early.take_hup());
        assert!(!early.take_hup());
        early.release();
        // Still caught after the release: this process is alive to check it.
        signal_hook::low_level::raise(SIGHUP).unwrap();
    }
}
