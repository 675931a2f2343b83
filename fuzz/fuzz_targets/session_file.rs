//! The session-file loader (`daemon::store`, `imlink::fuzzing::session_file`): what the
//! daemon makes of `state.dir/session.json` once opened, a file anyone who could write the
//! state directory may have planted.
//!
//! Properties: nothing panics; a file that is kept, written back the way the daemon's
//! writer writes it, is kept again unchanged (the writer never writes what the reader
//! refuses); the reason a file is set aside never shows a value from it (a ticket may sit
//! in any field).
#![no_main]

use imlink::fuzzing::session_file;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match session_file(data) {
        Ok(written) => {
            let again = session_file(&written).unwrap_or_else(|e| {
                panic!(
                    "what the writer writes is refused ({e}): {}",
                    String::from_utf8_lossy(&written)
                )
            });
            assert_eq!(again, written);
        }
        Err(reason) => {
            assert!(!reason.chars().any(char::is_control), "{reason:?}");
            let Ok(serde_json::Value::Object(obj)) =
                serde_json::from_slice::<serde_json::Value>(data)
            else {
                return;
            };
            for v in obj.values() {
                if let Some(s) = v.as_str() {
                    // Long enough not to be a word of the messages themselves.
                    if s.len() >= 16 && !s.contains(' ') {
                        assert!(!reason.contains(s), "the reason shows a value: {reason}");
                    }
                }
            }
        }
    }
});
