#!/usr/bin/env bash
# fscache-mode read benchmark: sequential 1 MiB (and random 4 KiB) reads
# through the kernel's EROFS over fscache, served on demand by
# `nydusd singleton --fscache`, against the kernel's EROFS mount of the same
# image exported as a raw block image (`nydus-image export --block`). One
# command, as root on the host:
#
#   tests/bench/fscache_bench.sh [BUILD_DIR]        (default build/)
#
# The host kernel has no cachefiles on-demand mode, so the measuring runs in
# the fscache test VM (tests/vm/vm_harness.h): the images are built here, then
# BUILD_DIR/bin/nydus-vm-run boots the VM once and runs this same script
# with --in-vm inside it (the host root is the VM's root over 9p, read-only;
# the images are copied to the VM's ext4 disk first, so every peer reads
# from the same virtio disk). The VM runs under qemu TCG (software emulation,
# no KVM here): absolute MiB/s are those of an emulated machine and mean
# little; the ratios against the kernel EROFS measured in the same VM are
# what to read.
#
# Env: BENCH_MIB (dataset, default 128), BENCH_FILES (default 4; fio runs one
# job per file), BENCH_COMPS (default "lz4 zstd"), BENCH_REPS (sequential runs
# per case, the median is kept; default 3), BENCH_RAND=0 skips the random
# 4 KiB runs, BENCH_RAND_IOS (random reads per job, default 512),
# BENCH_RUNTIME (cap of a random run in seconds, default 20), BENCH_THREADS
# (nydusd --fscache-threads, default 4), BENCH_VM_CPUS (default 2),
# BENCH_VM_MEMORY (MiB, default 1536), BENCH_VM_TIMEOUT (s, default 900),
# BENCH_CACHE_TYPE (default fscache, see below), BENCH_DIR (host work dir,
# default a fresh mktemp -d), BENCH_KEEP=1 keeps it (with the VM's console
# log and the nydusd logs in vm/, and with BENCH_TRACE=1 a timestamped trace
# of the in-VM part in vm/out/trace.log). Needs python3 and
# nydus-vm-run's qemu, kernel and static busybox; fio if present (dd
# otherwise, or with BENCH_FIO=0, without the random runs). Not part of
# `make test`.
#
# Dataset: BENCH_FILES files, half random 4 KiB blocks, half text; nydus
# images lz4_block and zstd with 1 MiB chunks; the EROFS export is
# uncompressed (the kernel reads the blocks in place), so kernel EROFS is the
# no-decompression, no-daemon ceiling, not a same-compression peer.
#
# Cases (the page cache is dropped before every run):
#   fscache-C-cold  fresh cachefiles dir, fresh daemon, image bound with
#                   PUT /api/v2/blobs (cache type "fscache": the kernel's cache
#                   file is the only cache), mount -t erofs -o fsid=C: every
#                   chunk is fetched from the localfs blob, decompressed and
#                   written into the cache file by nydusd
#   fscache-C-warm  then unmount, remount the same fsid: the kernel's cache
#                   file holds every byte, no READ reaches nydusd (checked)
#   erofs           the export on a loop device: the ratio base
#   erofs-file      the export mounted file-backed (mount(2), no loop device)
# Sequential: fio psync, one job per file, bs=1M over the whole file,
# buffered (readahead works as for a container). Random: bs=4k, buffered with
# POSIX_FADV_RANDOM (no readahead; EROFS without a block device, over fscache
# or file-backed, refuses O_DIRECT), BENCH_RAND_IOS distinct blocks per file
# (fio's random map: no block twice, so the page cache never answers); cold
# random on a fresh daemon and cache, warm random on the filled cache. Every
# file read through fscache is compared with the EROFS export (cmp) once per
# compressor. nydusd's counters give the READs the kernel sent and the bytes
# written into the cache files in each run.
#
# BENCH_CACHE_TYPE=filecache binds the images with nydusd's own persistent
# blob cache (each chunk decompressed once into <work_dir>/<blob>.blob.data)
# under the kernel's cache file, instead of the default "fscache" (what the
# snapshotter binds: each READ fetches and decompresses its chunks).
set -euo pipefail
shopt -s inherit_errexit

self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
repo=$(cd "$(dirname "$0")/../.." && pwd)

