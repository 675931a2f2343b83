#!/usr/bin/env bash
# imlink demo: a local IM server emulator, the daemon, and what the daemon does when
# things go wrong — shown through its live event stream.
#
#   make demo                        guided: pauses between steps (press Enter)
#   make demo DEMO_NONINTERACTIVE=1  unattended; exits 0 only if every step behaved
#
# Needs: the debug build (make demo builds it) and socat. Everything runs on temporary
# paths and 127.0.0.1; all of it is removed on exit, Ctrl-C included.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TARGET_DIR="${TARGET_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
BIN="${DEMO_BIN:-$TARGET_DIR/debug}"
INTERACTIVE=1
if [ "${DEMO_NONINTERACTIVE:-0}" = 1 ] || [ ! -t 0 ]; then INTERACTIVE=0; fi
APP=1400000001
STEP_TIMEOUT="${DEMO_TIMEOUT:-15}"   # seconds each check may take

for b in imlink-devserver imlinkd imlinkctl; do
  [ -x "$BIN/$b" ] || { echo "demo: $BIN/$b is missing; run 'cargo build --bins' (or make demo)" >&2; exit 2; }
done
command -v socat >/dev/null || { echo "demo: socat is needed (apt-get install socat)" >&2; exit 2; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/imlink-demo.XXXXXX")"
PIDS=()
DEVSERVER_PID=
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}" $DEVSERVER_PID; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}" $DEVSERVER_PID; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'echo; echo "interrupted"; exit 130' INT TERM

# ---------------------------------------------------------------- narration and checks

bold() { if [ -t 1 ]; then printf '\033[1m%s\033[0m\n' "$*"; else printf '%s\n' "$*"; fi; }
say() { printf '%s\n' "$*"; }
step() {
  echo
  bold "== $* =="
}
pause() {
  if [ "$INTERACTIVE" = 1 ]; then
    read -r -p "   (Enter to continue) " _ || true
  fi
}
fail() {
  echo
  bold "DEMO FAILED: $*"
  say "--- daemon log (last lines) ---"; tail -n 30 "$WORK/imlinkd.log" 2>/dev/null || true
  say "--- devserver log (last lines) ---"; tail -n 15 "$WORK/devserver.log" 2>/dev/null || true
  exit 1
}

# Waits until "$@" succeeds, at most STEP_TIMEOUT seconds; $1 says what for.
wait_for() {
  local what="$1"; shift
  local deadline=$((SECONDS + STEP_TIMEOUT))
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || fail "no $what within ${STEP_TIMEOUT}s"
    sleep 0.05
  done
}

# One JSON-RPC call to a daemon socket; prints the reply line. (The daemon closes the
# connection after the reply; -t only bounds a reply that does not come.)
rpc_at() {
  local sock="$1" method="$2" params="${3:-{\}}"
  printf '{"jsonrpc":"2.0","id":1,"method":"%s","params":%s}\n' "$method" "$params" |
    socat -t "$STEP_TIMEOUT" - "UNIX-CONNECT:$sock"
}
rpc() { rpc_at "$SOCK" "$@"; }

# Events seen so far (one JSON line each), and a mark to look for new ones after.
events_count() { wc -l < "$WORK/events.jsonl"; }
MARK=0
mark() { MARK="$(events_count)"; }
# Whether an event named $1 (and containing $2, if given) arrived after the mark.
event_since_mark() {
  tail -n +"$((MARK + 1))" "$WORK/events.jsonl" | grep "\"event\":\"$1\"" | grep -q -- "${2:-}"
}
expect_event() {
  wait_for "$1 event${2:+ with $2}" event_since_mark "$1" "${2:-}"
}
status_has() { rpc status | grep -q -- "$1"; }
expect_status() {
  wait_for "status with $1" status_has "$1"
}
status_at_has() { rpc_at "$1" status | grep -q -- "$2"; }
# The seq of the newest event the stream has shown (0 before the first).
shown_seq() {
  local seq
  seq="$(tail -n 1 "$WORK/events.jsonl" | grep -o '"seq":[0-9]*' | head -n 1 | cut -d: -f2)"
  printf '%s\n' "${seq:-0}"
}
shown_through() { [ "$(shown_seq)" -ge "$1" ]; }
# Waits until the stream has shown every event the daemon had emitted when this was
# called (status.lastSeq): after it, "no event X" is a fact, not a guess.
catch_up() {
  local last
  last="$(rpc status | grep -o '"lastSeq":[0-9]*' | cut -d: -f2)"
  [ -n "$last" ] || fail "no lastSeq in the status"
  wait_for "the event stream to show event $last" shown_through "$last"
}

