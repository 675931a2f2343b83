# imlink — build, test, lint, bench, install, demo.
#
#   make                     release build of the three binaries
#   sudo make install        binaries, systemd units, sysusers.d, man pages, completions,
#                            /etc/imlink/imlinkd.toml (kept if it exists)
#   make install DESTDIR=/tmp/pkg PREFIX=/usr   staged install for packaging
#                            (also the Tencent bridge, with `npm ci` when npm is present)
#   make bench-fleet         fleet mode's failover and moves on a real etcd cluster
#   make link-order          regenerate link/imlinkd-hot.ld, the daemon's code that runs first (valgrind)
#   make demo                the guided demo (DEMO_NONINTERACTIVE=1: unattended, checked)
CARGO   ?= cargo
PREFIX  ?= /usr/local
DESTDIR ?=
# The configuration lives in /etc whatever PREFIX is: the units read /etc/imlink.
SYSCONFDIR  ?= /etc
BINDIR      ?= $(PREFIX)/bin
# systemd reads units from /usr/local/lib/systemd/system as well as /usr/lib/systemd/system.
UNITDIR     ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
MANDIR      ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR  ?= $(PREFIX)/share/zsh/site-functions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d
# The Node program that drives Tencent's official SDK (bridge/tencent), and its packages.
BRIDGEDIR   ?= $(PREFIX)/lib/imlink/tencent-bridge
BRIDGE_FILES := index.js package.json package-lock.json
# Which build `install` copies: release (default) or debug (tests, to skip a release build).
BUILD       ?= release
TARGET_DIR  ?= $(or $(CARGO_TARGET_DIR),target)
PROFILE_FLAG := $(if $(filter release,$(BUILD)),--release,)
OUT     := $(TARGET_DIR)/$(BUILD)
DOCDIR  := $(OUT)/docs
BINS    := imlinkd imlinkctl imlink-devserver
UNITS   := imlinkd.service imlinkd.socket imlinkd@.service

.PHONY: all build test lint bench bench-smoke link-order bench-fleet fuzz soak soak-smoke docs install install-files install-bridge uninstall clean demo

all: build

build:
	$(CARGO) build $(PROFILE_FLAG) --bins

# Every test: unit, property and end-to-end (real binaries, real sockets, systemd tools,
# the install layout and the unattended demo).
test:
	$(CARGO) build --bins
	$(CARGO) test --all-targets
	$(MAKE) bench-smoke
	$(MAKE) soak-smoke

