//! Pure state machines: backoff, connection, login session. No I/O, no actix.