# ---------------------------------------------------------------- the pieces

ticket() { # user, lifetime in seconds
  "$BIN/imlinkctl" usersig gen --sdk-app-id "$APP" --key-file "$WORK/key" --user "$1" --expire "$2"
}

start_devserver() { # [listen address]
  : > "$WORK/devserver.out"
  "$BIN/imlink-devserver" --app "$APP:@$WORK/key" --listen "${1:-127.0.0.1:0}" --faults \
    > "$WORK/devserver.out" 2>> "$WORK/devserver.log" &
  DEVSERVER_PID=$!
  wait_for "devserver start" grep -q '^listening on ' "$WORK/devserver.out"
  ADDR="$(sed -n 's/^listening on //p' "$WORK/devserver.out" | head -n 1)"
}

write_config() { # file, socket, state dir, server address
  cat > "$1" <<EOF
[sdk]
app_id = $APP
log_level = "info"
usersig_expiring_lead_secs = 4
[server]
url = "ws://$4/v1/connect"
connect_timeout_ms = 2000
request_timeout_ms = 2000
login_timeout_ms = 5000
heartbeat_interval_ms = 500
heartbeat_timeout_ms = 1500
[reconnect]
initial_ms = 300
max_ms = 2000
stable_ms = 2000
[api]
socket = "$2"
[state]
dir = "$3"
EOF
}

connectable() { socat -u /dev/null "UNIX-CONNECT:$1" 2>/dev/null; }

start_daemon() { # name; sets the daemon's socket path in $REPLY_SOCK
  local name="$1"
  write_config "$WORK/$name.toml" "$WORK/$name.sock" "$WORK/$name-state" "$ADDR"
  "$BIN/imlinkd" --config "$WORK/$name.toml" 2>> "$WORK/$name.log" &
  PIDS+=("$!")
  REPLY_SOCK="$WORK/$name.sock"
  wait_for "$name socket" connectable "$REPLY_SOCK"
}

# Pretty-prints the event stream: "  ▸ onConnectSuccess {}".
show_events() {
  local line name data
  while IFS= read -r line; do
    case "$line" in
      *'"method":"event"'*) ;;
      *'"result"'*) : > "$WORK/subscribed"; continue ;;  # the reply to subscribe
      *) continue ;;
    esac
    name="$(printf '%s' "$line" | sed -n 's/.*"event":"\([A-Za-z]*\)".*/\1/p')"
    data="$(printf '%s' "$line" | sed -n 's/.*"data":\(.*\)}}$/\1/p')"
    # Shown first, then recorded: once the demo sees the event in the file (and may
    # move on, or end), its line is already out.
    printf '   \u25b8 event %-22s %s\n' "$name" "$data"
    printf '%s\n' "$line" >> "$WORK/events.jsonl"
  done
}

# ---------------------------------------------------------------- the demo

: > "$WORK/events.jsonl"
head -c 24 /dev/urandom | base64 > "$WORK/key"

bold "imlink demo — work directory $WORK"
say "imlink-devserver emulates the IM access server; imlinkd keeps an account logged in"
say "and reports everything as events on its Unix socket. Lines marked ▸ are the live"
say "event stream, read by: echo '{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"subscribe\"}' | socat -t 1000000 - UNIX-CONNECT:SOCKET"

