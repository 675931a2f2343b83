//! `V2TimUserFullInfo`: the profile of the logged-in user.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `V2TimUserFullInfo`, with the SDK's field names.
///
/// ```json
/// {"userID":"alice","nickName":"Alice","faceUrl":"https://…/a.png","selfSignature":"hi",
///  "gender":2,"allowType":0,"customInfo":{"Tag_Profile_Custom_Team":"blue"},
///  "role":0,"level":0,"birthday":19900101}
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct UserFullInfo {
    /// The UserID.
    #[serde(rename = "userID")]
    pub user_id: String,
    /// Nickname (`Tag_Profile_IM_Nick`).
    pub nick_name: String,
    /// Avatar URL (`Tag_Profile_IM_Image`).
    pub face_url: String,
    /// Status line (`Tag_Profile_IM_SelfSignature`).
    pub self_signature: String,
    /// 0 unknown, 1 male, 2 female (`Tag_Profile_IM_Gender`).
    pub gender: u8,
    /// 0 anyone may add as friend, 1 needs confirmation, 2 nobody (`Tag_Profile_IM_AllowType`).
    pub allow_type: u8,
    /// Custom fields (`Tag_Profile_Custom_*`), keyed by the full tag.
    pub custom_info: BTreeMap<String, String>,
    /// Role (`Tag_Profile_IM_Role`).
    pub role: u32,
    /// Level (`Tag_Profile_IM_Level`).
    pub level: u32,
    /// Birthday as YYYYMMDD (`Tag_Profile_IM_BirthDay`).
    pub birthday: u32,
}

impl UserFullInfo {
    /// Appends the profile as JSON, byte for byte what `serde_json` writes for it (the
    /// event path's hand-written form; see [`super::json`]).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        self.write_json_noting(out, |_, _| {});
    }

    /// [`UserFullInfo::write_json`], telling `note` where each `customInfo` value's text
    /// went: its key, and the byte range of the value between its quotes in `out`.
    pub fn write_json_noting(
        &self,
        out: &mut Vec<u8>,
        mut note: impl FnMut(&str, std::ops::Range<usize>),
    ) {
        use super::json::{write_str, write_u64};
        // Named in full, so a new field cannot be missed here.
        let UserFullInfo {
            user_id,
            nick_name,
            face_url,
            self_signature,
            gender,
            allow_type,
            custom_info,
            role,
            level,
            birthday,
        } = self;
        out.extend_from_slice(b"{\"userID\":");
        write_str(out, user_id);
        out.extend_from_slice(b",\"nickName\":");
        write_str(out, nick_name);
        out.extend_from_slice(b",\"faceUrl\":");
        write_str(out, face_url);
        out.extend_from_slice(b",\"selfSignature\":");
        write_str(out, self_signature);
        out.extend_from_slice(b",\"gender\":");
        write_u64(out, u64::from(*gender));
        out.extend_from_slice(b",\"allowType\":");
        write_u64(out, u64::from(*allow_type));
        out.extend_from_slice(b",\"customInfo\":{");
        for (i, (k, v)) in custom_info.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(out, k);
            out.push(b':');
            let start = out.len() + 1;
            write_str(out, v);
            note(k, start..out.len() - 1);
        }
        out.extend_from_slice(b"},\"role\":");
        write_u64(out, u64::from(*role));
        out.extend_from_slice(b",\"level\":");
        write_u64(out, u64::from(*level));
        out.extend_from_slice(b",\"birthday\":");
        write_u64(out, u64::from(*birthday));
        out.push(b'}');
    }
}

/// A profile held as its JSON: exactly the bytes [`UserFullInfo::write_json`] (and
/// `serde_json`) write for it.
///
/// The daemon keeps and forwards profiles in this form: a push whose profile is already in
/// it (the server writes them so) is checked in one pass and its bytes go into the event
/// line as they are, with no profile built, rendered or freed. [`ProfileJson::to_info`]
/// reads one back when a request needs the fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileJson(bytes::Bytes);

