# ringchat: a fault-tolerant chat for one LAN.  `make`, `make test`, `make demo`.
SHELL = /bin/bash
# The source lists below are the architecture: one module per concern.

PREFIX  ?= /usr/local
DESTDIR ?=
CC      ?= cc
PYTHON  ?= /usr/bin/python3
BUILD   ?= build
SEEDS   ?= 3000
FUZZRUNS ?= 1000000

# Shared modules, pure protocol logic first, then the I/O around it.
LIB_SRCS =
LIB_SRCS += src/log.c        # leveled log, rate-limited complaints
LIB_SRCS += src/uuid.c       # server identities and their order
LIB_SRCS += src/wire.c       # datagram codec kind@to@body@from[@k=v]
LIB_SRCS += src/ring.c       # membership sorted by UUID, next live neighbour
LIB_SRCS += src/election.c   # LCR election state machine (pure)
LIB_SRCS += src/heartbeat.c  # beats and failure detector (pure)
LIB_SRCS += src/relay.c      # users, rooms, streams, exactly-once delivery (pure)
LIB_SRCS += src/client.c     # client session state machine (pure)
LIB_SRCS += src/auth.c       # cluster key, MACs, replay windows, sessions (libsodium)
LIB_SRCS += src/pwworker.c   # password hashing off the event loop (one thread)
LIB_SRCS += src/sess.c       # the leader's table of client sessions (pure)
LIB_SRCS += src/store.c      # state files and JSON (the only cJSON user)
LIB_SRCS += src/loop.c       # poll loop with monotonic deadlines
LIB_SRCS += src/net.c        # UDP sockets, interfaces, broadcast address
LIB_SRCS += src/control.c    # operator commands: stdin and the ctl socket
LIB_SRCS += src/ratelimit.c  # per-source budgets for failed datagrams (pure)

SERVER_SRCS =
SERVER_SRCS += src/events.c     # --events JSON lines for timelines
SERVER_SRCS += src/chat.c       # chat service: relay, replication to backups
SERVER_SRCS += src/server.c     # daemon state: discovery, election, heartbeats glued
SERVER_SRCS += src/ringchatd.c  # server main: options, identity, sockets, loop

CLIENT_SRCS =
CLIENT_SRCS += src/ringchat.c   # client main

UNIT_TESTS = wire uuid ring election heartbeat relay store control client auth ratelimit sess pwworker
SIMS       = sim_election
TOOLS      = loadgen forwarder flood  # benchmark programs, tools/*.c

PKGS     = libbsd-overlay libcjson libsodium
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CMOCKA_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null)

WARN = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
	-Wmissing-prototypes -Wmissing-declarations -Wformat=2 -Wcast-qual \
	-Wpointer-arith -Wwrite-strings -Wundef -Wvla -Wimplicit-fallthrough \
	-Wold-style-definition -Wredundant-decls -Wnested-externs
CFLAGS ?= -O2 -g
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) $(PKG_CFLAGS) $(CFLAGS) $(EXTRA_CFLAGS)
LDLIBS  = $(PKG_LIBS) $(EXTRA_LDFLAGS)

LIB_C    := $(strip $(LIB_SRCS))
SERVER_C := $(strip $(SERVER_SRCS))
CLIENT_C := $(strip $(CLIENT_SRCS))
obj = $(patsubst src/%.c,$(BUILD)/obj/%.o,$(1))

LIB      = $(BUILD)/libringchat.a
RINGCHATD = $(BUILD)/ringchatd
RINGCHAT  = $(BUILD)/ringchat
UNIT_BINS = $(patsubst %,$(BUILD)/tests/test_%,$(UNIT_TESTS))
SIM_BINS  = $(patsubst %,$(BUILD)/tests/%,$(SIMS))
TOOL_BINS = $(patsubst %,$(BUILD)/tools/%,$(TOOLS))

.PHONY: all deps test unit sim fuzz-smoke integration sanitize fuzz demo \
	bench install clean format format-check check-clang lan-test
.DELETE_ON_ERROR:

all: $(RINGCHATD) $(RINGCHAT) $(TOOL_BINS)

deps:
	@tools/deps

