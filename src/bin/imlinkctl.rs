//! `imlinkctl`: the command-line client of the socket, and the UserSig tool.
//! Everything lives in [`imlink::ctl`]; this binary only hands over to it.

fn main() -> std::process::ExitCode {
    imlink::ctl::main()
}
