#!/bin/bash
# Builds and runs the bootstrap libFuzzer target. The main build uses GCC,
# so the fuzzer is compiled here with clang directly from the reader sources.
#
#   run-fuzz.sh build <clang++> <source dir> <output binary>
#   run-fuzz.sh run <binary> <source dir> <work dir> <seconds>
#
# `run` makes a seed corpus from the reference image (tests/data/rafs-v6-2.2)
# and patched copies of it that add a symlink, a device, xattrs, a prefetch
# table and a compact inode, then fuzzes for <seconds>; it exits non-zero if
# libFuzzer finds a crash (the input is left in <work dir>/artifacts/).
set -euo pipefail

# The reader sources the target needs (no builder, no storage).
SOURCES=(
  nydusd/rafs/bootstrap.cc nydusd/rafs/inode.cc nydusd/rafs/dir.cc nydusd/rafs/chunk_map.cc
  nydusd/rafs/validate_tree.cc nydusd/rafs/digest.cc common/file_io.cc common/error.cc
  tests/fuzz/bootstrap_fuzz.cc
)

build() {
  local cxx=$1 src=$2 out=$3
  local files=()
  for f in "${SOURCES[@]}"; do files+=("$src/$f"); done
  "$cxx" -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -fno-omit-frame-pointer -I"$src" "${files[@]}" -lfmt -lcrypto -o "$out.tmp"
  mv "$out.tmp" "$out"
}

# patch FILE OFFSET HEXBYTES: overwrite bytes in place.
patch() {
  printf "$(sed 's/../\\x&/g' <<<"$3")" | dd of="$1" bs=1 seek=$(($2)) conv=notrunc status=none
}

make_seeds() {
  local sample=$1 dir=$2
  mkdir -p "$dir"
  cp "$sample" "$dir/sample"
  # Offsets in the sample (spec §20): sync_io.rs inode @0x3100, its chunk
  # index @0x3140, its dirent type @0x306e; lib.rs inode @0x30a0.
  cp "$sample" "$dir/symlink"  # sync_io.rs -> inline symlink "lib.rs/../x"
  patch "$dir/symlink" 0x3100 0500
  patch "$dir/symlink" 0x3104 ffa1
  patch "$dir/symlink" 0x3108 0b00000000000000
  patch "$dir/symlink" 0x3110 00000000
  patch "$dir/symlink" 0x3140 6c69622e72732f2e2e2f78
  patch "$dir/symlink" 0x306e 07
  cp "$sample" "$dir/chardev"  # sync_io.rs -> char device 1:3
  patch "$dir/chardev" 0x3100 0100
  patch "$dir/chardev" 0x3104 8021
  patch "$dir/chardev" 0x3108 0000000000000000
  patch "$dir/chardev" 0x3110 03010000
  patch "$dir/chardev" 0x306e 03
  cp "$sample" "$dir/xattrs"  # sync_io.rs with user.foo=bar, chunk index moved to 0x3158
  patch "$dir/xattrs" 0x3102 0400
  patch "$dir/xattrs" 0x3140 000000000000000000000000
  patch "$dir/xattrs" 0x314c 03010300666f6f6261720000
  patch "$dir/xattrs" 0x3158 0100010005000000
  cp "$sample" "$dir/prefetch"  # prefetch table @0x1100 = [136, 133]
  patch "$dir/prefetch" 0x4a8 0011000000000000
  patch "$dir/prefetch" 0x4b0 0c000000
  patch "$dir/prefetch" 0x1100 8800000085000000
  cp "$sample" "$dir/compact"  # lib.rs as a compact inode, chunk index at 0x30c0
  patch "$dir/compact" 0x30a0 0800000080810100234200000000000028000000000000000000000000000000
  patch "$dir/compact" 0x30c0 0000010000000000
}

run() {
  local bin=$1 src=$2 work=$3 seconds=$4
  mkdir -p "$work/corpus" "$work/artifacts"
  make_seeds "$src/tests/data/rafs-v6-2.2/rafs-v6-2.2.boot" "$work/seeds"
  # New inputs go to corpus/ (kept between runs); seeds are read only.
  "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="$work/artifacts/" "$work/corpus" "$work/seeds"
}

cmd=${1:-}
shift || true
case "$cmd" in
  build) build "$@" ;;
  run) run "$@" ;;
  *) echo "usage: $0 build <clang++> <src> <out> | run <binary> <src> <work> <seconds>" >&2; exit 2 ;;
esac
