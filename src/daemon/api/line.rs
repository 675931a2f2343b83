//! Splitting a byte stream into request lines, with a length limit that keeps going after
//! an over-long line.

/// One item of input.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    /// A complete line without its `\n` (and without a final `\r`).
    Line(&'a [u8]),
    /// A line longer than the limit; its bytes were dropped.
    TooLong,
}

/// Carries an incomplete line from one read to the next. Holds no memory while every read
/// ends with a complete line (the usual case).
#[derive(Debug, Default)]
pub struct Lines {
    partial: Vec<u8>,
    discarding: bool,
}

/// A line without its final `\r`, if any (CRLF input).
pub fn strip_cr(l: &[u8]) -> &[u8] {
    l.strip_suffix(b"\r").unwrap_or(l)
}

impl Lines {
    /// Feeds `data`; `each` gets every complete line (or `TooLong`) in order.
    pub fn feed(&mut self, mut data: &[u8], max: usize, mut each: impl FnMut(Piece<'_>)) {
        if self.discarding || !self.partial.is_empty() {
            match memchr::memchr(b'\n', data) {
                None => {
                    if !self.discarding {
                        if self.partial.len() + data.len() > max {
                            self.partial = Vec::new();
                            self.discarding = true;
                            each(Piece::TooLong);
                        } else {
                            self.partial.extend_from_slice(data);
                        }
                    }
                    return;
                }
                Some(i) => {
                    if self.discarding {
                        self.discarding = false;
                    } else if self.partial.len() + i > max {
                        self.partial = Vec::new();
                        each(Piece::TooLong);
                    } else {
                        self.partial.extend_from_slice(&data[..i]);
                        let line = std::mem::take(&mut self.partial);
                        each(Piece::Line(strip_cr(&line)));
                    }
                    data = &data[i + 1..];
                }
            }
        }
        while let Some(i) = memchr::memchr(b'\n', data) {
            let l = &data[..i];
            if l.len() > max {
                each(Piece::TooLong);
            } else {
                each(Piece::Line(strip_cr(l)));
            }
            data = &data[i + 1..];
        }
        if !data.is_empty() {
            if data.len() > max {
                self.discarding = true;
                each(Piece::TooLong);
            } else {
                self.partial.extend_from_slice(data);
            }
        }
    }

    /// The end of input: a last line without `\n` still counts.
    pub fn finish(&mut self, mut each: impl FnMut(Piece<'_>)) {
        let line = std::mem::take(&mut self.partial);
        if !line.is_empty() && !self.discarding {
            each(Piece::Line(strip_cr(&line)));
        }
        self.discarding = false;
    }

    /// Nothing is held: no partial line, no long line being discarded.
    pub fn is_empty(&self) -> bool {
        self.partial.is_empty() && !self.discarding
    }

    /// Bytes held for an incomplete line.
    pub fn held(&self) -> usize {
        self.partial.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]], max: usize) -> Vec<String> {
        let mut l = Lines::default();
        let mut out = Vec::new();
        let mut push = |p: Piece<'_>| {
            out.push(match p {
                Piece::Line(d) => String::from_utf8_lossy(d).into_owned(),
                Piece::TooLong => "<too long>".into(),
            })
        };
        for c in chunks {
            l.feed(c, max, &mut push);
        }
        l.finish(&mut push);
        out
    }

    #[test]
    fn lines_split_across_reads_and_crlf() {
        assert_eq!(run(&[b"ab\ncd\r\nef"], 10), ["ab", "cd", "ef"]);
        assert_eq!(run(&[b"a", b"b", b"\nc", b"d\n"], 10), ["ab", "cd"]);
        assert_eq!(run(&[b"\n\n"], 10), ["", ""]);
    }

    #[test]
    fn long_lines_are_reported_once_and_the_next_one_served() {
        assert_eq!(run(&[b"0123456789abc\nok\n"], 5), ["<too long>", "ok"]);
        assert_eq!(
            run(&[b"123456", b"789", b"0\nnext\n"], 4),
            ["<too long>", "next"]
        );
        assert_eq!(run(&[b"12", b"345", b"6\nok"], 4), ["<too long>", "ok"]);
        assert_eq!(run(&[b"1234", b"\n"], 4), ["1234"]);
        let mut l = Lines::default();
        l.feed(b"xxxxxxxxxxxx", 4, |_| {});
        assert_eq!(l.held(), 0, "a discarded line holds no memory");
    }
}