step "1. Start the server emulator and the daemon"
start_devserver
say "   imlink-devserver listens on $ADDR (app $APP, a freshly generated key, fault injection on)"
start_daemon imlinkd
SOCK="$REPLY_SOCK"
say "   imlinkd serves $SOCK"
# The live event stream: one subscriber for the whole demo.
printf '{"jsonrpc":"2.0","id":1,"method":"subscribe"}\n' |
  socat -t 1000000 - "UNIX-CONNECT:$SOCK" 2>/dev/null | show_events &
PIDS+=("$!")
# Every event from here on is shown: the subscription is in place.
wait_for "the event stream" test -e "$WORK/subscribed"
expect_status '"connection":"connected"'
say "   The daemon is connected; nobody is logged in yet."
pause

step "2. Log in as alice"
TICKET="$(ticket alice 3600)"
say "   ticket: imlinkctl usersig gen --sdk-app-id $APP --key-file KEY --user alice --expire 3600"
say "   call:   {\"method\":\"login\",\"params\":{\"userID\":\"alice\",\"userSig\":\"…\"}} via socat"
mark
reply="$(rpc login "{\"userID\":\"alice\",\"userSig\":\"$TICKET\"}")"
say "   reply:  $reply"
case "$reply" in *'"result"'*) ;; *) fail "login refused: $reply" ;; esac
expect_event onLoginStatusChanged '"status":1'
expect_status '"loginStatus":1'
say "   alice is logged in (status 1, V2TIM_STATUS_LOGINED)."
pause

step "3. The server dies (SIGKILL) and comes back on the same port"
mark
kill -KILL "$DEVSERVER_PID"; wait "$DEVSERVER_PID" 2>/dev/null || true
say "   killed the devserver; the daemon notices the connection is gone…"
expect_event onConnectFailed
say "   …and retries with backoff. Starting the devserver again on $ADDR."
start_devserver "$ADDR"
expect_event onConnectSuccess
expect_event onRelogin '"success":true'
expect_status '"online":true'
status_has '"loginStatus":1' || fail "not logged in: $(rpc status)"
status_has '"userID":"alice"' || fail "another user is logged in: $(rpc status)"
catch_up
if event_since_mark onKickedOffline; then fail "kicked while reconnecting"; fi
if event_since_mark onLoginStatusChanged; then fail "the status changed while reconnecting"; fi
say "   Reconnected, and alice is online again without a new login call: the daemon"
say "   logged her in silently with the stored ticket."
pause

step "4. alice logs in on a second Linux device: the first one is kicked"
say "   A second imlinkd (another device, same platform) logs in as alice. The server"
say "   lets the newest login win and pushes kickedOffline to the first."
start_daemon second
SECOND_SOCK="$REPLY_SOCK"
wait_for "second device connected" status_at_has "$SECOND_SOCK" '"connection":"connected"'
mark
reply="$(rpc_at "$SECOND_SOCK" login "{\"userID\":\"alice\",\"userSig\":\"$(ticket alice 3600)\"}")"
case "$reply" in *'"result"'*) ;; *) fail "second device login refused: $reply" ;; esac
expect_event onKickedOffline
expect_event onLoginStatusChanged '"status":3'
expect_status '"loginStatus":3'
say "   Kicked: status 3 (LOGOUT). The daemon does not log in again by itself — two"
say "   devices doing that would kick each other forever."
rpc_at "$SECOND_SOCK" logout > /dev/null
pause

step "5. A ticket that runs out while online"
say "   Log in with a ticket valid for 6 s; the daemon warns 4 s before it expires"
say "   (sdk.usersig_expiring_lead_secs = 4), then reports the expiry."
mark
reply="$(rpc login "{\"userID\":\"alice\",\"userSig\":\"$(ticket alice 6)\"}")"
case "$reply" in *'"result"'*) ;; *) fail "login with the short ticket refused: $reply" ;; esac
expect_event onLoginStatusChanged '"status":1'
expect_event onUserSigExpiring
say "   onUserSigExpiring: renew now by logging in again with a fresh ticket."
expect_event onUserSigExpired
expect_status '"loginStatus":3'
say "   Expired: status 3, and no retry with the dead ticket."

step "Done"
say "Every step behaved. Cleaning up $WORK."