# ---------------------------------------------------------------------------
# Inside the VM: fscache_bench.sh --in-vm HOST_WORK BIN_DIR
# ---------------------------------------------------------------------------
in_vm() {
  local hwork=$1 bin=$2
  local files=${BENCH_FILES:-4} mib=${BENCH_MIB:-128} comps=${BENCH_COMPS:-lz4 zstd}
  local reps=${BENCH_REPS:-3} rand=${BENCH_RAND:-1} rand_ios=${BENCH_RAND_IOS:-512}
  local runtime=${BENCH_RUNTIME:-20} threads=${BENCH_THREADS:-4} cache_type=${BENCH_CACHE_TYPE:-fscache}
  local file_mib=$((mib / files))
  local disk=/run/cache/fsb tmp=/run/fsb out=/run/out
  local mnt=$tmp/mnt ref=$tmp/ref
  vm_mounts=() vm_pids=()
  trap vm_cleanup EXIT
  trap 'exit 130' INT TERM
  mkdir -p "$disk" "$tmp" "$mnt" "$ref"
  vm_tmp=$tmp vm_disk=$disk
  if [[ ${BENCH_TRACE:-0} == 1 ]]; then  # a timestamped trace in vm/out/trace.log
    exec {trace_fd}>"$out/trace.log"
    BASH_XTRACEFD=$trace_fd
    PS4='+ ${EPOCHREALTIME} '
    set -x
  fi

  drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
  log() { echo "[vm $(date -u +%T)] $*"; }
  have_fio=0
  if command -v fio >/dev/null && [[ ${BENCH_FIO:-1} == 1 ]]; then have_fio=1; fi
  [[ $have_fio == 1 ]] || { log "fio not found: dd for the sequential runs, no random runs"; rand=0; }

  local t0 t1
  t0=$(date +%s%N)
  cp -r "$hwork/img" "$disk/img"
  sync
  t1=$(date +%s%N)
  log "copied the images to the VM's ext4 disk ($(du -sm "$disk/img" | cut -f1) MiB) in $(( (t1 - t0) / 1000000 )) ms"
  log "$(nproc) vCPU(s), $(awk '/MemTotal/ { printf "%d MiB", $2 / 1024 }' /proc/meminfo), kernel $(uname -r)"

  # read_run KIND NAME MNT -> "MiB/s IOPS"
  read_run() {
    local kind=$1 name=$2 m=$3 o=$tmp/fio-$2-$1.terse
    drop_caches
    if [[ $have_fio == 1 ]]; then
      # shellcheck disable=SC2016  # fio expands $jobnum
      local args=(--name="$name" --directory="$m" --filename_format='data$jobnum' --numjobs="$files"
        --size="${file_mib}M" --ioengine=psync --readonly --group_reporting --output-format=terse
        --terse-version=3 --output="$o")
      case $kind in
        seq) args+=(--rw=read --bs=1M) ;;
        rand) args+=(--rw=randread --bs=4k --fadvise_hint=random --number_ios="$rand_ios" --runtime="$runtime") ;;
      esac
      fio "${args[@]}" >/dev/null
      # terse v3: 5 error, 6 read KiB, 7 read KiB/s, 8 read IOPS (awk, not
      # python3: a python3 start costs ~1 s under TCG)
      awk -F';' 'NR == 1 { if ($5 != 0 || $6 == 0) { print "fio: error " $5 > "/dev/stderr"; exit 1 }
        printf "%.1f %.0f\n", $7 / 1024, $8 }' "$o"
    else
      local s e j p=()
      s=$(date +%s%N)
      for ((j = 0; j < files; j++)); do dd if="$m/data$j" of=/dev/null bs=1M status=none & p+=($!); done
      for j in "${p[@]}"; do wait "$j"; done
      e=$(date +%s%N)
      awk -v b="$mib" -v ns=$((e - s)) 'BEGIN { printf "%.1f %.0f\n", b / (ns / 1e9), b / (ns / 1e9) }'
    fi
  }

  # The nydusd of the current case: vm_dpid, its API socket vm_sock.
  local gen=0
  api() {  # api METHOD PATH [BODY_FILE] -> body on stdout; fails on HTTP >= 300
    local a=(-sS --max-time 60 --unix-socket "$vm_sock" -X "$1" -o "$tmp/api.out" -w '%{http_code}')
    [[ -n ${3:-} ]] && a+=(-H 'Content-Type: application/json' --data-binary "@$3")
    local code
    rm -f "$tmp/api.out"
    code=$(curl "${a[@]}" "http://localhost$2") || { echo "curl $1 $2 failed" >&2; return 1; }
    [[ $code -lt 300 ]] || { echo "$1 $2 -> $code $(cat "$tmp/api.out")" >&2; return 1; }
    cat "$tmp/api.out"
  }
  # counters -> "reads read_bytes read_errors" (fscache.metrics of GET
  # /api/v1/daemon; no python3 here: each start costs ~1 s under TCG)
  counters() {
    local j
    j=$(api GET /api/v1/daemon)
    grep -oE '"(reads|read_bytes|read_errors)":[0-9]+' <<<"$j" |
      awk -F: '{ v[$1] = $2 } END { if (length(v) != 3) exit 1; print v["\"reads\""], v["\"read_bytes\""], v["\"read_errors\""] }' ||
      { echo "no fscache counters in $j" >&2; return 1; }
  }
  start_daemon() {  # start_daemon COMP: fresh cachefiles dir, fresh daemon, image bound
    local c=$1 i state=
    gen=$((gen + 1))
    vm_cache=$disk/fscache-$gen
    vm_sock=$tmp/nydusd-$gen.sock
    mkdir -p "$vm_cache"
    "$bin/nydusd" singleton --fscache "$vm_cache" --fscache-threads "$threads" --apisock "$vm_sock" \
      --log-level warn >>"$out/nydusd-$gen.log" 2>&1 &
    vm_dpid=$!
    vm_pids+=("$vm_dpid")
    for ((i = 0; i < 600; i++)); do
      kill -0 "$vm_dpid" 2>/dev/null || { log "nydusd exited:"; cat "$out/nydusd-$gen.log"; return 1; }
      state=$(api GET /api/v1/daemon 2>/dev/null | grep -o '"state":"[A-Z]*"') || true
      [[ $state == '"state":"RUNNING"' ]] && break
      sleep 0.1
    done
    [[ $state == '"state":"RUNNING"' ]] || { log "nydusd did not reach RUNNING ($state)"; cat "$out/nydusd-$gen.log"; return 1; }
    # the BlobCacheEntry the snapshotter sends (fscache_blob_entry)
    printf '{"type":"bootstrap","id":"%s","domain_id":"","config_v2":{"version":2,"id":"%s","backend":{"type":"localfs","localfs":{"dir":"%s"}},"cache":{"type":"%s","%s":{"work_dir":"%s"}},"metadata_path":"%s"}}\n' \
      "$c" "$c" "$disk/img/nydus-$c/blobs" "$cache_type" "$cache_type" "$disk/work-$gen" "$disk/img/nydus-$c/boot" \
      >"$tmp/entry.json"
    api PUT /api/v2/blobs "$tmp/entry.json" >/dev/null
  }
  stop_daemon() {
    kill "$vm_dpid"
    local rc=0
    wait "$vm_dpid" || rc=$?
    [[ $rc == 0 ]] || { log "nydusd $vm_dpid exited with status $rc"; tail -n 20 "$out/nydusd-$gen.log"; return 1; }
    rm -rf "$vm_cache" "$disk/work-$gen"
  }
  mount_fscache() { mount -t erofs -o "fsid=$1" none "$mnt"; vm_mounts+=("$mnt"); }
  # mount(2) of the image file itself: mount(8) would set up a loop device.
  mount_file() {
    python3 -c 'import ctypes,os,sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.mount(sys.argv[1].encode(), sys.argv[2].encode(), b"erofs", 1, None) != 0:
    e = ctypes.get_errno(); sys.exit("mount %s: %s" % (sys.argv[1], os.strerror(e)))' "$1" "$2"
    vm_mounts+=("$2")
  }

  declare -gA bw iops runs nreads nbytes
  median() {  # median COLUMN "MiB/s IOPS"...
    local k=$1; shift
    printf '%s\n' "$@" | sort -g -k"$k,$k" | sed -n "$((($# + 1) / 2))p"
  }
  record() {  # record KEY KIND "MiB/s IOPS"...
    local key=$1 kind=$2 r all="" k=1; shift 2
    [[ $kind == rand ]] && k=2
    read -r "bw[$key-$kind]" "iops[$key-$kind]" <<<"$(median $k "$@")"
    for r in "$@"; do if [[ $kind == seq ]]; then all+=" ${r%% *}"; else all+=" ${r##* }"; fi; done
    runs[$key-$kind]=${all# }
    log "$(printf '%-18s %-4s %9s MiB/s %8s IOPS  (runs: %s)' "$key" "$kind" "${bw[$key-$kind]}" "${iops[$key-$kind]}" "${runs[$key-$kind]}")"
  }
  # delta BEFORE AFTER KEY: READs and bytes that reached nydusd in between
  delta() {
    local r0 b0 r1 b1 e1
    read -r r0 b0 _ <<<"$1"
    read -r r1 b1 e1 <<<"$2"
    nreads[$3]=$((r1 - r0))
    nbytes[$3]=$(((b1 - b0) / 1048576))
    [[ $e1 == 0 ]] || { log "nydusd counted $e1 READ errors"; return 1; }
  }

  # Rounds: each one measures every case once, so that a disturbance (another
  # VM on the host's CPUs) hits the peers alike rather than one of them.
  local c f i peer before after key rows=()
  declare -A seqruns
  for c in $comps; do rows+=("fscache-$c-cold" "fscache-$c-warm"); done
  rows+=(erofs erofs-file)
  for ((i = 1; i <= reps; i++)); do
    log "round $i of $reps"
    for c in $comps; do
      start_daemon "$c"
      mount_fscache "$c"
      before=$(counters)
      seqruns[fscache-$c-cold]+="$(read_run seq "fscache-$c-cold" "$mnt")"$'\n'
      after=$(counters)
      delta "$before" "$after" "fscache-$c-cold-seq"
      umount "$mnt"
      drop_caches
      mount_fscache "$c"
      before=$(counters)
      seqruns[fscache-$c-warm]+="$(read_run seq "fscache-$c-warm" "$mnt")"$'\n'
      after=$(counters)
      delta "$before" "$after" "fscache-$c-warm-seq"
      [[ ${nreads[fscache-$c-warm-seq]} == 0 ]] ||
        log "WARNING: ${nreads[fscache-$c-warm-seq]} READs reached nydusd in the warm run of $c"
      if ((i == reps)); then
        if [[ $rand == 1 ]]; then
          before=$(counters)
          record "fscache-$c-warm" rand "$(read_run rand "fscache-$c-warm" "$mnt")"
          after=$(counters)
          delta "$before" "$after" "fscache-$c-warm-rand"
        fi
        # every byte once: the fscache mount against the EROFS export
        mount -t erofs -o ro,loop "$disk/img/erofs.img" "$ref"
        vm_mounts+=("$ref")
        for ((f = 0; f < files; f++)); do
          cmp "$mnt/data$f" "$ref/data$f" || { log "fscache $c: data$f differs from the EROFS export"; exit 1; }
        done
        umount "$ref"
        log "fscache-$c: all $files files equal to the EROFS export"
      fi
      umount "$mnt"
      stop_daemon
    done
    for peer in erofs erofs-file; do
      if [[ $peer == erofs ]]; then
        mount -t erofs -o ro,loop "$disk/img/erofs.img" "$mnt"
        vm_mounts+=("$mnt")
      else
        mount_file "$disk/img/erofs.img" "$mnt"
      fi
      seqruns[$peer]+="$(read_run seq "$peer" "$mnt")"$'\n'
      if ((i == reps)) && [[ $rand == 1 ]]; then record "$peer" rand "$(read_run rand "$peer" "$mnt")"; fi
      umount "$mnt"
    done
  done
  local r=()
  for key in "${rows[@]}"; do
    mapfile -t r <<<"${seqruns[$key]%$'\n'}"  # (no /dev/fd in the VM: no <(...))
    record "$key" seq "${r[@]}"
  done
  if [[ $rand == 1 ]]; then
    for c in $comps; do
      start_daemon "$c"
      mount_fscache "$c"
      before=$(counters)
      record "fscache-$c-cold" rand "$(read_run rand "fscache-$c-cold" "$mnt")"
      after=$(counters)
      delta "$before" "$after" "fscache-$c-cold-rand"
      umount "$mnt"
      stop_daemon
    done
  fi
  # ratio A B -> "A/B" with two decimals ("-" when either is missing or 0)
  ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 == 0 || b + 0 == 0) print "-"; else printf "%.2fx", a / b }'; }
  # round_ratios "A1 A2.." "B1 B2.." -> "MEDIAN (A1/B1,A2/B2,..)": two words
  round_ratios() {
    awk -v a="$1" -v b="$2" 'BEGIN {
      n = split(a, x, " "); m = split(b, y, " ")
      if (n == 0 || n != m) { print "- -"; exit }
      for (i = 1; i <= n; i++) { r[i] = y[i] > 0 ? x[i] / y[i] : 0; l = l (i > 1 ? "," : "") sprintf("%.2f", r[i]) }
      for (i = 2; i <= n; i++) for (j = i; j > 1 && r[j - 1] > r[j]; j--) { t = r[j]; r[j] = r[j - 1]; r[j - 1] = t }
      printf "%.2fx (%s)\n", (n % 2 ? r[(n + 1) / 2] : (r[n / 2] + r[n / 2 + 1]) / 2), l }'
  }

  # The table.
  {
    echo "fscache_bench: $mib MiB in $files files (half random, half text), 1 MiB chunks, cache type $cache_type, $threads fscache threads; $(nproc) vCPU(s) under qemu TCG"
    local reader="fio psync x$files" rdesc="rand 4 KiB = $rand_ios blocks per file, one run"
    [[ $have_fio == 1 ]] || reader="dd bs=1M x$files (no fio)"
    [[ $rand == 1 ]] || rdesc="no rand runs"
    echo "$reader, page cache dropped before each run; seq 1 MiB = median of $reps runs; $rdesc"
    echo "ratio base: kernel EROFS of the uncompressed export on a loop device, same VM, same disk"
    echo "SOFTWARE EMULATION: absolute MiB/s and IOPS are those of an emulated CPU; read the ratios."
    printf '%-18s %9s %9s  %-20s %9s %9s %9s %8s %9s %8s\n' case "seq MiB/s" "vs EROFS" "(per round)" \
      "rand IOPS" "vs EROFS" "seq READs" "seq MiB" "rnd READs" "rnd MiB"
    local rmed rlist
    for key in "${rows[@]}"; do
      read -r rmed rlist <<<"$(round_ratios "${runs[$key-seq]:-}" "${runs[erofs-seq]:-}")"
      printf '%-18s %9s %9s  %-20s %9s %9s %9s %8s %9s %8s\n' "$key" "${bw[$key-seq]:--}" "$rmed" "$rlist" \
        "${iops[$key-rand]:--}" "$(ratio "${iops[$key-rand]:-}" "${iops[erofs-rand]:-}")" \
        "${nreads[$key-seq]:--}" "${nbytes[$key-seq]:--}" "${nreads[$key-rand]:--}" "${nbytes[$key-rand]:--}"
    done
    echo "(seq vs EROFS: the median of the rounds' ratios, each round's case against that round's EROFS run;"
    echo " rand: one run per case, in the last round (cold: on a fresh daemon and cache after the rounds)."
    echo " READs / MiB: READ requests the kernel sent to nydusd and the bytes nydusd wrote into the cache files"
    echo " during the run; warm = the cache file filled by the cold run, remounted with the same fsid)"
  } | tee "$out/table.txt"
}

