//! `imlink-devserver`: the emulator of the IM access server. See `docs/devserver.md`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    imlink::devserver::run(imlink::devserver::Args::parse())
}