lint:
	$(CARGO) fmt --check
	cd fuzz && $(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

# imlink beside its anchors (echo floor, Redis), one table: figure, imlink, anchor, ratio.
# Release binaries; a few minutes on 2 cores. Table also in bench/results/latest.md.
bench:
	$(CARGO) build --release --bins --example bench
	$(TARGET_DIR)/release/examples/bench --bin-dir $(TARGET_DIR)/release --out bench/results/latest.md
	@scripts/link-order --check $(TARGET_DIR)/release/imlinkd | tee -a bench/results/latest.md

# Regenerates link/imlinkd-hot.ld, the daemon's start-up and idle functions that release
# builds place first (scripts/link-order; needs valgrind). Run it after changes that add
# code to start-up or the idle path, then rebuild; `make bench` says how much still matches.
link-order:
	$(CARGO) build --release --bins --example bench
	scripts/link-order $(TARGET_DIR)/release

# The same harness with tiny counts on the debug build (seconds), so it never rots.
bench-smoke:
	$(CARGO) build --bins --example bench
	$(TARGET_DIR)/debug/examples/bench --smoke --bin-dir $(TARGET_DIR)/debug --out bench/results/smoke.md

# Fleet mode on a real three-member etcd cluster (etcd, etcdctl in PATH): failover time
# (median, p99) and accounts moved per second. BUILD=debug skips the release build.
bench-fleet:
	$(CARGO) build $(PROFILE_FLAG) --example bench_fleet
	$(OUT)/examples/bench_fleet --out bench/results/fleet.md

# Every fuzzing target (fuzz/, cargo-fuzz on the nightly toolchain) for FUZZ_SECONDS each,
# from its checked-in seeds (fuzz/seeds/<target>) and the corpus earlier runs grew
# (fuzz/corpus/<target>, not checked in). Stops at the first crash (saved in
# fuzz/artifacts/<target>); each target's log is in fuzz/logs/, its last line printed.
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?= rpc api_lines ws_frame ws_stream web_frame bridge_line config usersig session_file
FUZZ_CARGO   ?= cargo +nightly
fuzz:
	cd fuzz && $(FUZZ_CARGO) fuzz build
	mkdir -p fuzz/logs
	@set -e; cd fuzz; for t in $(FUZZ_TARGETS); do \
	  mkdir -p corpus/$$t; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
	  if ! $(FUZZ_CARGO) fuzz run $$t corpus/$$t seeds/$$t -- \
	      -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
	      > logs/$$t.log 2>&1; then \
	    tail -40 logs/$$t.log; echo "fuzz: $$t FAILED (log: fuzz/logs/$$t.log)"; exit 1; \
	  fi; \
	  echo "  $$(grep -E '^#[0-9]+[[:space:]]+DONE' logs/$$t.log | tail -1)"; \
	  echo "  $$(grep -E '^stat::average_exec_per_sec' logs/$$t.log)"; \
	done

# The real binaries under a seeded schedule of faults, invariants checked
# (docs/reliability.md): SOAK_SECONDS (default 1800) on the release build; SOAK_SEED
# reproduces a run. The report is in bench/results/soak.md.
SOAK_SECONDS ?= 1800
soak:
	$(CARGO) build --release --bins --example soak
	SOAK_SECONDS=$(SOAK_SECONDS) $(TARGET_DIR)/release/examples/soak --bin-dir $(TARGET_DIR)/release --out bench/results/soak.md

# The same harness for 60 s on the debug build (part of `make test`).
soak-smoke:
	$(CARGO) build --bins --example soak
	SOAK_SECONDS=60 $(TARGET_DIR)/debug/examples/soak --bin-dir $(TARGET_DIR)/debug --out bench/results/soak-smoke.md

# Man pages and completions, generated from the clap definitions (examples/gen-docs.rs).
docs:
	$(CARGO) build $(PROFILE_FLAG) --example gen-docs
	rm -rf $(DOCDIR)
	$(OUT)/examples/gen-docs $(DOCDIR) >/dev/null

install: build docs install-files
	@if [ -z "$(DESTDIR)" ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then \
	  echo "creating the imlink user and group, reloading systemd"; \
	  systemd-sysusers $(SYSUSERSDIR)/imlink.conf || echo "warning: systemd-sysusers failed; create the user imlink yourself"; \
	  systemctl daemon-reload || true; \
	  echo "now: systemctl enable --now imlinkd.socket   (members of group imlink may use the socket)"; \
	fi

# Copies what `build` and `docs` made; no cargo involved beyond `docs`.
install-files: docs install-bridge
	install -d $(DESTDIR)$(BINDIR)
	for b in $(BINS); do install -m 0755 $(OUT)/$$b $(DESTDIR)$(BINDIR)/$$b; done
	install -d $(DESTDIR)$(UNITDIR)
	for u in $(UNITS); do \
	  sed 's|/usr/local/bin/|$(BINDIR)/|g' systemd/$$u > $(DESTDIR)$(UNITDIR)/$$u.tmp && \
	  chmod 0644 $(DESTDIR)$(UNITDIR)/$$u.tmp && mv $(DESTDIR)$(UNITDIR)/$$u.tmp $(DESTDIR)$(UNITDIR)/$$u; \
	done
	install -D -m 0644 systemd/imlink.sysusers $(DESTDIR)$(SYSUSERSDIR)/imlink.conf
	install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8
	install -m 0644 $(DOCDIR)/man/*.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 $(DOCDIR)/man/*.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 0644 $(DOCDIR)/man/*.8 $(DESTDIR)$(MANDIR)/man8/
	install -D -m 0644 $(DOCDIR)/completions/imlinkctl.bash $(DESTDIR)$(BASHCOMPDIR)/imlinkctl
	install -D -m 0644 $(DOCDIR)/completions/_imlinkctl $(DESTDIR)$(ZSHCOMPDIR)/_imlinkctl
	install -D -m 0644 $(DOCDIR)/completions/imlinkctl.fish $(DESTDIR)$(FISHCOMPDIR)/imlinkctl.fish
	install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/imlink
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/imlink/imlinkd.toml ]; then \
	  echo "keeping the existing $(DESTDIR)$(SYSCONFDIR)/imlink/imlinkd.toml (the default is in $(DESTDIR)$(MANDIR)/man5/imlinkd.toml.5)"; \
	else \
	  install -m 0644 etc/imlinkd.toml $(DESTDIR)$(SYSCONFDIR)/imlink/imlinkd.toml; \
	fi

# The bridge's files, then its pinned packages (npm ci: the registry, or the npm cache with
# npm_config_offline=true). Without npm the files are copied and the last step is printed.
install-bridge:
	install -d $(DESTDIR)$(BRIDGEDIR)
	for f in $(BRIDGE_FILES); do install -m 0644 bridge/tencent/$$f $(DESTDIR)$(BRIDGEDIR)/$$f; done
	@if command -v npm >/dev/null 2>&1; then \
	  echo "installing the Tencent bridge's packages (npm ci) into $(DESTDIR)$(BRIDGEDIR)"; \
	  npm ci --omit=dev --no-audit --no-fund --prefix $(DESTDIR)$(BRIDGEDIR); \
	else \
	  echo "npm not found: the Tencent bridge is in $(DESTDIR)$(BRIDGEDIR) without its packages;"; \
	  echo "install Node.js >= 18 and npm, then run: npm ci --omit=dev --prefix $(BRIDGEDIR)"; \
	fi

# Removes what install-files put in place, except the configuration in /etc/imlink (yours)
# and the state in /var/lib/imlink.
uninstall:
	@if [ -z "$(DESTDIR)" ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then \
	  systemctl disable --now imlinkd.socket imlinkd.service 2>/dev/null || true; \
	fi
	for b in $(BINS); do rm -f $(DESTDIR)$(BINDIR)/$$b; done
	for u in $(UNITS); do rm -f $(DESTDIR)$(UNITDIR)/$$u; done
	rm -f $(DESTDIR)$(SYSUSERSDIR)/imlink.conf
	rm -f $(DESTDIR)$(MANDIR)/man1/imlinkctl.1 $(DESTDIR)$(MANDIR)/man1/imlinkctl-*.1
	rm -f $(DESTDIR)$(MANDIR)/man5/imlinkd.toml.5 $(DESTDIR)$(MANDIR)/man8/imlinkd.8
	rm -f $(DESTDIR)$(BASHCOMPDIR)/imlinkctl $(DESTDIR)$(ZSHCOMPDIR)/_imlinkctl $(DESTDIR)$(FISHCOMPDIR)/imlinkctl.fish
	rm -rf $(DESTDIR)$(BRIDGEDIR)
	rmdir $(DESTDIR)$(PREFIX)/lib/imlink 2>/dev/null || true
	@if [ -z "$(DESTDIR)" ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then \
	  systemctl daemon-reload || true; \
	fi
	@echo "left in place: $(DESTDIR)$(SYSCONFDIR)/imlink (configuration), /var/lib/imlink (state), the imlink user"

# The guided demo: devserver, daemon, login, server restart, kick, ticket expiry.
demo:
	$(CARGO) build --bins
	TARGET_DIR=$(TARGET_DIR) scripts/demo.sh

clean:
	$(CARGO) clean
