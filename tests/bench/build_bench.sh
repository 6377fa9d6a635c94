#!/usr/bin/env bash
# Builder benchmark: nydus-image create (each compressor) beside mkfs.erofs
# on the same generated tree (1 GiB in 50,000 files: half random bytes, half
# text; 10 files of 20 MiB, the rest 0-36 KiB).
#
#   tests/bench/build_bench.sh [path/to/nydus-image]
#
# Env: NYDUS_IMAGE (binary, default build/bin/nydus-image), BENCH_DIR (work
# dir, default a fresh mktemp -d; needs ~3 GiB), BENCH_KEEP=1 keeps it,
# BENCH_LZ4HC=1 adds mkfs.erofs -zlz4hc (slow: minutes).
# Needs python3 (tree generation) and erofs-utils. Not part of `make test`.
# Timings use a warm page cache. Wall time shows what a user waits for
# (nydus-image compresses on every CPU, mkfs.erofs 1.5 on one); CPU time
# (user+sys) is the fairer cost, and stays meaningful on a busy machine.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
bin=${1:-${NYDUS_IMAGE:-$repo/build/bin/nydus-image}}
[[ -x $bin ]] || { echo "nydus-image not found at $bin (build first or pass its path)" >&2; exit 1; }
command -v mkfs.erofs >/dev/null || { echo "mkfs.erofs not found (apt-get install erofs-utils)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is needed to generate the tree" >&2; exit 1; }

work=${BENCH_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/nydus-bench-XXXXXX")}
cleanup() { [[ ${BENCH_KEEP:-0} == 1 ]] || rm -rf "$work"; }
trap cleanup EXIT
tree=$work/tree
mkdir -p "$work"

echo "generating 1 GiB / 50,000 files in $tree ..."
python3 - "$tree" <<'PY'
import os, random, sys
root = sys.argv[1]
rng = random.Random(1234)
text = "".join(f"line {i} of a reasonably compressible benchmark text file\n" for i in range(200000)).encode()
def data(n, rnd):
    if rnd:
        return os.urandom(n)
    off = rng.randrange(0, len(text) - n) if n < len(text) else 0
    return (text * (1 + n // len(text)))[off:off + n]
total = 0
for d in range(500):
    dpath = os.path.join(root, f"dir{d:03d}")
    os.makedirs(dpath, exist_ok=True)
    for f in range(100):
        idx = d * 100 + f
        size = 20 << 20 if idx % 5000 == 0 else rng.randrange(0, 36608)
        with open(os.path.join(dpath, f"file{f:03d}"), "wb") as fh:
            fh.write(data(size, idx % 2 == 0))
        total += size
print(f"generated {total / (1 << 30):.2f} GiB")
PY
sync

declare -A wall cpu bytes
# Runs "$@" and records wall and CPU (user+sys, children included) seconds
# under $1's name: CPU time stays meaningful on a loaded machine.
timed() {
  local name=$1 t; shift
  t=$( { TIMEFORMAT='%R %U %S'; time "$@" >/dev/null 2>&1; } 2>&1 )
  read -r r u s <<<"$t"
  wall[$name]=$r
  cpu[$name]=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')
}
run_nydus() {
  local c=$1 blobs=$work/blobs-$1
  rm -rf "$blobs" && mkdir -p "$blobs"
  timed "nydus-$c" "$bin" -l warn create -t dir-rafs -c "$c" -B "$work/$c.boot" -D "$blobs" "$tree"
  bytes[nydus-$c]=$(( $(stat -c %s "$work/$c.boot") + $(du -cb "$blobs" | tail -1 | cut -f1) ))
  rm -rf "$blobs" "$work/$c.boot"
}
run_mkfs() {
  local name=$1; shift
  timed "$name" mkfs.erofs "$@" "$work/$name.img" "$tree"
  bytes[$name]=$(stat -c %s "$work/$name.img")
  rm -f "$work/$name.img"
}

echo "running nydus-image ($bin) and mkfs.erofs ..."
for c in none lz4_block zstd; do run_nydus "$c"; done
run_mkfs mkfs-plain
run_mkfs mkfs-lz4 -zlz4
rows=("nydus-none mkfs-plain" "nydus-lz4_block mkfs-lz4" "nydus-zstd mkfs-lz4")
mkfs_rows=("mkfs-plain mkfs-plain" "mkfs-lz4 mkfs-lz4")
# lz4hc is about 20x slower than lz4 in erofs-utils 1.5: opt in.
if [[ ${BENCH_LZ4HC:-0} == 1 ]]; then
  run_mkfs mkfs-lz4hc -zlz4hc
  rows[2]="nydus-zstd mkfs-lz4hc"
  mkfs_rows+=("mkfs-lz4hc mkfs-lz4hc")
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else printf "-" }'; }
printf '\n%-16s %9s %9s %14s %8s %12s %12s\n' "build" "wall s" "cpu s" "output bytes" "vs" "wall ratio" "cpu ratio"
for row in "${rows[@]}" "${mkfs_rows[@]}"; do
  set -- $row
  printf '%-16s %9.2f %9.2f %14d %8s %12s %12s\n' "$1" "${wall[$1]}" "${cpu[$1]}" "${bytes[$1]}" "${2#mkfs-}" \
    "$(ratio "${wall[$1]}" "${wall[$2]}")" "$(ratio "${cpu[$1]}" "${cpu[$2]}")"
done
echo "(ratios against mkfs.erofs with the matching compression; erofs-utils 1.5 has no zstd, so nydus zstd is set beside lz4, or lz4hc with BENCH_LZ4HC=1)"