vm_cleanup() {
  local i m p
  for ((i = ${#vm_mounts[@]} - 1; i >= 0; i--)); do
    m=${vm_mounts[i]}
    mountpoint -q "$m" 2>/dev/null && { umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; }
  done
  for p in "${vm_pids[@]}"; do if kill -0 "$p" 2>/dev/null; then kill "$p" 2>/dev/null || true; fi; done
  for p in "${vm_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "${vm_tmp:-/run/fsb}" "${vm_disk:-/run/cache/fsb}"
}

if [[ ${1:-} == --in-vm ]]; then
  shift
  in_vm "$@"
  exit 0
fi

# ---------------------------------------------------------------------------
# On the host
# ---------------------------------------------------------------------------
source "$repo/tests/bench/bench_lib.sh"
bench_setup fscache "${1:-$repo/build}" python3
[[ -x $bin/nydus-vm-run ]] || { echo "$bin/nydus-vm-run not found (build it: ninja nydus-vm-run)" >&2; exit 1; }
bin=$(cd "$bin" && pwd)  # the VM runs them by this path

mib=${BENCH_MIB:-128}
files=${BENCH_FILES:-4}
comps=${BENCH_COMPS:-lz4 zstd}
file_mib=$((mib / files))
((file_mib >= 1)) || { echo "BENCH_MIB must be at least BENCH_FILES" >&2; exit 1; }
t_start=$(now_ns)

echo "generating $mib MiB in $files files (half random 4 KiB blocks, half text) ..."
make_dataset "$work/tree" "$files" "$file_mib"

echo "building images ..."
for c in $comps; do
  nc=$c; [[ $c == lz4 ]] && nc=lz4_block
  mkdir -p "$work/img/nydus-$c/blobs"
  "$bin/nydus-image" -l warn create -t dir-rafs -c "$nc" -B "$work/img/nydus-$c/boot" \
    -D "$work/img/nydus-$c/blobs" "$work/tree" >/dev/null
  echo "  nydus $nc: blob $(du -m "$work/img/nydus-$c/blobs"/* | cut -f1 | head -n1) MiB"
done
first=${comps%% *}
"$bin/nydus-image" -l warn export --block -B "$work/img/nydus-$first/boot" -D "$work/img/nydus-$first/blobs" \
  -O "$work/img/erofs.img" >/dev/null
echo "  EROFS export (uncompressed): $(du -m "$work/img/erofs.img" | cut -f1) MiB"
rm -rf "$work/tree"

# The VM's ext4 disk holds a copy of the images and the cachefiles caches.
disk_mb=$((4 * mib + 512))
vm_env=()
for v in BENCH_FIO BENCH_TRACE BENCH_CACHE_TYPE BENCH_REPS BENCH_RAND BENCH_RAND_IOS BENCH_RUNTIME BENCH_THREADS; do
  [[ -n ${!v:-} ]] && vm_env+=(--env "$v=${!v}")
done
vm_env+=(--env "BENCH_MIB=$mib" --env "BENCH_FILES=$files" --env "BENCH_COMPS=$comps")
echo "booting the VM (qemu TCG, ${BENCH_VM_CPUS:-2} vCPUs, ${BENCH_VM_MEMORY:-1536} MiB, ${disk_mb} MiB ext4 disk) ..."
vm_load=$(cut -d' ' -f1-3 /proc/loadavg)
# run_vm: one nydus-vm-run (it boots again by itself once if the kernel dies
# while booting, which the 2-vCPU TCG guest occasionally does); sets rc.
run_vm() {
  rc=0
  "$bin/nydus-vm-run" --timeout "${BENCH_VM_TIMEOUT:-900}" --disk-mb "$disk_mb" --cpus "${BENCH_VM_CPUS:-2}" \
    --memory-mb "${BENCH_VM_MEMORY:-1536}" --work-dir "$work/vm" "${vm_env[@]}" \
    -- /bin/bash "$self" --in-vm "$work" "$bin" >"$work/vm-output.txt" &
  vm_pid=$!
  bench_pids+=("$vm_pid")
  # Another VM on the host's CPUs skews the numbers: count the 2 s samples
  # that saw a qemu which is not ours.
  (
    while kill -0 "$vm_pid" 2>/dev/null; do
      for p in $(pgrep -f '^[^ ]*qemu-system' || true); do
        if [[ $(ps -o ppid= -p "$p" | tr -d ' ') != "$vm_pid" ]]; then echo "$p" >>"$work/other-qemu"; break; fi
      done
      sleep 2
    done
  ) &
  bench_pids+=("$!")
  wait "$vm_pid" || rc=$?
}
run_vm
# Both boots died before the command began (nothing ran): one more try.
if [[ $rc == 125 ]] && ! grep -q NYDUS-VM-BEGIN "$work/vm/console.log" 2>/dev/null; then
  echo "the VM did not boot (twice); booting once more ..."
  run_vm
fi
cat "$work/vm-output.txt"
echo
echo "started $started; load average before the VM $vm_load, at end $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) host CPUs"
echo "whole run $(secs "$t_start" "$(now_ns)") s"
if [[ -s $work/other-qemu ]]; then
  echo "NOTE: another qemu VM ran on this host in $(wc -l <"$work/other-qemu") of the 2 s samples of this run: the numbers are disturbed"
else
  echo "no other qemu VM ran on this host during the run"
fi
if [[ $rc != 0 || ! -s $work/vm/out/table.txt ]]; then
  echo "fscache_bench: the VM run failed (status $rc); console log: $work/vm/console.log (BENCH_KEEP=1 keeps it)" >&2
  exit 1
fi