$(BUILD)/obj/%.o: src/%.c $(wildcard src/*.h) | $(BUILD)/obj
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/obj $(BUILD)/tests $(BUILD)/tools:
	mkdir -p $@

$(LIB): $(call obj,$(LIB_C))
	rm -f $@
	ar rcs $@ $^

$(RINGCHATD): $(call obj,$(SERVER_C)) $(LIB)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)

$(RINGCHAT): $(call obj,$(CLIENT_C)) $(LIB)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS) $(shell pkg-config --libs libedit)

$(BUILD)/obj/ringchat.o: EXTRA_CFLAGS += $(shell pkg-config --cflags libedit)

$(BUILD)/tests/test_%: tests/unit/test_%.c $(LIB) $(wildcard src/*.h) | $(BUILD)/tests
	$(CC) $(ALL_CFLAGS) -Isrc -o $@ $< $(LIB) $(LDLIBS) $(CMOCKA_LIBS)

$(BUILD)/tests/sim_%: tests/sim/sim_%.c $(LIB) $(wildcard src/*.h) | $(BUILD)/tests
	$(CC) $(ALL_CFLAGS) -Isrc -o $@ $< $(LIB) $(LDLIBS)

$(BUILD)/tools/%: tools/%.c $(LIB) $(wildcard src/*.h) | $(BUILD)/tools
	$(CC) $(ALL_CFLAGS) -Isrc -o $@ $< $(LIB) $(LDLIBS)

# Everything: dependencies, build, unit, simulation, fuzz smoke, integration
# on loopback and on a virtual LAN.
test: deps
	$(MAKE) all $(UNIT_BINS) $(SIM_BINS)
	$(MAKE) unit sim fuzz-smoke integration lan-test

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

sim: $(SIM_BINS)
	@set -e; for t in $(SIM_BINS); do echo "== $$t ($(SEEDS) seeds)"; \
		$$t --seeds $(SEEDS); done

integration: all
	RINGCHAT_BUILD=$(abspath $(BUILD)) $(PYTHON) -m pytest -q tests/integration

# Servers and clients on a virtual LAN of network namespaces (tools/ringlan.py);
# not root: inside a user namespace, where we may make them.
lan-test: all
	RINGCHAT_BUILD=$(abspath $(BUILD)) $(if $(filter 0,$(shell id -u)),,unshare -rn) \
		$(PYTHON) -m pytest -q tests/lan

# Same tests under AddressSanitizer and UndefinedBehaviorSanitizer.
sanitize: deps
	$(MAKE) BUILD=build/san SEEDS=300 \
		EXTRA_CFLAGS="-O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all" \
		EXTRA_LDFLAGS="-fsanitize=address,undefined" \
		all unit sim integration

# libFuzzer targets (clang).  `make fuzz` builds them; run one longer with
# build/fuzz/fuzz_wire -max_total_time=600 tests/fuzz/corpus/wire
FUZZ_TARGETS = wire store auth relay snapshot client control statedir requests sess
FUZZ_BINS = $(patsubst %,$(BUILD)/fuzz/fuzz_%,$(FUZZ_TARGETS))
FUZZ_CFLAGS = -std=c11 -D_GNU_SOURCE -g -O1 $(WARN) $(PKG_CFLAGS) \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Isrc

fuzz: $(FUZZ_BINS)

$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(LIB_C) $(wildcard src/*.h)
	mkdir -p $(BUILD)/fuzz
	clang $(FUZZ_CFLAGS) -o $@ $< $(LIB_C) $(PKG_LIBS)

# A bounded run of every fuzz target, part of `make test`: FUZZRUNS runs
# each, or FUZZPCT_t percent of them for a target t whose input is a
# whole session, replica or directory (about 40 s in all for those).
# A failing input is kept in $(BUILD)/fuzz/crash-*.
FUZZPCT_relay = 4
FUZZPCT_snapshot = 5
FUZZPCT_client = 5
FUZZPCT_control = 10
FUZZPCT_statedir = 1
FUZZPCT_requests = 2
FUZZPCT_sess = 20
fuzz-smoke: $(FUZZ_BINS)
	@set -e; for tp in $(foreach t,$(FUZZ_TARGETS),$(t):$(or $(FUZZPCT_$(t)),100)); do \
		t=$${tp%:*}; runs=$$(( $(FUZZRUNS) * $${tp#*:} / 100 )); \
		echo "== fuzz_$$t ($$runs runs)"; \
		work=$$(mktemp -d); \
		if ! $(BUILD)/fuzz/fuzz_$$t -runs=$$runs -seed=1 \
			-max_len=1600 -artifact_prefix=$(BUILD)/fuzz/ \
			$$work tests/fuzz/corpus/$$t \
			> $$work.log 2>&1; then \
			cat $$work.log; rm -rf $$work $$work.log; exit 1; fi; \
		tail -n 1 $$work.log; rm -rf $$work $$work.log; done

# Build with clang as well as gcc: both must be warning-free.
check-clang:
	$(MAKE) CC=clang BUILD=build/clang all $(patsubst $(BUILD)/%,build/clang/%,$(UNIT_BINS) $(SIM_BINS))

demo: deps all
	@$(PYTHON) tools/demo $(if $(LAN),--lan $(LAN))

# Benchmarks in a private network namespace, one table; writes build/bench.
# FULL=1: longer, medians of repetitions, JSON and plots into docs/bench.
bench: deps all
	@$(PYTHON) tools/bench $(if $(FULL),--full)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 \
		$(DESTDIR)$(PREFIX)/share/man/man8
	install -m 0755 $(RINGCHATD) $(RINGCHAT) $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 man/ringchat.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -m 0644 man/ringchatd.8 $(DESTDIR)$(PREFIX)/share/man/man8/

format:
	clang-format -i src/*.c src/*.h tests/unit/*.c tests/sim/*.c tests/fuzz/*.c tools/*.c

format-check:
	clang-format --dry-run --Werror src/*.c src/*.h tests/unit/*.c tests/sim/*.c tests/fuzz/*.c tools/*.c

clean:
	rm -rf build
