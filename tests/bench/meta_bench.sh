#!/usr/bin/env bash
# Metadata and memory benchmark (issue 8, items 4 and 6): walk and stat every
# entry of 1k-, 10k- and 100k-file images through nydusd, the kernel's EROFS
# mount of the exported image and squashfuse on a squashfs of the same tree,
# page cache, dentries and inodes dropped (cold) and right after (warm); and
# the resident memory (VmRSS, VmHWM from /proc) of nydusd and squashfuse after
# mount and after the walks. One command, as root:
#
#   tests/bench/meta_bench.sh [BUILD_DIR]        (default build/)
#
# Env: BENCH_SIZES (default "1000 10000 100000"), BENCH_DIR (work dir,
# default a fresh mktemp -d), BENCH_KEEP=1 keeps it. Needs squashfs-tools,
# squashfuse, python3. Not part of `make test`.
#
# Tree: files of 0-2 KiB of text, 100 per directory. nydus lz4_block and
# squashfs -comp lz4; the EROFS export is uncompressed (loop mount). The walk is
# `find MNT -printf '%y %s %m %U %T@\n'` (one lstat per entry). Warm walks
# still reach the FUSE daemons when their entry/attr timeouts (1 s by
# default in both) have expired; the kernel EROFS serves them from its own
# dentry and inode caches.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
source "$repo/tests/bench/bench_lib.sh"
bench_setup meta "${1:-$repo/build}" mksquashfs squashfuse python3

sizes=${BENCH_SIZES:-1000 10000 100000}

# walk MNT -> "entries seconds"
walk() {
  local t0 t1 n
  t0=$(now_ns)
  n=$(find "$1" -printf '%y %s %m %U %T@\n' | wc -l)
  t1=$(now_ns)
  echo "$n $(secs "$t0" "$t1")"
}

declare -A entries cold warm rss0 rss1 hwm1
# measure KEY: walks $mnt cold then warm; RSS of $peer_pid (if any) around.
measure() {
  local key=$1 r
  if [[ -n $peer_pid ]]; then read -r rss0[$key] _ <<<"$(rss_kib "$peer_pid")"; fi
  drop_caches
  read -r entries[$key] cold[$key] <<<"$(walk "$mnt")"
  read -r _ warm[$key] <<<"$(walk "$mnt")"
  if [[ -n $peer_pid ]]; then read -r rss1[$key] hwm1[$key] <<<"$(rss_kib "$peer_pid")"; fi
  printf '  %-20s %7s entries  cold %7ss  warm %7ss\n' "$key" "${entries[$key]}" "${cold[$key]}" "${warm[$key]}"
}

mnt=$work/mnt
for n in $sizes; do
  echo "generating and building the $n-file images ..."
  python3 - "$work/tree" "$n" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(n)
text = "".join(f"{i} the quick brown fox jumps over the lazy dog\n" for i in range(100)).encode()
for i in range(n):
    d = os.path.join(root, f"d{i // 100}")
    if i % 100 == 0:
        os.makedirs(d, exist_ok=True)
    size = rng.randrange(0, 2048)
    off = rng.randrange(0, len(text) - size)
    with open(os.path.join(d, f"f{i % 100}"), "wb") as f:
        f.write(text[off:off + size])
PY
  mkdir -p "$work/nydus-$n/blobs"
  "$bin/nydus-image" -l warn create -t dir-rafs -c lz4_block -B "$work/nydus-$n/boot" \
    -D "$work/nydus-$n/blobs" "$work/tree" >/dev/null
  mksquashfs "$work/tree" "$work/sq-$n.img" -comp lz4 -noappend -quiet >/dev/null
  "$bin/nydus-image" -l warn export --block -B "$work/nydus-$n/boot" -D "$work/nydus-$n/blobs" \
    -O "$work/erofs-$n.img" >/dev/null
  rm -rf "$work/tree"

  rm -rf "$work/cache"
  mount_nydusd "$mnt" "$work/nydus-$n/boot" "$work/nydus-$n/blobs" "$work/cache"
  measure "nydusd-$n"
  unmount_peer "$mnt" "$peer_pid"
  mount_squashfuse "$mnt" "$work/sq-$n.img"
  measure "squashfuse-$n"
  unmount_peer "$mnt" "$peer_pid"
  mount_erofs "$mnt" "$work/erofs-$n.img"
  measure "erofs-$n"
  umount "$mnt"
  rm -rf "$work/nydus-$n" "$work/sq-$n.img" "$work/erofs-$n.img"
done

echo
echo "meta_bench: walk + lstat of every entry (find -printf); started $started"
echo "load average at start $start_load, at end $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-8s %-11s %8s %9s %9s %12s %14s %14s %14s %14s\n' files peer entries "cold s" "warm s" \
  "cold entr/s" "cold vs EROFS" "warm vs EROFS" "cold vs sqfuse" "warm vs sqfuse"
for n in $sizes; do
  for p in nydusd squashfuse erofs; do
    k=$p-$n
    printf '%-8s %-11s %8s %9s %9s %12s %14s %14s %14s %14s\n' "$n" "$p" "${entries[$k]}" "${cold[$k]}" \
      "${warm[$k]}" "$(awk -v e="${entries[$k]}" -v s="${cold[$k]}" 'BEGIN { printf "%.0f", e / s }')" \
      "$(ratio "${cold[$k]}" "${cold[erofs-$n]}")" "$(ratio "${warm[$k]}" "${warm[erofs-$n]}")" \
      "$(ratio "${cold[$k]}" "${cold[squashfuse-$n]}")" "$(ratio "${warm[$k]}" "${warm[squashfuse-$n]}")"
  done
done
echo "(time ratios: above 1x means slower than the peer)"
echo
echo "resident memory, KiB (VmRSS after mount; VmRSS and VmHWM after the cold and warm walks)"
printf '%-8s %14s %14s %14s %14s %14s %14s %12s %12s\n' files "nydusd mount" "nydusd walked" "nydusd HWM" \
  "sqfuse mount" "sqfuse walked" "sqfuse HWM" "mount ratio" "HWM ratio"
for n in $sizes; do
  printf '%-8s %14s %14s %14s %14s %14s %14s %12s %12s\n' "$n" "${rss0[nydusd-$n]}" "${rss1[nydusd-$n]}" \
    "${hwm1[nydusd-$n]}" "${rss0[squashfuse-$n]}" "${rss1[squashfuse-$n]}" "${hwm1[squashfuse-$n]}" \
    "$(ratio "${rss0[nydusd-$n]}" "${rss0[squashfuse-$n]}")" "$(ratio "${hwm1[nydusd-$n]}" "${hwm1[squashfuse-$n]}")"
done
echo "(ratios: nydusd / squashfuse)"