impl ProfileJson {
    /// The JSON of `info`.
    pub fn from_info(info: &UserFullInfo) -> ProfileJson {
        let mut v = Vec::with_capacity(256);
        info.write_json(&mut v);
        ProfileJson(bytes::Bytes::from(v))
    }

    /// `bytes`, when they are exactly what [`UserFullInfo::write_json`] writes for some
    /// profile whose strings need no escapes: every member in order, no spaces,
    /// `customInfo` keys strictly ascending, numbers in range and without leading zeros,
    /// valid UTF-8. Anything else is `None` (read it with serde, which then also says what
    /// is wrong with it).
    pub fn from_canonical(bytes: bytes::Bytes) -> Option<ProfileJson> {
        // Printable ASCII with no backslash (what a server writes for most profiles) is
        // valid UTF-8, and a string in it ends at the next quote; anything else is
        // checked for UTF-8 and read string by string.
        let ascii = plain_ascii(&bytes);
        if !ascii {
            std::str::from_utf8(&bytes).ok()?;
        }
        (canonical_len(&bytes, ascii)? == bytes.len()).then_some(ProfileJson(bytes))
    }

    /// The same profile read from `copy` at `at`, when the bytes there are this one's: a
    /// holder of both then keeps one copy.
    pub fn found_in(&self, copy: &bytes::Bytes, at: usize) -> Option<ProfileJson> {
        let end = at.checked_add(self.0.len())?;
        (copy.get(at..end) == Some(&self.0[..])).then(|| ProfileJson(copy.slice(at..end)))
    }

    /// The bytes.
    pub fn bytes(&self) -> &bytes::Bytes {
        &self.0
    }

    /// The profile's fields.
    pub fn to_info(&self) -> Option<UserFullInfo> {
        serde_json::from_slice(&self.0).ok()
    }

    /// Whether the profile's `userID` is `user`.
    pub fn is_of(&self, user: &str) -> bool {
        // The first member; as is when it needed no escape.
        let head = b"{\"userID\":\"";
        if let Some(rest) = self.0.strip_prefix(&head[..]) {
            let n = super::json::plain_run(rest);
            if rest.get(n) == Some(&b'"') {
                return rest.get(..n) == Some(user.as_bytes());
            }
        }
        self.to_info().is_some_and(|i| i.user_id == user)
    }
}

/// The length of the canonical profile JSON at the start of `b` (see
/// [`ProfileJson::from_canonical`]), or `None`.
///
/// `ascii`: `b` is known to pass [`plain_ascii`] (no escape or control character can
/// appear, so a string is the bytes up to the next quote).
fn canonical_len(b: &[u8], ascii: bool) -> Option<usize> {
    let mut r = Reader { b, i: 0, ascii };
    r.lit(b"{\"userID\":")?;
    r.string()?;
    r.lit(b",\"nickName\":")?;
    r.string()?;
    r.lit(b",\"faceUrl\":")?;
    r.string()?;
    r.lit(b",\"selfSignature\":")?;
    r.string()?;
    r.lit(b",\"gender\":")?;
    r.uint(u64::from(u8::MAX))?;
    r.lit(b",\"allowType\":")?;
    r.uint(u64::from(u8::MAX))?;
    r.lit(b",\"customInfo\":{")?;
    if !r.eat(b'}') {
        let mut prev: Option<&[u8]> = None;
        loop {
            let k = r.string()?;
            // Strictly ascending: the order (and the uniqueness) of a BTreeMap's keys.
            if prev.is_some_and(|p| k <= p) {
                return None;
            }
            prev = Some(k);
            r.lit(b":")?;
            r.string()?;
            if !r.eat(b',') {
                r.lit(b"}")?;
                break;
            }
        }
    }
    r.lit(b",\"role\":")?;
    r.uint(u64::from(u32::MAX))?;
    r.lit(b",\"level\":")?;
    r.uint(u64::from(u32::MAX))?;
    r.lit(b",\"birthday\":")?;
    r.uint(u64::from(u32::MAX))?;
    r.lit(b"}")?;
    Some(r.i)
}

