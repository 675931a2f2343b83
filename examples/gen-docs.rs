//! Generates the manual pages and shell completions from the same clap definitions the
//! binaries parse (`imlink::config::DaemonArgs`, `imlink::ctl::Cli`), so they cannot
//! drift from the flags; `imlinkd.toml(5)` is built around the commented default file
//! `etc/imlinkd.toml`.
//!
//!     cargo run --example gen-docs -- OUT_DIR
//!
//! writes `OUT_DIR/man/{imlinkd.8, imlinkd.toml.5, imlinkctl.1, imlinkctl-*.1}` and
//! `OUT_DIR/completions/{imlinkctl.bash, _imlinkctl, imlinkctl.fish}`. `make install`
//! runs it (see the Makefile's `docs` target).

use clap::CommandFactory;
use clap_complete::Shell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The commented default configuration, the body of `imlinkd.toml(5)`.
const DEFAULT_CONFIG: &str = include_str!("../etc/imlinkd.toml");

const MANUAL: &str = "imlink";

fn main() -> ExitCode {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: gen-docs OUT_DIR");
        return ExitCode::from(2);
    };
    match generate(&out) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gen-docs: {e}");
            ExitCode::FAILURE
        }
    }
}

fn generate(out: &Path) -> std::io::Result<Vec<PathBuf>> {
    let man = out.join("man");
    let comp = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&comp)?;
    let source = format!("imlink {}", env!("CARGO_PKG_VERSION"));
    let mut files = Vec::new();

    // imlinkd(8): the flags, then what a daemon's page needs besides them.
    let path = man.join("imlinkd.8");
    let mut page = Vec::new();
    clap_mangen::Man::new(imlink::config::DaemonArgs::command())
        .section("8")
        .source(&source)
        .manual(MANUAL)
        .render(&mut page)?;
    page.extend_from_slice(IMLINKD_EXTRA.as_bytes());
    std::fs::write(&path, page)?;
    files.push(path);

    // imlinkctl(1) and one page per subcommand (imlinkctl-usersig-gen(1), …).
    let mut ctl = imlink::ctl::Cli::command().disable_help_subcommand(true);
    ctl.build();
    files.extend(ctl_pages(&ctl, &man, &source, true)?);

    // imlinkd.toml(5).
    let path = man.join("imlinkd.toml.5");
    std::fs::write(&path, config_page(&source))?;
    files.push(path);

    // Completions for imlinkctl.
    for (shell, name) in [
        (Shell::Bash, "imlinkctl.bash"),
        (Shell::Zsh, "_imlinkctl"),
        (Shell::Fish, "imlinkctl.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(
            shell,
            &mut imlink::ctl::Cli::command(),
            "imlinkctl",
            &mut buf,
        );
        let path = comp.join(name);
        std::fs::write(&path, buf)?;
        files.push(path);
    }
    Ok(files)
}

fn ctl_pages(
    cmd: &clap::Command,
    dir: &Path,
    source: &str,
    top: bool,
) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        files.extend(ctl_pages(sub, dir, source, false)?);
    }
    let man = clap_mangen::Man::new(cmd.clone())
        .section("1")
        .source(source)
        .manual(MANUAL);
    let path = dir.join(man.get_filename());
    let mut page = Vec::new();
    man.render(&mut page)?;
    if top {
        page.extend_from_slice(IMLINKCTL_EXTRA.as_bytes());
    }
    let mut f = std::fs::File::create(&path)?;
    f.write_all(&page)?;
    files.push(path);
    Ok(files)
}

/// A line of literal text for roff: backslashes escaped, a leading `.` or `'` made
/// harmless, dashes kept as ASCII hyphen-minus (so they can be copied).
fn roff_literal(line: &str) -> String {
    let mut s = line.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        s.insert_str(0, "\\&");
    }
    s
}

fn config_page(source: &str) -> String {
    let mut p = String::new();
    p.push_str(&format!(
        ".TH imlinkd.toml 5 \"\" \"{source}\" \"{MANUAL}\"\n"
    ));
    p.push_str(CONFIG_HEAD);
    p.push_str(
        ".SH \"DEFAULT FILE\"\nEvery key, commented out and set to its default:\n.PP\n.nf\n.RS 2\n",
    );
    for line in DEFAULT_CONFIG.lines() {
        p.push_str(&roff_literal(line));
        p.push('\n');
    }
    p.push_str(".RE\n.fi\n");
    p.push_str(CONFIG_TAIL);
    p
}

