//! Hand-written JSON output for the hottest event, byte for byte what `serde_json` writes.
//!
//! A profile push is read, numbered and written to every subscriber as an
//! `onSelfInfoUpdated` line; through serde that line cost about 6,000 instructions, two
//! thirds of them in `serde_json`'s byte-at-a-time string escaping and its per-field
//! calls. [`write_str`] scans eight bytes at a time and copies a run that needs no escape
//! in one go. The tests hold every writer here to `serde_json`'s output.

/// Appends `s` as a JSON string, quoted and escaped exactly as `serde_json` does: `"`,
/// `\` and the control characters below 0x20 (`\b \t \n \f \r` by name, the rest as
/// `\u00xx` in lower-case hex); everything else, DEL and non-ASCII included, as is.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let mut rest = s.as_bytes();
    out.reserve(rest.len().saturating_add(2));
    out.push(b'"');
    loop {
        let n = plain_run(rest);
        let (run, tail) = rest.split_at(n);
        out.extend_from_slice(run);
        let Some((&b, tail)) = tail.split_first() else {
            break;
        };
        if let Some((esc, len)) = escape(b) {
            out.extend_from_slice(&esc[..len]);
        }
        rest = tail;
    }
    out.push(b'"');
}

/// Where the closing quote of a string without escapes or control characters is, `b`
/// being what follows its opening quote; `None` when a backslash or a control character
/// (or the end) comes first.
#[inline]
pub fn plain_string_end(b: &[u8]) -> Option<usize> {
    let n = plain_run(b);
    (b.get(n) == Some(&b'"')).then_some(n)
}

/// The length of the leading run of bytes that need no escape.
pub fn plain_run(b: &[u8]) -> usize {
    let mut n = 0;
    let mut chunks = b.chunks_exact(8);
    for chunk in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let m = special_mask(u64::from_le_bytes(w));
        if m != 0 {
            return n + first_flagged(m);
        }
        n += 8;
    }
    // The last few bytes, padded with a plain byte to a whole word.
    let tail = chunks.remainder();
    let mut w = [b'a'; 8];
    w[..tail.len()].copy_from_slice(tail);
    let m = special_mask(u64::from_le_bytes(w));
    n + if m != 0 { first_flagged(m) } else { tail.len() }
}

/// The index of the lowest flagged byte of a mask from [`special_mask`] (the lowest is
/// exact: a borrow only ever flags a byte above a flagged one).
fn first_flagged(m: u64) -> usize {
    (m.trailing_zeros() / 8) as usize
}

/// The high bit of each of the eight bytes that is below 0x20, `"` or `\`; a byte above a
/// flagged one may be flagged too.
fn special_mask(w: u64) -> u64 {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    // A byte below n sets its high bit in (w - n) & !w (n <= 0x80), and a zero byte of
    // w ^ c marks a byte equal to c; a borrow runs only upwards from a flagged byte.
    let below = |n: u64| w.wrapping_sub(LO.wrapping_mul(n)) & !w & HI;
    let zero = |v: u64| v.wrapping_sub(LO) & !v & HI;
    below(0x20) | zero(w ^ LO.wrapping_mul(0x22)) | zero(w ^ LO.wrapping_mul(0x5c))
}

/// The escape of a byte that needs one: its bytes and their count.
fn escape(b: u8) -> Option<([u8; 6], usize)> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let named = |c: u8| Some(([b'\\', c, 0, 0, 0, 0], 2));
    match b {
        b'"' => named(b'"'),
        b'\\' => named(b'\\'),
        0x08 => named(b'b'),
        0x09 => named(b't'),
        0x0a => named(b'n'),
        0x0c => named(b'f'),
        0x0d => named(b'r'),
        0..=0x1f => Some((
            [
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ],
            6,
        )),
        _ => None,
    }
}

/// Appends an unsigned integer.
pub fn write_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Whether a byte needs an escape.
    fn special(c: u8) -> bool {
        c < 0x20 || c == b'"' || c == b'\\'
    }

    fn mine(s: &str) -> Vec<u8> {
        let mut v = Vec::new();
        write_str(&mut v, s);
        v
    }

    #[test]
    fn every_byte_below_0x80_escapes_as_serde_does() {
        for b in 0u8..0x80 {
            let c = char::from(b);
            for s in [
                c.to_string(),
                format!("abcdefg{c}"),
                format!("{c}abcdefghijklmno"),
                format!("0123456{c}89abcdef{c}"),
            ] {
                assert_eq!(mine(&s), serde_json::to_vec(&s).unwrap(), "{s:?}");
            }
        }
    }

    #[test]
    fn runs_and_edges() {
        for s in [
            "",
            "plain",
            "exactly8",
            "sixteen bytes ok",
            "é€𝄞 and \u{7f}",
            "\"\\\"\\",
            "tab\tnewline\nreturn\r\u{1}\u{1f}",
        ] {
            assert_eq!(mine(s), serde_json::to_vec(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn the_plain_run_ends_at_the_first_byte_needing_an_escape() {
        for len in 0..20 {
            for at in 0..=len {
                for special in [b'"', b'\\', 0u8, 0x1f] {
                    let mut v = vec![b'x'; len];
                    if at < len {
                        v[at] = special;
                        // A second one after it changes nothing.
                        if at + 1 < len {
                            v[at + 1] = b'"';
                        }
                    }
                    assert_eq!(plain_run(&v), at, "{v:?}");
                }
            }
        }
        assert_eq!(
            plain_run("é€ and \u{7f}~".as_bytes()),
            "é€ and \u{7f}~".len()
        );
    }

    proptest! {
        #[test]
        fn the_plain_run_is_the_bytes_before_the_first_special(
            s in prop_oneof![any::<String>(), "[ -~\\x00-\\x1f]{0,40}", "[a-z\"]{0,24}"],
        ) {
            let want = s.bytes().position(special).unwrap_or(s.len());
            prop_assert_eq!(plain_run(s.as_bytes()), want);
        }

        #[test]
        fn any_string_escapes_as_serde_does(s in any::<String>()) {
            prop_assert_eq!(mine(&s), serde_json::to_vec(&s).unwrap());
        }

        #[test]
        fn any_ascii_heavy_string_escapes_as_serde_does(s in "[ -~\\x00-\\x1f]{0,64}") {
            prop_assert_eq!(mine(&s), serde_json::to_vec(&s).unwrap());
        }

        #[test]
        fn any_number_writes_as_serde_does(n in any::<u64>()) {
            let mut v = Vec::new();
            write_u64(&mut v, n);
            prop_assert_eq!(v, serde_json::to_vec(&n).unwrap());
        }
    }
}
