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
        // The daemon's start-up and idle code first and together, in release builds
        // (link/imlinkd-hot.ld, written by `make link-order`). The kernel maps code in
        // 64-KiB blocks around each fault; with the code that runs strewn through the
        // binary, most of it stays resident. Grouped, the idle daemon's RSS went from 7.5
        // to 5.5 MiB (BENCHMARKS.md). The script only places sections: a function missing
        // from it costs resident size, never correctness. GNU ld and lld both take it.
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
        let hot = std::path::Path::new(&dir).join("link/imlinkd-hot.ld");
        println!("cargo:rerun-if-changed={}", hot.display());
        // IMLINK_LINK_ORDER=0: without it, for a linker that takes no linker scripts.
        println!("cargo:rerun-if-env-changed=IMLINK_LINK_ORDER");
        let wanted = std::env::var("IMLINK_LINK_ORDER").as_deref() != Ok("0");
        if wanted && std::env::var("PROFILE").as_deref() == Ok("release") && hot.exists() {
            println!("cargo:rustc-link-arg-bin=imlinkd=-Wl,-T,{}", hot.display());
        }
    }
}
