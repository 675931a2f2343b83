//! The API's line splitter (`daemon::api::line::Lines`): a byte stream into request lines
//! with a length limit.
//!
//! Input: one byte for the limit (1–64), one for where to cut the stream, the stream.
//! Properties: nothing panics; every line is at most the limit and holds no `\n`; the
//! pieces do not depend on how the stream is cut into reads; what is held for an
//! incomplete line never exceeds the limit; a stream without an over-long line comes
//! out as its lines exactly.
#![no_main]

use imlink::daemon::api::line::{Lines, Piece};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq, Eq)]
enum P {
    Line(Vec<u8>),
    TooLong,
}

fn run(chunks: &[&[u8]], max: usize) -> Vec<P> {
    let mut l = Lines::default();
    let mut out = Vec::new();
    let mut each = |p: Piece<'_>| {
        out.push(match p {
            Piece::Line(d) => {
                assert!(d.len() <= max, "a line longer than the limit");
                assert!(!d.contains(&b'\n'));
                P::Line(d.to_vec())
            }
            Piece::TooLong => P::TooLong,
        })
    };
    for c in chunks {
        l.feed(c, max, &mut each);
        // Capacity may round up; the bytes held are bounded by the limit.
        assert!(
            l.held() <= max.next_power_of_two().max(8) * 2,
            "held {} > limit {max}",
            l.held()
        );
    }
    l.finish(&mut each);
    out
}

fuzz_target!(|data: &[u8]| {
    let [m, cut, stream @ ..] = data else {
        return;
    };
    let max = usize::from(m % 64) + 1;
    let whole = run(&[stream], max);
    let cut = usize::from(*cut) * stream.len() / 256;
    let (a, b) = stream.split_at(cut);
    assert_eq!(run(&[a, b], max), whole, "cut at {cut}");
    let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(run(&bytewise, max), whole, "byte by byte");
    if !whole.contains(&P::TooLong) {
        // Every newline ends a line (empty ones too); the bytes after the last newline
        // are a line when there are any; a final `\r` is dropped.
        let strip = |l: &[u8]| P::Line(l.strip_suffix(b"\r").unwrap_or(l).to_vec());
        let mut pieces: Vec<&[u8]> = stream.split(|b| *b == b'\n').collect();
        let last = pieces.pop().unwrap_or_default();
        let mut expect: Vec<P> = pieces.into_iter().map(strip).collect();
        if !last.is_empty() {
            expect.push(strip(last));
        }
        assert_eq!(whole, expect);
    }
});
