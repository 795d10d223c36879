#!/usr/bin/env bash
# Puts Triton's perf_analyzer, a real load client for the KServe V2 protocol, under
# .tools/perf_analyzer/, from PyPI and Debian packages only, without root and without
# touching .venv:
#
#   .tools/perf_analyzer/perf_analyzer      wrapper: sets LD_LIBRARY_PATH, execs the binary
#   .tools/perf_analyzer/bin/perf_analyzer  the binary shipped in the tritonclient wheel
#   .tools/perf_analyzer/lib/               libcudart.so.12 (nvidia-cuda-runtime-cu12 wheel)
#                                           and libb64.so.0d (Debian's libb64-0d)
#
# PyPI's perf-analyzer is an empty placeholder; the working binary ships inside the
# tritonclient 2.50.0 manylinux x86_64 wheel. It links libcudart.so.12 even when no GPU is
# used, and libb64.so.0d. The wheel is only downloaded and unpacked, never installed: .venv
# has a newer tritonclient.
#
# Idempotent: a stamp file records the recipe; when it matches, the script exits at once.
# Usage: scripts/setup_perf_analyzer.sh [--force]
set -euo pipefail

cd "$(dirname "$0")/.."

TRITONCLIENT_VERSION=2.50.0
CUDART_VERSION=12.9.79          # nvidia-cuda-runtime-cu12; any 12.x provides libcudart.so.12
LIBB64_PACKAGE=libb64-0d        # Debian bookworm: 1.2-5+b1
PYTHON=${PYTHON:-python3}

DEST=.tools/perf_analyzer
STAMP=$DEST/.stamp
RECIPE="tritonclient=$TRITONCLIENT_VERSION cudart=$CUDART_VERSION libb64=$LIBB64_PACKAGE layout=1"

if [[ "${1:-}" != "--force" && -x $DEST/perf_analyzer && -f $STAMP && "$(cat "$STAMP")" == "$RECIPE" ]]; then
    exit 0
fi

if [[ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]]; then
    echo "setup_perf_analyzer: perf_analyzer ships only in tritonclient's manylinux x86_64 wheel;" \
        "this machine is $(uname -s)-$(uname -m)" >&2
    exit 1
fi

echo "setup_perf_analyzer: building $DEST ($RECIPE)"
rm -rf "$DEST"
WORK=$DEST.work
rm -rf "$WORK"
mkdir -p "$WORK/wheels" "$WORK/deb" "$WORK/out/bin" "$WORK/out/lib"
trap 'rm -rf "$WORK"' EXIT

# 1. The two wheels, downloaded for the manylinux x86_64 platform whatever Python runs pip.
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
    --platform manylinux1_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --python-version 3.11 --dest "$WORK/wheels" \
    "tritonclient==$TRITONCLIENT_VERSION" "nvidia-cuda-runtime-cu12==$CUDART_VERSION"

"$PYTHON" - "$WORK/wheels" "$WORK/out" <<'EOF'
import glob
import os
import shutil
import sys
import zipfile

wheels, out = sys.argv[1], sys.argv[2]
wanted = {
    "tritonclient-*.whl": ("/bin/perf_analyzer", "bin/perf_analyzer"),
    "nvidia_cuda_runtime_cu12-*.whl": ("/lib/libcudart.so.12", "lib/libcudart.so.12"),
}
for pattern, (suffix, target) in wanted.items():
    (wheel,) = glob.glob(os.path.join(wheels, pattern))
    with zipfile.ZipFile(wheel) as z:
        # tritonclient-2.50.0.data/data/bin/perf_analyzer, nvidia/cuda_runtime/lib/libcudart.so.12
        (name,) = [n for n in z.namelist() if n.endswith(suffix)]
        with z.open(name) as src, open(os.path.join(out, target), "wb") as dst:
            shutil.copyfileobj(src, dst)
    os.chmod(os.path.join(out, target), 0o755)
EOF

# 2. libb64 from Debian: apt-get download and dpkg -x need no root. apt-get download needs
# a package index; a fresh machine may have none (or a stale one whose .deb is gone from
# the mirror), and `apt-get update` into /var/lib/apt needs root. So on failure, fetch a
# private index into the work folder with the machine's own sources.list and keys.
apt_download() {
    (cd "$WORK/deb" && apt-get download "$@" "$LIBB64_PACKAGE") >"$WORK/apt.log" 2>&1
}
if ! apt_download; then
    echo "setup_perf_analyzer: apt-get download failed with the system index; fetching a private one" >&2
    APT_DIR=$(cd "$WORK" && pwd)/apt
    mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial"
    APT_OPTS=(-o "Dir::State::Lists=$APT_DIR/lists" -o "Dir::Cache=$APT_DIR/cache"
        -o "Debug::NoLocking=1" -o "APT::Sandbox::User=$(id -un)")
    apt-get "${APT_OPTS[@]}" -q update >"$WORK/apt-update.log" 2>&1 || {
        cat "$WORK/apt-update.log" >&2
        exit 1
    }
    apt_download "${APT_OPTS[@]}" || {
        cat "$WORK/apt.log" >&2
        exit 1
    }
fi
dpkg -x "$WORK"/deb/"$LIBB64_PACKAGE"_*.deb "$WORK/deb/root"
cp -L "$WORK"/deb/root/usr/lib/*/libb64.so.0d "$WORK/out/lib/"

# 3. The wrapper the tests call.
cat >"$WORK/out/perf_analyzer" <<'EOF'
#!/bin/sh
# perf_analyzer with the libraries it links (libcudart.so.12, libb64.so.0d) from ./lib.
# Made by scripts/setup_perf_analyzer.sh.
here=$(cd "$(dirname "$0")" && pwd)
LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$here/bin/perf_analyzer" "$@"
EOF
chmod 755 "$WORK/out/perf_analyzer"

# 4. Check it loads and runs before putting it in place: every library resolves and
# --version exits 0 (--help prints the usage but exits 99).
if LD_LIBRARY_PATH="$WORK/out/lib" ldd "$WORK/out/bin/perf_analyzer" | grep "not found" >&2; then
    echo "setup_perf_analyzer: perf_analyzer misses the libraries above" >&2
    exit 1
fi
if ! out=$("$WORK/out/perf_analyzer" --version 2>&1); then
    echo "$out" >&2
    exit 1
fi

mv "$WORK/out" "$DEST"
echo "$RECIPE" >"$STAMP"
echo "setup_perf_analyzer: ready: $DEST/perf_analyzer"
