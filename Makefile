# The two commands of the README, `make run` and `make test`, and `make bench`.
.PHONY: run test bench deps build release pg-init clean

VENV := .venv/bin

run: deps release pg-init
	$(VENV)/honcho start

test: deps build
	scripts/test.sh

bench: deps release
	$(VENV)/python scripts/bench.py

deps:
	scripts/install-deps.sh

build:
	swift build --build-tests

release:
	swift build -c release

pg-init:
	scripts/postgres.sh init

clean:
	scripts/postgres.sh reset
	rm -rf .build .data
