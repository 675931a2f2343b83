//! link/imlinkd-hot.ld, the linker script release builds of imlinkd are linked with
//! (build.rs, `make link-order`), is well formed and does what it says: the system's
//! linker takes it, and a function it names lands in `.text.imlink_hot`. Release builds
//! are not part of `make test`, so a broken script would otherwise surface only at
//! `make`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("link/imlinkd-hot.ld")
}

/// The function patterns, one per line: `*(.text.NAME .text.unlikely.NAME)` (a `#[cold]`
/// function's section is under `.text.unlikely.`).
fn patterns(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("*(.text."))
        .map(|l| {
            let inner = l
                .strip_prefix("*(")
                .and_then(|r| r.strip_suffix(')'))
                .unwrap_or_else(|| panic!("malformed pattern line {l:?}"));
            let mut w = inner.split(' ');
            let (plain, cold) = (w.next().unwrap_or(""), w.next().unwrap_or(""));
            let name = plain.strip_prefix(".text.").unwrap_or("");
            assert!(
                w.next().is_none() && cold.strip_prefix(".text.unlikely.") == Some(name),
                "each line names one function in both places: {l:?}"
            );
            name.to_owned()
        })
        .collect()
}

#[test]
fn the_hot_list_is_well_formed() {
    let text = std::fs::read_to_string(script()).unwrap();
    assert!(text.contains(".text.imlink_hot : {"), "no hot section");
    assert!(
        text.trim_end().ends_with("INSERT BEFORE .text;"),
        "the script must augment the default one, not replace it"
    );
    let pats = patterns(&text);
    assert!(pats.len() >= 100, "only {} patterns", pats.len());
    let mut seen = HashSet::new();
    for p in &pats {
        assert!(
            p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_$.*".contains(c)),
            "a character the linker's patterns treat specially, or a space: {p:?}"
        );
        assert!(seen.insert(p), "listed twice: {p:?}");
    }
    // The patterns survive rebuilds: no legacy hash or LTO number is pinned.
    let pinned = pats
        .iter()
        .filter(|p| {
            p.len() > 20 && {
                let tail = &p[p.len() - 20..];
                tail.starts_with("17h") && tail.ends_with('E') && !tail.contains('*')
            }
        })
        .count();
    assert_eq!(pinned, 0, "patterns pinned to one build's symbol hash");
}

#[test]
fn the_linker_takes_it_and_places_what_it_names() {
    let text = std::fs::read_to_string(script()).unwrap();
    let pats = patterns(&text);
    assert!(
        pats.iter().any(|p| p == "main"),
        "`main` runs at every start; the list must name it"
    );
    // A listed name that is also a C identifier, for a `#[cold]`-like function (its section
    // is `.text.unlikely.NAME`).
    let once = pats
        .iter()
        .find(|p| *p != "main" && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .expect("a listed function with a plain name");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("m.c");
    // `main` and the cold `once` are listed; `rest` is not.
    std::fs::write(
        &src,
        format!(
            "int rest(int x) {{ return x * 3; }}\n\
             __attribute__((cold, noinline)) int {once}(int x) {{ return x + 1; }}\n\
             int main(void) {{ return rest({once}(-1)); }}\n"
        ),
    )
    .unwrap();
    let exe = dir.path().join("m");
    let out = Command::new("cc")
        .args(["-O0", "-ffunction-sections"])
        .arg(&src)
        .arg(format!("-Wl,-T,{}", script().display()))
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("cc (the C compiler cargo links with)");
    assert!(
        out.status.success(),
        "the linker refused the script: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&exe).status().unwrap();
    assert!(run.success(), "the program linked with the script failed");
    let sections = Command::new("readelf")
        .args(["-SW"])
        .arg(&exe)
        .output()
        .expect("readelf");
    let sections = String::from_utf8_lossy(&sections.stdout);
    // `[16] .text.imlink_hot PROGBITS 0000000000401000 001000 000030 00 AX 0 0 16`
    let hot = sections
        .lines()
        .find_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let at = w.iter().position(|x| *x == ".text.imlink_hot")?;
            let start = u64::from_str_radix(w.get(at + 2)?, 16).ok()?;
            let size = u64::from_str_radix(w.get(at + 4)?, 16).ok()?;
            Some(start..start + size)
        })
        .unwrap_or_else(|| panic!("no .text.imlink_hot in the program:\n{sections}"));
    let syms = Command::new("nm").arg(&exe).output().expect("nm");
    let syms = String::from_utf8_lossy(&syms.stdout);
    let addr = |name: &str| {
        syms.lines()
            .find_map(|l| {
                let mut w = l.split_whitespace();
                let (a, _, n) = (w.next()?, w.next()?, w.next()?);
                (n == name).then(|| u64::from_str_radix(a, 16).ok())?
            })
            .unwrap_or_else(|| panic!("{name} not in the program"))
    };
    assert!(hot.contains(&addr("main")), "main is not in {hot:x?}");
    assert!(
        hot.contains(&addr(once)),
        "the listed cold function is not in {hot:x?}"
    );
    assert!(
        !hot.contains(&addr("rest")),
        "an unlisted function is in {hot:x?}"
    );
}
