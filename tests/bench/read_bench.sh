#!/usr/bin/env bash
# Read-path benchmark (issue 8, item 3): fio sequential 1 MiB and random
# 4 KiB reads through nydusd, beside the kernel's EROFS mount of the same
# image exported as a raw block image (`nydus-image export --block`) and
# squashfuse on a squashfs of the same tree. One command, as root:
#
#   tests/bench/read_bench.sh [BUILD_DIR]        (default build/)
#
# Env: BENCH_MIB (dataset size, default 512: 4 files), BENCH_RUNTIME (seconds
# per random-read run, default 15), BENCH_REPS (runs per sequential and
# first-touch cell, the median is kept; default 3), BENCH_COMPS (default "lz4 zstd"),
# BENCH_DIR (work dir, default a fresh mktemp -d; needs ~4x BENCH_MIB),
# BENCH_KEEP=1 keeps it. Needs fio, squashfs-tools, squashfuse, python3.
# Not part of `make test`.
#
# Every run starts with the page cache dropped (echo 3 > drop_caches).
# nydusd runs twice per case: blob cache cold (empty cache dir, fresh
# daemon: every chunk comes from the localfs backend and is decompressed)
# and warm (the whole image read once before, caches dropped again).
# Compression: nydus lz4_block vs squashfs -comp lz4, nydus zstd vs
# squashfs -comp zstd (1 MiB nydus chunks, 128 KiB squashfs blocks). The
# EROFS export is uncompressed (the kernel reads the blocks in place), so it
# is the no-decompression ceiling, not a same-compression peer. EROFS is
# mounted on a loop device ("erofs", the ratio base) and, for reference,
# file-backed ("erofs-file", Linux 6.12+: no readahead on the backing file,
# so its sequential reads are much slower here).
# fio: psync, 4 jobs, one 1/4-dataset file each. Sequential: the whole file
# with bs=1M, buffered (the kernel's readahead works as for a container).
# Random: bs=4k for BENCH_RUNTIME seconds with direct=1, so that every read
# reaches the filesystem (buffered, a warming page cache would answer a
# growing share of the reads and hide the peers). With 1 MiB chunks the
# random run touches every chunk within its first seconds, so "cold" random
# is mostly warm; the first-touch run (4 KiB, then skip 1020 KiB, direct=1)
# is the one where every read is a blob cache miss for nydusd.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
source "$repo/tests/bench/bench_lib.sh"
bench_setup read "${1:-$repo/build}" fio mksquashfs squashfuse python3

mib=${BENCH_MIB:-512}
runtime=${BENCH_RUNTIME:-15}
comps=${BENCH_COMPS:-lz4 zstd}
jobs=4
file_mib=$((mib / jobs))

echo "generating $mib MiB in $jobs files (half random 4 KiB blocks, half text) ..."
make_dataset "$work/tree" "$jobs" "$file_mib"

echo "building images ..."
for c in $comps; do
  nc=$c; [[ $c == lz4 ]] && nc=lz4_block
  mkdir -p "$work/nydus-$c/blobs"
  "$bin/nydus-image" -l warn create -t dir-rafs -c "$nc" -B "$work/nydus-$c/boot" \
    -D "$work/nydus-$c/blobs" "$work/tree" >/dev/null
  mksquashfs "$work/tree" "$work/sq-$c.img" -comp "$c" -noappend -quiet >/dev/null
done
first=${comps%% *}
"$bin/nydus-image" -l warn export --block -B "$work/nydus-$first/boot" -D "$work/nydus-$first/blobs" \
  -O "$work/erofs.img" >/dev/null
rm -rf "$work/tree"

# run_fio NAME MNT KIND(seq|rand) -> "MiB/s IOPS"
run_fio() {
  local name=$1 mnt=$2 kind=$3 out=$work/fio-$1-$3.json
  local args=(--name="$name" --directory="$mnt" --filename_format='data$jobnum' --numjobs=$jobs
    --size=${file_mib}M --ioengine=psync --readonly --group_reporting --output-format=json
    --output="$out")
  case $kind in
    seq) args+=(--rw=read --bs=1M) ;;
    rand) args+=(--rw=randread --bs=4k --direct=1 --time_based --runtime="$runtime") ;;
    # 4 KiB then skip 1020 KiB, one read per MiB (fio would wrap around and
    # go on until `size`): every read is the first touch of its 1 MiB nydus
    # chunk (and of its squashfs block)
    first) args+=(--rw=read:1020k --bs=4k --direct=1 --number_ios="$file_mib") ;;
  esac
  drop_caches
  fio "${args[@]}" >/dev/null
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["jobs"][0]["read"]; print("%.1f %.0f" % (r["bw_bytes"]/1048576, r["iops"]))' "$out"
}

