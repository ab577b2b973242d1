# The two commands of the README, `make run` and `make test`, and `make bench`.
.PHONY: run run-local run-ha ha-deps ha-init test test-ha test-multihost bench fuzz lint deps test-deps build release pg-init model clean

VENV := .venv/bin

run: deps release pg-init
	$(VENV)/honcho start

# The same stack with a real model as well: llama.cpp's llama-server with SmolLM2-135M as `local` (models.example.json).
run-local: deps release pg-init model
	HANDOFF_MODELS_FILE=$(CURDIR)/models.example.json $(VENV)/honcho start -f Procfile.local

# The same stack on a highly available Postgres pair: Patroni runs pg1 and pg2 (synchronous replication), a
# three-member etcd holds its leader key, and every Handoff process reaches the primary through HAProxy on 5440
# (docs/deploy.md, §6; scripts/ha.sh status|switchover|freeze|thaw|kill while it runs).
HA_DATABASE_URL := postgres://postgres@127.0.0.1:5440/handoff

run-ha: ha-deps release ha-init
	DATABASE_URL=$(HA_DATABASE_URL) HANDOFF_LISTEN_DATABASE_URL=$(HA_DATABASE_URL) $(VENV)/honcho start -f Procfile.ha

test: test-deps build model
	scripts/test.sh

# Only the Patroni pair's failovers (SIGSTOP or SIGKILL of the primary) under a whole stack; `make test` runs them too.
test-ha: test-deps build
	HANDOFF_BIN_DIR=$${HANDOFF_BIN_DIR:-$(CURDIR)/.build/debug} $(VENV)/pytest -q Tests/e2e/test_ha.py

# The system on several hosts (network namespaces and veth pairs; needs root) with faults on the network: a replica's
# host and the API's (on one Postgres), then the primary's host of a Patroni pair on two hosts (a failover).
test-multihost: test-deps build
	HANDOFF_BIN_DIR=$${HANDOFF_BIN_DIR:-$(CURDIR)/.build/debug} $(VENV)/pytest -q Tests/multihost

# Every scenario of scripts/bench.py, and BENCHMARKS.md from them. The HA scenario runs a Patroni pair of its own
# (ha-deps); the cost scenario also runs the baseline commit's binaries, which scripts/bench-baseline.sh builds once.
bench: ha-deps release
	$(VENV)/python scripts/bench.py

# libFuzzer over the parsers of hostile input (Tests/Fuzz): FUZZ_RUNS inputs per target (200000 unless given).
fuzz:
	scripts/fuzz.sh

# The style gate: swift-format (.swift-format) over the Swift, ruff (ruff.toml) over the Python; CI runs it first.
lint: test-deps
	swift format lint --strict --recursive --parallel Sources Tests
	$(VENV)/ruff check Tests scripts
	$(VENV)/ruff format --check Tests scripts

deps:
	scripts/install-deps.sh

test-deps:
	scripts/install-deps.sh test

ha-deps:
	scripts/install-deps.sh ha

build:
	swift build --build-tests

release:
	swift build -c release

# Builds llama-server and fetches the model weights once, into ~/.cache/handoff (about 10 minutes the first time).
model:
	scripts/llama-server.sh install

pg-init:
	scripts/postgres.sh init

ha-init:
	scripts/ha.sh init

clean:
	scripts/postgres.sh reset
	scripts/ha.sh reset
	rm -rf .build .data
