//! Link options for imlink's binaries.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.contains("-linux-") {
        // Packed relative relocations (DT_RELR): the daemon is a position-independent
        // executable, and its relocation table (370 kB as RELA, nearly all of it relative
        // relocations) is read at every start and stays resident. Packed, it is 8 kB, and
        // the idle daemon's RSS is about 0.5 MiB smaller (BENCHMARKS.md). GNU ld (2.38+),
        // lld and mold take the option; the GNU linker packs only against a C library that
        // supports it (glibc 2.36+) and otherwise links as before.
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
