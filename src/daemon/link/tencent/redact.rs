//! Removing tickets from what the bridge writes, before it reaches the log or a reply.
//!
//! The bridge already redacts its stderr, but the daemon does not trust it: every line
//! of its stderr, every message of an answer or event and every report of an unreadable
//! line goes through [`Secrets::scrub`], which replaces each UserSig the daemon sent
//! (the last [`KEPT`]) wherever it appears, and whatever follows `usersig`, `user_sig`,
//! `a2key` or `a2` and a `=` or `:` (query strings, JSON, log text), as the bridge does.

use std::collections::VecDeque;

/// How many UserSigs are remembered (a new ticket per login; the oldest is forgotten).
pub const KEPT: usize = 16;

/// Shorter strings are not remembered (they would redact ordinary words).
const MIN_SECRET: usize = 8;

const MARK: &str = "[redacted]";

/// The names whose value is removed, longest first so `a2key` wins over `a2`.
const NAMES: [&str; 4] = ["user_sig", "usersig", "a2key", "a2"];

/// The UserSigs sent to the bridge.
#[derive(Debug, Default, Clone)]
pub struct Secrets {
    kept: VecDeque<String>,
}

impl Secrets {
    /// None yet.
    pub fn new() -> Secrets {
        Secrets::default()
    }

    /// Remembers a ticket about to be sent.
    pub fn add(&mut self, secret: &str) {
        if secret.len() < MIN_SECRET || self.kept.iter().any(|s| s == secret) {
            return;
        }
        if self.kept.len() == KEPT {
            self.kept.pop_front();
        }
        self.kept.push_back(secret.to_owned());
    }

    /// `text` without any remembered ticket and without the values of ticket-like names.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        let mut by_length: Vec<&String> = self.kept.iter().collect();
        by_length.sort_by_key(|s| std::cmp::Reverse(s.len()));
        for s in by_length {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MARK);
            }
        }
        scrub_named(&out)
    }
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Ends a value: `&`, white space, quotes, `,`, `}`, `;`, `)`, `]`, a backslash.
fn ends_value(b: u8) -> bool {
    b.is_ascii_whitespace()
        || matches!(
            b,
            b'&' | b'"' | b'\'' | b',' | b'}' | b';' | b')' | b']' | b'\\'
        )
}

/// Replaces the value after `usersig=`, `"a2key":"…"`, `UserSig: …` (any case) with
/// `[redacted]`.
pub fn scrub_named(text: &str) -> String {
    let bytes = text.as_bytes();
    let lower = text.to_ascii_lowercase();
    let lower = lower.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let at_word_start = i == 0 || !is_word(bytes[i - 1]);
        let name = if at_word_start {
            NAMES.iter().find(|n| lower[i..].starts_with(n.as_bytes()))
        } else {
            None
        };
        let Some(name) = name else {
            i += 1;
            continue;
        };
        let mut j = i + name.len();
        if bytes.get(j).is_some_and(|&b| is_word(b)) {
            // `usersigs`, `a2b`: another word.
            i += 1;
            continue;
        }
        // ["'\]* spaces [=:] spaces ["'\]*
        while bytes
            .get(j)
            .is_some_and(|&b| matches!(b, b'"' | b'\'' | b'\\'))
        {
            j += 1;
        }
        while bytes.get(j).is_some_and(|b| b.is_ascii_whitespace()) {
            j += 1;
        }
        if !bytes.get(j).is_some_and(|&b| b == b'=' || b == b':') {
            i += 1;
            continue;
        }
        j += 1;
        while bytes.get(j).is_some_and(|b| b.is_ascii_whitespace()) {
            j += 1;
        }
        while bytes
            .get(j)
            .is_some_and(|&b| matches!(b, b'"' | b'\'' | b'\\'))
        {
            j += 1;
        }
        let start = j;
        if text.get(start..).is_some_and(|t| t.starts_with(MARK)) {
            // Already removed (a remembered ticket).
            i = start + MARK.len();
            continue;
        }
        while bytes.get(j).is_some_and(|&b| !ends_value(b)) {
            j += 1;
        }
        if j > start && text.is_char_boundary(start) && text.is_char_boundary(j) {
            out.push_str(&text[copied..start]);
            out.push_str(MARK);
            copied = j;
        }
        i = j.max(i + 1);
    }
    if copied == 0 {
        return text.to_owned();
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_after_ticket_names_are_removed() {
        for (input, want) in [
            (
                "GET /binfo?sdkappid=1&usersig=eJw*abc-_+/=&x=1",
                "GET /binfo?sdkappid=1&usersig=[redacted]&x=1",
            ),
            (
                r#"{"head":{"UserSig":"eJwabc","a2":"A2KEY"}}"#,
                r#"{"head":{"UserSig":"[redacted]","a2":"[redacted]"}}"#,
            ),
            ("a2key: secret more", "a2key: [redacted] more"),
            ("user_sig = x1", "user_sig = [redacted]"),
            (
                r#"escaped {\"usersig\":\"eJw\"}"#,
                r#"escaped {\"usersig\":\"[redacted]\"}"#,
            ),
            ("USERSIG=abc", "USERSIG=[redacted]"),
            // Not names of a ticket: left alone.
            ("usersigs=3 ba2=4 a2b=5", "usersigs=3 ba2=4 a2b=5"),
            ("usersig is missing", "usersig is missing"),
            ("usersig=", "usersig="),
            ("plain é text", "plain é text"),
        ] {
            assert_eq!(scrub_named(input), want, "{input}");
        }
    }

    #[test]
    fn remembered_tickets_are_removed_anywhere() {
        let mut s = Secrets::new();
        s.add("short");
        s.add("eJwTicketNumberOne");
        s.add("eJwTicketNumberOne");
        assert_eq!(s.kept.len(), 1);
        assert_eq!(
            s.scrub("got eJwTicketNumberOne, and eJwTicketNumberOne again; short"),
            "got [redacted], and [redacted] again; short"
        );
        assert_eq!(
            s.scrub("GET /binfo?usersig=eJwTicketNumberOne&x=1 a2key: TicketNumberOne"),
            "GET /binfo?usersig=[redacted]&x=1 a2key: [redacted]"
        );
        for n in 0..KEPT + 3 {
            s.add(&format!("ticket-number-{n:04}"));
        }
        assert_eq!(s.kept.len(), KEPT);
        assert!(s.scrub("ticket-number-0000").contains("0000"), "forgotten");
        assert_eq!(
            s.scrub(&format!("ticket-number-{:04}", KEPT + 2)),
            "[redacted]"
        );
    }
}
