//! `imlinkctl fleet status|add|remove`: the fleet's accounts and who owns them
//! (`fleetStatus`, `fleetAdd`, `fleetRemove`; any member of the fleet may be asked).

use std::io::Write;
use std::path::Path;

use clap::Subcommand;
use serde_json::{json, Value};

use super::client::{Client, Failure};
use crate::codes::code;
use crate::proto::rpc::RpcError;

/// `imlinkctl fleet …`.
#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// The live members and how many accounts each owns, then every account and its
    /// owner; accounts nobody owns right now are listed as unowned.
    Status,
    /// Add an account to the fleet: a member claims it and logs it in.
    Add {
        /// The UserID.
        #[arg(value_name = "USERID")]
        user: String,
    },
    /// Remove an account from the fleet: its owner logs it out.
    Remove {
        /// The UserID.
        #[arg(value_name = "USERID")]
        user: String,
    },
}

fn write_line(out: &mut dyn Write, text: &str) -> Result<(), Failure> {
    writeln!(out, "{text}")
        .and_then(|_| out.flush())
        .map_err(|e| {
            Failure::Rpc(RpcError {
                code: code::INTERNAL_ERROR,
                message: format!("cannot write the output: {e}"),
            })
        })
}

fn call(socket: &Path, method: &str, params: Option<Value>) -> Result<Value, Failure> {
    let raw = match params {
        Some(p) => Some(serde_json::value::to_raw_value(&p).map_err(|e| {
            Failure::Rpc(RpcError {
                code: code::INTERNAL_ERROR,
                message: format!("cannot encode the params: {e}"),
            })
        })?),
        None => None,
    };
    let r = Client::connect(socket)?.call_raw(method, raw.as_deref())?;
    serde_json::from_str(r.get()).map_err(|e| {
        Failure::Rpc(RpcError {
            code: code::INTERNAL_ERROR,
            message: format!("the daemon's answer is not JSON: {e}"),
        })
    })
}

/// The readable form of a `fleetStatus` result.
pub fn format_status(v: &Value) -> String {
    let text = |v: &Value| crate::text::clean(v.as_str().unwrap_or("?")).into_owned();
    let mut lines = Vec::new();
    let members = v["members"].as_array().cloned().unwrap_or_default();
    let accounts = v["accounts"].as_array().cloned().unwrap_or_default();
    let unowned = v["unowned"].as_array().cloned().unwrap_or_default();
    lines.push(format!(
        "members: {}   accounts: {} owned, {} unowned",
        members.len(),
        accounts.len(),
        unowned.len()
    ));
    for m in &members {
        lines.push(format!(
            "  {:<24} {} accounts",
            text(&m["name"]),
            m["accounts"].as_u64().unwrap_or(0)
        ));
    }
    for a in &accounts {
        lines.push(format!("{:<34} {}", text(&a["userID"]), text(&a["owner"])));
    }
    for u in &unowned {
        lines.push(format!("{:<34} (unowned)", text(u)));
    }
    lines.join("\n")
}

/// Runs `imlinkctl fleet …`.
pub fn run(
    socket: &Path,
    cmd: &FleetCommand,
    json_out: bool,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let (r, done) = match cmd {
        FleetCommand::Status => {
            let r = call(socket, "fleetStatus", None)?;
            let text = format_status(&r);
            (r, text)
        }
        FleetCommand::Add { user } => {
            let r = call(socket, "fleetAdd", Some(json!({ "userID": user })))?;
            let text = if r["changed"] == json!(true) {
                format!("{} added to the fleet", crate::text::clean(user))
            } else {
                format!("{} was already in the fleet", crate::text::clean(user))
            };
            (r, text)
        }
        FleetCommand::Remove { user } => {
            let r = call(socket, "fleetRemove", Some(json!({ "userID": user })))?;
            let text = if r["changed"] == json!(true) {
                format!("{} removed from the fleet", crate::text::clean(user))
            } else {
                format!("{} was not in the fleet", crate::text::clean(user))
            };
            (r, text)
        }
    };
    if json_out {
        write_line(out, &serde_json::to_string(&r).unwrap_or_default())
    } else {
        write_line(out, &done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_text_lists_members_then_accounts() {
        let v = json!({
            "members": [{"name": "h1", "accounts": 1}],
            "accounts": [{"userID": "alice", "owner": "h1"}],
            "unowned": ["bob\n"],
        });
        let t = format_status(&v);
        assert!(
            t.starts_with("members: 1   accounts: 1 owned, 1 unowned\n"),
            "{t}"
        );
        assert!(t.contains("h1                       1 accounts"), "{t}");
        assert!(t.contains("alice"), "{t}");
        assert!(t.contains("bob\\n"), "control characters escaped: {t}");
    }
}