const CONFIG_HEAD: &str = r#".SH NAME
imlinkd.toml \- configuration file of imlinkd
.SH SYNOPSIS
/etc/imlink/imlinkd.toml
.br
/etc/imlink/\fIACCOUNT\fR.toml (one per imlinkd@\fIACCOUNT\fR.service)
.SH DESCRIPTION
\fBimlinkd\fR(8) reads its configuration as TOML from \fB/etc/imlink/imlinkd.toml\fR, or
from the file named with \fB\-\-config\fR. Sections \fB[sdk]\fR, \fB[server]\fR,
\fB[tencent]\fR, \fB[reconnect]\fR, \fB[api]\fR, \fB[events]\fR, \fB[state]\fR and
\fB[auth]\fR hold the keys listed below. Unknown keys and bad values are errors that name
the key and the file.
.PP
\fB[auth]\fR names a UserSig provider: a program (\fBcommand\fR), an HTTPS endpoint
(\fBurl\fR) or the app's secret key (\fBkey_file\fR). With it the daemon logs in at start
as \fBauth.user_id\fR and renews the ticket before it expires without going offline.
\fBauth.key_file\fR and \fBauth.bearer_token_file\fR must be private to the daemon's user
(mode 0600): a file readable by group or others is refused and the daemon does not start.
Tickets, keys and tokens are never logged or printed.
.PP
Precedence, lowest to highest: built\-in defaults, the file, environment variables
\fBIMLINK_\fISECTION\fB__\fIKEY\fR (for example \fBIMLINK_SERVER__URL\fR), then
command\-line flags. \fBimlinkd \-\-check\-config\fR prints the effective configuration
and where each value came from.
.PP
On SIGHUP (\fBsystemctl reload imlinkd\fR) the daemon re\-reads the same sources and
applies \fBsdk.log_level\fR, the server timeouts, \fB[reconnect]\fR, the access lists
and limits of \fB[api]\fR and \fB[auth]\fR (but \fBauth.user_id\fR); the other keys need a
restart.
"#;

const CONFIG_TAIL: &str = r#".SH "UNDER SYSTEMD"
The units set \fB$RUNTIME_DIRECTORY\fR and \fB$STATE_DIRECTORY\fR, which are the
defaults of \fBapi.socket\fR (\fB$RUNTIME_DIRECTORY/imlinkd.sock\fR) and
\fBstate.dir\fR; leave both unset there. With \fBimlinkd.socket\fR the daemon serves the
socket systemd passes it and \fBapi.socket\fR and \fBapi.socket_mode\fR are not used.
.SH "SEE ALSO"
\fBimlinkd\fR(8), \fBimlinkctl\fR(1)
"#;

const IMLINKD_EXTRA: &str = r#".SH SIGNALS
.TP
\fBSIGTERM\fR, \fBSIGINT\fR
Stop: close the connection to the server cleanly and exit 0. The login stays saved in
the state directory, so the next start resumes it.
.TP
\fBSIGHUP\fR
Reload the reloadable settings (see \fBimlinkd.toml\fR(5)); a configuration with errors
is refused and the old one kept.
.SH SYSTEMD
Under a service manager (\fB$NOTIFY_SOCKET\fR) imlinkd sends \fBREADY=1\fR once its API
socket accepts connections, \fBSTATUS=\fR lines saying who is logged in and the state of
the connection, \fBRELOADING=1\fR and \fBREADY=1\fR around a reload, \fBSTOPPING=1\fR when
it stops, and \fBWATCHDOG=1\fR at half of \fB$WATCHDOG_USEC\fR (\fBWatchdogSec=\fR).
With socket activation (\fBimlinkd.socket\fR, \fB$LISTEN_FDS\fR) it serves the passed
socket and leaves it in place on exit. With \fB$JOURNAL_STREAM\fR set, log lines carry
their syslog priority and no timestamp. Units: \fBimlinkd.service\fR,
\fBimlinkd.socket\fR, and \fBimlinkd@.service\fR for one daemon per account
(\fB/etc/imlink/\fIACCOUNT\fB.toml\fR).
.SH ENVIRONMENT
.TP
\fBIMLINK_\fISECTION\fB__\fIKEY\fR
Override one configuration key, e.g. \fBIMLINK_SERVER__URL\fR.
.TP
\fBRUNTIME_DIRECTORY\fR, \fBSTATE_DIRECTORY\fR
Defaults of \fBapi.socket\fR and \fBstate.dir\fR (set by systemd).
.TP
\fBNOTIFY_SOCKET\fR, \fBWATCHDOG_USEC\fR, \fBWATCHDOG_PID\fR, \fBLISTEN_FDS\fR, \fBLISTEN_PID\fR, \fBJOURNAL_STREAM\fR
Set by systemd; see \fBSYSTEMD\fR above.
.SH FILES
.TP
\fB/etc/imlink/imlinkd.toml\fR
The configuration (\fBimlinkd.toml\fR(5)).
.TP
\fB/run/imlink/imlinkd.sock\fR
The JSON\-RPC API socket (group \fBimlink\fR, mode 0660).
.TP
\fB/var/lib/imlink/session.json\fR
The saved login (mode 0600).
.SH "EXIT STATUS"
0 after a clean stop; 1 when the configuration, the state directory or the socket is
unusable (the reason is logged); 70 after an internal error (systemd restarts it); 78
when \fBserver.backend = "tencent"\fR cannot work: Node.js missing, the bridge not
installed, or not the SDK version it pins (also with \fB\-\-check\-config\fR; the units
do not restart on it: \fBRestartPreventExitStatus=78\fR).
.SH "SEE ALSO"
\fBimlinkctl\fR(1), \fBimlinkd.toml\fR(5), \fBsystemd.service\fR(5), \fBsd_notify\fR(3)
"#;

const IMLINKCTL_EXTRA: &str = r#".SH ENVIRONMENT
.TP
\fBIMLINK_SOCKET\fR
Path of the daemon's socket (\fB\-\-socket\fR wins).
.SH "EXIT STATUS"
0 on success; 1 on an error, printed as \fBerror \fIcode\fB: \fImessage\fR on stderr;
2 on a usage error or when the daemon cannot be reached.
.SH "SEE ALSO"
\fBimlinkd\fR(8), \fBimlinkd.toml\fR(5)
"#;