declare -A bw iops spread
reps=${BENCH_REPS:-3}
nreps() { if [[ $1 == rand ]]; then echo 1; else echo "$reps"; fi; }
# median KIND "MiB/s IOPS"... -> the middle line, by MiB/s for seq, else by IOPS
median() {
  local kind=$1 k=2; shift
  [[ $kind == seq ]] && k=1
  printf '%s\n' "$@" | sort -g -k$k,$k | sed -n "$((($# + 1) / 2))p"
}
record() {  # record KEY KIND "MiB/s IOPS"... (one per repetition; the median is kept)
  local key=$1 kind=$2 r all=""; shift 2
  read -r bw[$key-$kind] iops[$key-$kind] <<<"$(median "$kind" "$@")"
  for r in "$@"; do
    if [[ $kind == seq ]]; then all+=" ${r%% *}"; else all+=" ${r##* }"; fi
  done
  printf '  %-22s %-5s %9s MiB/s %9s IOPS   (runs:%s)\n' "$key" "$kind" "${bw[$key-$kind]}" \
    "${iops[$key-$kind]}" "$all"
}
# repeat NAME KIND: the fio runs of one cell on the current mount
repeat() {
  local i
  for ((i = 0; i < $(nreps "$2"); i++)); do run_fio "$1" "$mnt" "$2"; done
}

mnt=$work/mnt
for c in $comps; do
  for kind in seq rand first; do
    cold_runs=() warm_runs=()
    for ((i = 0; i < $(nreps "$kind"); i++)); do
      # cold: fresh daemon, empty blob cache
      rm -rf "$work/cache"
      mount_nydusd "$mnt" "$work/nydus-$c/boot" "$work/nydus-$c/blobs" "$work/cache"
      cold_runs+=("$(run_fio "nydusd-$c-cold" "$mnt" "$kind")")
      cat "$mnt"/data* >/dev/null  # the whole image into the blob cache
      warm_runs+=("$(run_fio "nydusd-$c-warm" "$mnt" "$kind")")
      unmount_peer "$mnt" "$peer_pid"
    done
    record "nydusd-$c-cold" "$kind" "${cold_runs[@]}"
    record "nydusd-$c-warm" "$kind" "${warm_runs[@]}"
  done
  mount_squashfuse "$mnt" "$work/sq-$c.img"
  for kind in seq rand first; do mapfile -t runs < <(repeat "squashfuse-$c" "$kind"); record "squashfuse-$c" "$kind" "${runs[@]}"; done
  unmount_peer "$mnt" "$peer_pid"
done
mount_erofs "$mnt" "$work/erofs.img" loop
for kind in seq rand first; do mapfile -t runs < <(repeat erofs "$kind"); record erofs "$kind" "${runs[@]}"; done
umount "$mnt"
mount_erofs "$mnt" "$work/erofs.img" file
for kind in seq rand first; do mapfile -t runs < <(repeat erofs-file "$kind"); record erofs-file "$kind" "${runs[@]}"; done
umount "$mnt"

echo
echo "read_bench: $mib MiB in $jobs files, fio psync x$jobs, page cache dropped before each run; EROFS = loop mount"
echo "median of $reps runs for seq and first-touch, one ${runtime} s run for rand"
echo "started $started, load average at start $start_load, at end $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-18s %13s %13s %13s %11s %11s %11s\n' peer "seq 1M MiB/s" "rand 4K IOPS" "1st-touch IOPS" \
  "seq/EROFS" "rand/EROFS" "1st/EROFS"
rows=()
for c in $comps; do rows+=("nydusd-$c-cold" "nydusd-$c-warm" "squashfuse-$c"); done
rows+=(erofs erofs-file)
for r in "${rows[@]}"; do
  printf '%-18s %13s %13s %13s %11s %11s %11s\n' "$r" "${bw[$r-seq]}" "${iops[$r-rand]}" "${iops[$r-first]}" \
    "$(ratio "${bw[$r-seq]}" "${bw[erofs-seq]}")" "$(ratio "${iops[$r-rand]}" "${iops[erofs-rand]}")" \
    "$(ratio "${iops[$r-first]}" "${iops[erofs-first]}")"
done
echo
printf '%-24s %18s %18s %18s\n' "nydusd / squashfuse" "seq 1M" "rand 4K" "1st-touch 4K"
for c in $comps; do
  for s in cold warm; do
    printf '%-24s %18s %18s %18s\n' "$c, blob cache $s" "$(ratio "${bw[nydusd-$c-$s-seq]}" "${bw[squashfuse-$c-seq]}")" \
      "$(ratio "${iops[nydusd-$c-$s-rand]}" "${iops[squashfuse-$c-rand]}")" \
      "$(ratio "${iops[nydusd-$c-$s-first]}" "${iops[squashfuse-$c-first]}")"
  done
done
echo "(ratios: nydusd / peer at the same compression; above 1x means nydusd is faster)"
