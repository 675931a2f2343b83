# imlink — build, test, lint, bench, install.
CARGO   ?= cargo
PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR  := $(DESTDIR)$(PREFIX)/bin
BINS    := imlinkd imlinkctl imlink-devserver

.PHONY: all build test lint bench bench-smoke install uninstall clean demo

all: build

build:
	$(CARGO) build --release --bins

# Every test: unit, property and end-to-end (real binaries, real sockets).
test:
	$(CARGO) build --bins
	$(CARGO) test --all-targets

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

bench:
	@echo "make bench: the benchmark harness is not built yet"

bench-smoke:
	@echo "make bench-smoke: the benchmark harness is not built yet"

install: build
	install -d $(BINDIR)
	for b in $(BINS); do install -m 0755 target/release/$$b $(BINDIR)/$$b; done

uninstall:
	for b in $(BINS); do rm -f $(BINDIR)/$$b; done

clean:
	$(CARGO) clean
