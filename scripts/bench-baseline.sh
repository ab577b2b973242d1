#!/usr/bin/env bash
# The baseline of `make bench`'s cost scenario (scripts/bench_cost.py): the release handoff-api, handoff-worker and
# handoff-sse of one commit, kept in ~/.cache/handoff/bench-baseline/<full hash>/ and built there once if missing, in
# a git worktree of their own (removed afterwards). Prints the directory; scripts/bench.py runs it first, with the
# commit its plan names (BASELINE).
#
#   scripts/bench-baseline.sh COMMIT
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
commit=$(git -C "$root" rev-parse --verify "${1:?usage: $0 COMMIT}^{commit}")
dir="$HOME/.cache/handoff/bench-baseline/$commit"
binaries=(handoff-api handoff-worker handoff-sse)

complete() {
    local binary
    for binary in "${binaries[@]}"; do [ -x "$dir/$binary" ] || return 1; done
}

if ! complete; then
    echo "bench-baseline: building the release binaries of $commit into $dir (once)" >&2
    scratch=$(mktemp -d /tmp/handoff-baseline-XXXXXX)
    trap 'git -C "$root" worktree remove --force "$scratch/tree" 2>/dev/null || true; rm -rf "$scratch"; git -C "$root" worktree prune' EXIT
    git -C "$root" worktree add --detach "$scratch/tree" "$commit" >&2
    (cd "$scratch/tree" && swift build -c release >&2)
    bin=$(cd "$scratch/tree" && swift build -c release --show-bin-path)
    mkdir -p "$scratch/out"
    for binary in "${binaries[@]}"; do cp "$bin/$binary" "$scratch/out/"; done
    # Whole or not at all: a build that failed leaves no directory a later run would take as complete.
    mkdir -p "$(dirname "$dir")"
    rm -rf "$dir"
    mv "$scratch/out" "$dir"
fi
echo "$dir"
