#!/usr/bin/env bash
# The peer of `make bench`'s relay scenario (scripts/bench_relay.py): LiteLLM's proxy, `litellm[proxy]` at one pinned
# version, in a venv of its own in ~/.cache/handoff/litellm-<version>/ (outside the clone, so neither the repo's .venv
# nor the system Python takes its many dependencies), installed there once if missing. Prints the venv's directory;
# scripts/bench.py runs it first, with the version its plan names, and reports LiteLLM unavailable if it fails.
#
#   scripts/bench-litellm.sh VERSION
set -euo pipefail
version=${1:?usage: $0 VERSION}
dir="$HOME/.cache/handoff/litellm-$version"

# Whole or not at all: the marker is written only once pip succeeded, so a failed install is never taken as complete
# (a venv's scripts name its directory, so it is installed in place rather than built elsewhere and moved).
if [ ! -f "$dir/.installed" ]; then
    echo "bench-litellm: installing litellm[proxy]==$version into $dir (once)" >&2
    rm -rf "$dir"
    mkdir -p "$(dirname "$dir")"
    python3 -m venv "$dir" >&2
    if ! "$dir/bin/pip" install -q --disable-pip-version-check "litellm[proxy]==$version" >&2; then
        rm -rf "$dir"
        exit 1
    fi
    touch "$dir/.installed"
fi
echo "$dir"
