#!/usr/bin/env bash
# `make fuzz`: the libFuzzer targets of Tests/Fuzz against the parsers of hostile input. Builds them (Package.swift
# declares them only under HANDOFF_FUZZ=1) with libFuzzer and AddressSanitizer, then, per target, replays every
# input kept in Tests/Fuzz/regressions/<target>/ (each once crashed) and fuzzes FUZZ_RUNS inputs grown from the
# seed corpus Tests/Fuzz/corpus/<target>/. New corpus entries and crashing inputs go to a temporary directory,
# so the working tree stays as it was. Ends with one line `N passed, M failed` (targets), and fails if any did.
#
#   FUZZ_RUNS=20000 scripts/fuzz.sh              CI's short pass: 10^5 inputs over the five targets
#   FUZZ_TARGETS=FuzzStreamToken scripts/fuzz.sh  some of the targets
#   FUZZ_CONFIG=release scripts/fuzz.sh           up to 2.5 times the inputs a second, for a longer build and
#                                                 stack traces with frames inlined away; debug unless given
set -uo pipefail
cd "$(dirname "$0")/.."

runs=${FUZZ_RUNS:-200000}
config=${FUZZ_CONFIG:-debug}
# Each target and the longest input it is given: a request body or a stream, or one request line's worth of text.
declare -A max_len=(
    [FuzzChatCompletionRequest]=4096 [FuzzResponsesRequest]=4096 [FuzzServerSentEventDecoder]=4096
    [FuzzStreamRequest]=1024 [FuzzStreamToken]=1024
)
all="FuzzChatCompletionRequest FuzzResponsesRequest FuzzStreamRequest FuzzServerSentEventDecoder FuzzStreamToken"
read -ra targets <<<"${FUZZ_TARGETS:-$all}"

# Swift's backtracer would catch a crash before libFuzzer does (and take up to 30 s over it); libFuzzer's handler is
# the one that saves the crashing input.
export SWIFT_BACKTRACE=enable=no
build=(env HANDOFF_FUZZ=1 swift build --scratch-path .build-fuzz -c "$config" -Xswiftc -sanitize=fuzzer,address)

work=$(mktemp -d "${TMPDIR:-/tmp}/handoff-fuzz.XXXXXX")
passed=0
failed=0

summary() {
    echo "$passed passed, $failed failed"
}

# What crashed, from a libFuzzer log: the Swift trap's message or the sanitizer's verdict, and the first frames
# that are not libFuzzer's or libc's.
crash_report() {
    grep -E "(Fatal error|Precondition failed|Assertion failed)|ERROR: |^SUMMARY: " "$1" | head -4
    grep -E "^ +#[0-9]+ " "$1" | grep -vE "compiler-rt/|libc\.so|csu/| in _start | in [A-Za-z]+_main " | head -8 |
        swift demangle --simplified
}

for target in "${targets[@]}"; do
    [[ -n ${max_len[$target]:-} ]] || { echo "unknown fuzz target: $target" >&2; exit 2; }
done
# `swift build` takes one product at a time; after the first, each is a compile of one file and a link.
for target in "${targets[@]}"; do
    echo "building $target ($config)"
    if ! "${build[@]}" --product "$target" >"$work/build.log" 2>&1; then
        grep -E "error:" "$work/build.log" | head -20
        echo "the build failed; its log: $work/build.log"
        failed=${#targets[@]}
        summary
        exit 1
    fi
done
bin=$("${build[@]}" --show-bin-path)

for target in "${targets[@]}"; do
    mkdir -p "$work/$target/corpus" "$work/$target/artifacts"
    options=(-max_len="${max_len[$target]}" -timeout=10 -artifact_prefix="$work/$target/artifacts/")

    # Given files rather than directories, libFuzzer runs each once.
    regressions=()
    for input in "Tests/Fuzz/regressions/$target"/*; do
        [[ -f $input ]] && regressions+=("$input")
    done
    log=$work/$target/regressions.log
    if ((${#regressions[@]} > 0)) && ! "$bin/$target" "${options[@]}" "${regressions[@]}" >"$log" 2>&1; then
        crash_report "$log"
        crashed=$(grep -oE "^Running: .*" "$log" | tail -1)
        echo "$target: FAILED: the kept regression input ${crashed#Running: } crashes; log: $log"
        failed=$((failed + 1))
        continue
    fi

    # libFuzzer adds what it learns to the first directory only: the temporary one.
    log=$work/$target/fuzz.log
    start=$(date +%s%N)
    "$bin/$target" "${options[@]}" -runs="$runs" -print_final_stats=1 \
        "$work/$target/corpus" "Tests/Fuzz/corpus/$target" >"$log" 2>&1
    status=$?
    milliseconds=$((($(date +%s%N) - start) / 1000000 + 1))
    seconds=$(awk "BEGIN { printf \"%.1f\", $milliseconds / 1000 }")
    executed=$(grep -oE "stat::number_of_executed_units: [0-9]+" "$log" | grep -oE "[0-9]+$")
    if ((status == 0)); then
        echo "$target: passed: ${#regressions[@]} regression inputs replayed," \
            "$executed runs in $seconds s ($((executed * 1000 / milliseconds))/s)"
        passed=$((passed + 1))
        continue
    fi
    crash_report "$log"
    echo "$target: FAILED after ${executed:-?} runs in $seconds s; log: $log"
    crash=$(grep -oE "Test unit written to .*" "$log" | tail -1)
    crash=${crash#Test unit written to }
    if [[ -n $crash ]]; then
        echo "crashing input: $crash"
        echo "keep it as a regression input (it fails until fixed): cp $crash Tests/Fuzz/regressions/$target/"
    fi
    failed=$((failed + 1))
done

# Kept when something failed: the logs and the crashing inputs are in it.
((failed == 0)) && rm -rf "$work"
summary
((failed == 0))
