//! Text that came from a peer, made safe to log and to put in a reply.
//!
//! A server's `desc`, a bridge's error message or a client's method name may contain
//! newlines (a forged log line), terminal escapes or megabytes. [`clean`] escapes every
//! control character (and the Unicode line and paragraph separators) the way Rust's
//! `escape_debug` does and cuts the text at a bound, so the result is always one short line.

use std::borrow::Cow;

/// The longest peer text kept in a log line or a message, in characters.
pub const MAX_PEER_TEXT: usize = 200;

fn needs_escape(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}' || c == '\u{85}'
}

/// `s` with control characters escaped (`\n`, `\u{1b}`, …) and cut after `max` characters
/// (marked with `…`). Borrowed when nothing had to change.
pub fn clean_to(s: &str, max: usize) -> Cow<'_, str> {
    if s.chars().count() <= max && !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len().min(max * 2));
    for (n, c) in s.chars().enumerate() {
        if n >= max {
            out.push('…');
            break;
        }
        if needs_escape(c) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// [`clean_to`] with [`MAX_PEER_TEXT`].
pub fn clean(s: &str) -> Cow<'_, str> {
    clean_to(s, MAX_PEER_TEXT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_length_is_bounded() {
        assert_eq!(clean("plain text"), "plain text");
        assert!(matches!(clean("plain"), Cow::Borrowed(_)));
        assert_eq!(clean("a\nb\r\tc"), "a\\nb\\r\\tc");
        assert_eq!(clean("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(clean("x\u{2028}y"), "x\\u{2028}y");
        let long = "é".repeat(500);
        let c = clean(&long);
        assert_eq!(c.chars().count(), MAX_PEER_TEXT + 1);
        assert!(c.ends_with('…'));
        assert!(!clean("a\nb").contains('\n'));
    }
}
