# shellcheck shell=bash
# Shared by read_bench.sh and meta_bench.sh (sourced, not run): their
# start, peers to mount, cleanup of exactly what the bench started, timing
# helpers.
#
# A bench calls bench_setup first (it sets $bin and $work); bench_cleanup runs
# from its EXIT trap: it unmounts the mountpoints this bench mounted (most
# recent first), kills the pids it started, and removes $work unless
# BENCH_KEEP=1.

bench_mounts=()
bench_pids=()

# bench_setup NAME BUILD_DIR TOOL...: checks that it runs as root and that
# BUILD_DIR/bin has nydusd and nydus-image and the PATH every TOOL (exits 1
# if not); sets bin; makes the work dir $work (BENCH_DIR, default a fresh
# mktemp -d named after NAME) and installs the traps that clean it up; notes
# the load average ($start_load) and the time ($started) at the start.
# shellcheck disable=SC2034  # start_load and started are the bench's
bench_setup() {
  local name=$1 t
  bin=$2/bin
  shift 2
  [[ $(id -u) == 0 ]] || { echo "run as root (mounts, drop_caches)" >&2; exit 1; }
  for t in "$bin/nydusd" "$bin/nydus-image"; do
    [[ -x $t ]] || { echo "$t not found (build first, or pass the build dir)" >&2; exit 1; }
  done
  for t in "$@"; do
    command -v "$t" >/dev/null || { echo "$t not found (make deps)" >&2; exit 1; }
  done
  work=${BENCH_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/nydus-$name-bench-XXXXXX")}
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
  mkdir -p "$work"
  start_load=$(cut -d' ' -f1-3 /proc/loadavg)
  started=$(date -u '+%Y-%m-%d %H:%M UTC')
}

bench_cleanup() {
  local i m p
  for ((i = ${#bench_mounts[@]} - 1; i >= 0; i--)); do
    m=${bench_mounts[i]}
    mountpoint -q "$m" 2>/dev/null && { umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; }
  done
  for p in "${bench_pids[@]}"; do
    kill -0 "$p" 2>/dev/null && kill "$p" 2>/dev/null || true
  done
  for p in "${bench_pids[@]}"; do
    wait "$p" 2>/dev/null || true
  done
  if [[ -n ${work:-} && ${BENCH_KEEP:-0} != 1 ]]; then rm -rf "$work"; fi
}

# make_dataset DIR FILES MIB_PER_FILE: files data0.. of MIB_PER_FILE MiB each,
# alternating random 4 KiB blocks and text blocks (half compressible).
make_dataset() {
  python3 - "$1" "$2" "$3" <<'PY'
import os, random, sys
root, n, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(root, exist_ok=True)
rng = random.Random(8)
text = "".join(f"{i} the quick brown fox jumps over the lazy dog\n" for i in range(2000)).encode()
for j in range(n):
    with open(os.path.join(root, f"data{j}"), "wb") as f:
        for b in range(mib * 256):  # 4 KiB blocks
            if b % 2 == 0:
                f.write(os.urandom(4096))
            else:
                off = rng.randrange(0, len(text) - 4096)
                f.write(text[off:off + 4096])
PY
}

drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

now_ns() { date +%s%N; }

# Seconds (3 decimals) between two now_ns values.
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }

# ratio A B -> "A/B" with two decimals ("-" when B is 0 or empty).
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.2fx", a / b }'; }

# Waits (bounded) until $1 is a mountpoint while pid $2 lives.
wait_mounted() {
  local mnt=$1 pid=$2 i
  for ((i = 0; i < 2000; i++)); do
    mountpoint -q "$mnt" && return 0
    kill -0 "$pid" 2>/dev/null || { echo "process $pid exited before $mnt was mounted" >&2; return 1; }
    sleep 0.01
  done
  echo "$mnt was not mounted within 20 s" >&2
  return 1
}

# Unmounts $1 and waits for pid $2 (a FUSE daemon) to exit.
unmount_peer() {
  local mnt=$1 pid=${2:-}
  umount "$mnt"
  if [[ -n $pid ]]; then
    # the daemon exits once its mount is gone; bounded wait
    local i
    for ((i = 0; i < 1000; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.01; done
    kill -0 "$pid" 2>/dev/null && kill "$pid"
    wait "$pid" 2>/dev/null || true
  fi
}

# v1 localfs + blobcache config of nydusd (as the snapshotter writes it).
nydus_config() {
  local blobs=$1 cache=$2
  printf '{"device":{"backend":{"type":"localfs","config":{"dir":"%s"}},"cache":{"type":"blobcache","config":{"work_dir":"%s"}}},"mode":"direct","digest_validate":false,"iostats_files":false,"enable_xattr":true,"fs_prefetch":{"enable":false}}\n' \
    "$blobs" "$cache"
}

# mount_nydusd MNT BOOT BLOBS CACHE: starts nydusd in the background; sets
# peer_pid. Log in $work/nydusd.log.
mount_nydusd() {
  local mnt=$1 boot=$2 blobs=$3 cache=$4
  mkdir -p "$mnt" "$cache"
  nydus_config "$blobs" "$cache" >"$work/nydusd-config.json"
  rm -f "$work/nydusd-api.sock"
  "$bin/nydusd" --mountpoint "$mnt" --config "$work/nydusd-config.json" --bootstrap "$boot" \
    --apisock "$work/nydusd-api.sock" --log-level warn >>"$work/nydusd.log" 2>&1 &
  peer_pid=$!
  bench_pids+=("$peer_pid")
  bench_mounts+=("$mnt")
  wait_mounted "$mnt" "$peer_pid"
}

# mount_squashfuse MNT IMG: squashfuse in the foreground (so we own its pid).
mount_squashfuse() {
  local mnt=$1 img=$2
  mkdir -p "$mnt"
  squashfuse -f "$img" "$mnt" >>"$work/squashfuse.log" 2>&1 &
  peer_pid=$!
  bench_pids+=("$peer_pid")
  bench_mounts+=("$mnt")
  wait_mounted "$mnt" "$peer_pid"
}

# mount_erofs MNT IMG [loop|file]: the kernel's EROFS on a loop device
# (default) or file-backed (no block device, Linux 6.12+).
mount_erofs() {
  local mnt=$1 img=$2 how=${3:-loop}
  mkdir -p "$mnt"
  bench_mounts+=("$mnt")
  if [[ $how == loop ]]; then
    mount -t erofs -o ro,loop "$img" "$mnt"
  else
    mount -t erofs -o ro "$img" "$mnt"
  fi
  peer_pid=
}

# KiB of VmRSS and VmHWM of pid $1: "rss hwm".
rss_kib() {
  awk '/^VmRSS:/ { r = $2 } /^VmHWM:/ { h = $2 } END { print r, h }' "/proc/$1/status"
}