/// Whether every byte of `b` is printable ASCII or DEL (0x20..=0x7f) other than `\\`.
/// Written as one branch-free pass per 32 bytes, which the compiler turns into vector
/// compares.
fn plain_ascii(b: &[u8]) -> bool {
    fn bad(x: u8) -> bool {
        (x.wrapping_sub(0x20) >= 0x60) | (x == b'\\')
    }
    let mut chunks = b.chunks_exact(32);
    for c in &mut chunks {
        if c.iter().fold(false, |acc, &x| acc | bad(x)) {
            return false;
        }
    }
    !chunks.remainder().iter().any(|&x| bad(x))
}

/// Where the first `"` in `b` is. Most profile strings are short: their first 32 bytes
/// are looked at 8 at a time in a register before the vectorised search, whose set-up
/// costs more than a short string.
fn quote_at(b: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const QUOTES: u64 = ONES * b'"' as u64;
    let mut at = 0;
    while at < 32 {
        let Some(word) = b.get(at..at + 8) else {
            // Fewer than 8 bytes left.
            let tail = b.get(at..).unwrap_or_default();
            return tail.iter().position(|&c| c == b'"').map(|n| at + n);
        };
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        // A byte of `x` is zero where `word` holds a quote; the lowest set high bit marks
        // the first such byte (a borrow can only mark bytes above a true zero).
        let x = u64::from_le_bytes(w) ^ QUOTES;
        let zero = x.wrapping_sub(ONES) & !x & HIGH;
        if zero != 0 {
            return Some(at + (zero.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    memchr::memchr(b'"', b.get(at..).unwrap_or_default()).map(|n| at + n)
}

/// A position in the bytes being checked.
struct Reader<'a> {
    b: &'a [u8],
    i: usize,
    /// The bytes passed [`plain_ascii`].
    ascii: bool,
}

impl<'a> Reader<'a> {
    fn rest(&self) -> &'a [u8] {
        self.b.get(self.i..).unwrap_or_default()
    }

    /// The literal `l` (of a length known here, so the comparison is inlined).
    fn lit<const N: usize>(&mut self, l: &[u8; N]) -> Option<()> {
        let end = self.i.checked_add(N)?;
        (self.b.get(self.i..end)? == l).then(|| self.i = end)
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.b.get(self.i) == Some(&c);
        if hit {
            self.i += 1;
        }
        hit
    }

    /// A string with no escapes and no control characters; its contents.
    fn string(&mut self) -> Option<&'a [u8]> {
        if !self.eat(b'"') {
            return None;
        }
        let rest = self.rest();
        // Bytes that passed `plain_ascii` hold no backslash or control character: the
        // first quote closes the string.
        let n = if self.ascii {
            quote_at(rest)?
        } else {
            super::json::plain_string_end(rest)?
        };
        self.i += n + 1;
        Some(&rest[..n])
    }

    /// An unsigned integer as serde writes it (no sign, no leading zero, no fraction or
    /// exponent), at most `max`.
    fn uint(&mut self, max: u64) -> Option<u64> {
        let rest = self.rest();
        let mut n: u64 = 0;
        let mut digits = 0;
        while let Some(d) = rest.get(digits).map(|c| c.wrapping_sub(b'0')) {
            if d > 9 {
                break;
            }
            if digits == 10 {
                return None;
            }
            n = n.checked_mul(10)?.checked_add(u64::from(d))?;
            digits += 1;
        }
        if digits == 0 || (digits > 1 && rest.first() == Some(&b'0')) || n > max {
            return None;
        }
        self.i += digits;
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The word-at-a-time search finds the first quote wherever it is, as a plain
        /// search does.
        #[test]
        fn quote_at_finds_the_first_quote(b in proptest::collection::vec(
            prop_oneof![Just(b'"'), Just(0x21u8), Just(0xa2u8), any::<u8>()], 0..80)) {
            prop_assert_eq!(quote_at(&b), b.iter().position(|&c| c == b'"'));
        }
    }

    /// A profile from its four strings, its five numbers and its custom fields.
    fn profile(
        strings: impl Strategy<Value = (String, String, String, String)>,
        custom: impl Strategy<Value = BTreeMap<String, String>>,
    ) -> impl Strategy<Value = UserFullInfo> {
        let numbers = (
            any::<u8>(),
            any::<u8>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
        );
        (strings, numbers, custom).prop_map(|((u, n, f, s), (g, a, r, l, b), c)| UserFullInfo {
            user_id: u,
            nick_name: n,
            face_url: f,
            self_signature: s,
            gender: g,
            allow_type: a,
            custom_info: c,
            role: r,
            level: l,
            birthday: b,
        })
    }

    fn info() -> impl Strategy<Value = UserFullInfo> {
        profile(
            (
                any::<String>(),
                "[ -~\\x00-\\x1f]{0,24}",
                any::<String>(),
                any::<String>(),
            ),
            proptest::collection::btree_map(any::<String>(), "[ -~\\n]{0,12}", 0..5),
        )
    }

    proptest! {
        #[test]
        fn the_hand_written_form_is_serdes(i in info()) {
            let mut v = Vec::new();
            i.write_json(&mut v);
            prop_assert_eq!(&v, &serde_json::to_vec(&i).unwrap());
            prop_assert_eq!(serde_json::from_slice::<UserFullInfo>(&v).unwrap(), i);
        }
    }

    /// Profiles whose strings need no escapes (the form pushes take), non-ASCII included.
    fn plain_info() -> impl Strategy<Value = UserFullInfo> {
        let s = || "[a-zA-Z0-9_ ./:é€-]{0,12}";
        profile(
            (s(), s(), s(), s()),
            proptest::collection::btree_map(s(), s(), 0..5),
        )
    }

    /// The property [`ProfileJson::from_canonical`] promises: what it takes, serde reads,
    /// and that profile writes back as the very same bytes.
    fn holds_to_serde(bytes: &[u8]) -> Result<(), TestCaseError> {
        if let Some(j) = ProfileJson::from_canonical(bytes::Bytes::copy_from_slice(bytes)) {
            let i: UserFullInfo = serde_json::from_slice(bytes)
                .map_err(|e| TestCaseError::fail(format!("taken but serde refuses: {e}")))?;
            let mut v = Vec::new();
            i.write_json(&mut v);
            prop_assert_eq!(&v[..], bytes);
            prop_assert_eq!(j.to_info(), Some(i.clone()));
            prop_assert!(j.is_of(&i.user_id));
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn a_profile_needing_no_escapes_is_taken_as_written(
            i in info(),
        ) {
            let mut v = Vec::new();
            i.write_json(&mut v);
            let plain = |s: &str| !s.bytes().any(|c| c < 0x20 || c == b'"' || c == b'\\');
            let escapes = [&i.user_id, &i.nick_name, &i.face_url, &i.self_signature]
                .into_iter()
                .chain(i.custom_info.iter().flat_map(|(k, v)| [k, v]))
                .any(|s| !plain(s));
            let j = ProfileJson::from_canonical(bytes::Bytes::from(v.clone()));
            prop_assert_eq!(j.is_some(), !escapes);
            holds_to_serde(&v)?;
            let own = ProfileJson::from_info(&i);
            prop_assert_eq!(own.bytes().as_ref(), &v[..]);
            prop_assert!(own.is_of(&i.user_id));
        }

        #[test]
        fn a_plain_profile_is_taken(i in plain_info()) {
            let mut v = Vec::new();
            i.write_json(&mut v);
            let j = ProfileJson::from_canonical(bytes::Bytes::from(v.clone()));
            prop_assert!(j.is_some());
            holds_to_serde(&v)?;
        }

        #[test]
        fn a_changed_profile_is_taken_only_when_serde_agrees(
            i in plain_info(),
            at in any::<prop::sample::Index>(),
            by in prop_oneof![Just(b' '), Just(b'0'), Just(b'9'), Just(b'"'), Just(b'\\'),
                Just(b'}'), Just(b','), Just(b'Z'), Just(b'-'), Just(b'.'), any::<u8>()],
            mode in 0u8..3,
        ) {
            let mut v = Vec::new();
            i.write_json(&mut v);
            let k = at.index(v.len());
            match mode {
                0 => v[k] = by,
                1 => v.insert(k, by),
                _ => { v.remove(k); }
            }
            holds_to_serde(&v)?;
        }
    }

    #[test]
    fn what_is_not_canonical_is_refused() {
        let ok = r#"{"userID":"a","nickName":"","faceUrl":"","selfSignature":"","gender":0,"allowType":0,"customInfo":{"a":"1","b":"2"},"role":0,"level":0,"birthday":0}"#;
        // Once all printable ASCII (strings end at the next quote), once with a string
        // beyond it (read string by string).
        let wide = ok.replace(r#""nickName":"""#, "\"nickName\":\"Zoë \u{7f}\"");
        for text in [ok, wide.as_str()] {
            assert!(
                ProfileJson::from_canonical(bytes::Bytes::from(text.to_owned())).is_some(),
                "{text}"
            );
            for bad in [
                text.replace(r#""a":"1","b":"2""#, r#""b":"2","a":"1""#),
                text.replace(r#""a":"1","b":"2""#, r#""a":"1","a":"2""#),
                text.replace(r#""gender":0"#, r#""gender":256"#),
                text.replace(r#""gender":0"#, r#""gender":00"#),
                text.replace(r#""role":0"#, r#""role":4294967296"#),
                text.replace(r#""role":0"#, r#""role":10000000000"#),
                text.replace(r#""role":0"#, r#""role":-1"#),
                text.replace(r#""userID":"a""#, r#""userID":"a"b""#),
                text.replace(r#""userID":"a""#, r#""userID":"a\"b""#),
                text.replace(r#""userID":"a""#, r#""userID":"a\u0062""#),
                text.replace(r#""userID":"a""#, "\"userID\":\"a\u{1}\""),
                text.replace(r#""userID":"a""#, r#""userID":"a"#),
                text.replace(',', ", "),
                format!("{text} "),
                text.replace(r#""birthday":0}"#, r#""birthday":0,"x":1}"#),
            ] {
                assert!(
                    ProfileJson::from_canonical(bytes::Bytes::from(bad.clone())).is_none(),
                    "{bad}"
                );
            }
        }
        assert!(
            ProfileJson::from_canonical(bytes::Bytes::from_static(b"{\"userID\":\"\xff\""))
                .is_none()
        );
    }

    #[test]
    fn the_default_and_a_full_profile_write_as_serde_does() {
        let mut full = UserFullInfo {
            user_id: "alice".into(),
            nick_name: "Al\"ice\n".into(),
            face_url: "https://x/a.png".into(),
            self_signature: "é\u{1}".into(),
            gender: 2,
            allow_type: 1,
            role: u32::MAX,
            level: 7,
            birthday: 19_900_101,
            ..Default::default()
        };
        full.custom_info
            .insert("Tag_Profile_Custom_B".into(), "2".into());
        full.custom_info
            .insert("Tag_Profile_Custom_A".into(), "1".into());
        for i in [UserFullInfo::default(), full] {
            let mut v = Vec::new();
            i.write_json(&mut v);
            assert_eq!(v, serde_json::to_vec(&i).unwrap());
        }
    }
}
