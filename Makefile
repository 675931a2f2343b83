# imlink — build, test, lint, bench, install.
CARGO   ?= cargo
PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR  := $(DESTDIR)$(PREFIX)/bin
BINS    := imlinkd imlinkctl imlink-devserver
TARGET  ?= $(or $(CARGO_TARGET_DIR),target)

.PHONY: all build test lint bench bench-smoke install uninstall clean demo

all: build

build:
	$(CARGO) build --release --bins

# Every test: unit, property and end-to-end (real binaries, real sockets).
test:
	$(CARGO) build --bins
	$(CARGO) test --all-targets
	$(MAKE) bench-smoke

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

# imlink beside its anchors (echo floor, Redis), one table: figure, imlink, anchor, ratio.
# Release binaries; a few minutes on 2 cores. Table also in bench/results/latest.md.
bench:
	$(CARGO) build --release --bins --example bench
	$(TARGET)/release/examples/bench --bin-dir $(TARGET)/release --out bench/results/latest.md

# The same harness with tiny counts on the debug build (seconds), so it never rots.
bench-smoke:
	$(CARGO) build --bins --example bench
	$(TARGET)/debug/examples/bench --smoke --bin-dir $(TARGET)/debug --out bench/results/smoke.md

install: build
	install -d $(BINDIR)
	for b in $(BINS); do install -m 0755 target/release/$$b $(BINDIR)/$$b; done

uninstall:
	for b in $(BINS); do rm -f $(BINDIR)/$$b; done

clean:
	$(CARGO) clean
