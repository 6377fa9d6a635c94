# shellcheck shell=bash
# A private nydus stack for scripts (sourced, not run): a RAFS v6 image
# packaged as an OCI archive, containerd-nydus-grpc, a private containerd
# whose proxy plugin "nydus" is that snapshotter, and the clean-up of exactly
# what was started. Used by tests/demo/run-demo.sh and
# tests/bench/recovery_bench.sh.
#
# The caller sets, before calling anything here:
#   WORK       its temp dir (short: the snapshotter root must stay < 70 bytes);
#              every process this file finds by command line names it
#   BIN        the build's bin/ (nydusd, nydus-image, containerd-nydus-grpc, nydusctl)
#   NS         the containerd namespace (per run: runc keeps state per namespace)
#   IMAGE      the image reference to import
#   STACK_TAG  the prefix of log lines ("demo", "bench")
# and may set STACK (default $WORK): the directory of one stack's state
# (snapshotter root, containerd root and state, sockets, logs), so that a
# script can tear a stack down and start a fresh one next to the same image.
#
# Processes started here are remembered by pid (CONTAINERD_PID,
# SNAPSHOTTER_PID); nydusd daemons and containerd shims, which outlive their
# parents by design, are found by a command line naming $WORK.

STACK_START_TIMEOUT=${STACK_START_TIMEOUT:-30}  # seconds for a socket or a boot line
CONTAINERD_PID=""
SNAPSHOTTER_PID=""
STACK_CONTAINERS=()  # names of the containers started with stack_run_container

say() { printf '\033[1m[%s %s]\033[0m %s\n' "${STACK_TAG:-stack}" "$(date +%T)" "$*"; }
die() { say "ERROR: $*" >&2; exit 1; }

# Pids of processes whose command line matches the glob $1 (it should name
# $WORK, so that only what this script started is found).
pids_matching() {
  local p cmd
  for p in /proc/[0-9]*; do
    cmd=$({ tr '\0' ' ' < "$p/cmdline"; } 2>/dev/null) || continue
    # shellcheck disable=SC2053
    [[ $cmd == $1 ]] && echo "${p#/proc/}"
  done
  return 0
}
# nydusd daemons started by our snapshotter (they outlive it by design).
our_nydusd_pids() { pids_matching "*nydusd* *$WORK/*"; }
# containerd shims of our containerd: they daemonize, so they are not our
# children, and they outlive a containerd that is stopped.
our_shim_pids() { pids_matching "*containerd-shim* -address ${STACK:-$WORK}/containerd.sock*"; }

ctr_() { /usr/bin/ctr -a "${STACK:-$WORK}/containerd.sock" -n "$NS" "$@"; }

stop_pid() {  # pid [seconds]: SIGTERM, then SIGKILL after the grace period
  local pid=$1 grace=${2:-10} i
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

# Mount points at or below directory $1, deepest first.
mounts_below() {
  awk -v w="$1" '$5 == w || index($5, w "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r
}

# Aborts every FUSE connection mounted below $1 (a reader stuck on a
# connection nobody serves), then detaches every mount below it.
release_mounts_below() {
  local devno mp conn
  while read -r devno mp; do
    conn=$(( (${devno%%:*} << 20) | ${devno##*:} ))
    { echo 1 > "/sys/fs/fuse/connections/$conn/abort"; } 2>/dev/null || true
  done < <(awk -v w="$1" 'index($5, w "/") == 1 && / - fuse/ { print $3, $5 }' /proc/self/mountinfo)
  for mp in $(mounts_below "$1"); do umount -l "$mp" 2>/dev/null || true; done
  return 0
}

wait_for() {  # description seconds command...: polls the command until it succeeds
  local what=$1 secs=$2 i
  shift 2
  for ((i = 0; i < secs * 10; i++)); do
    "$@" && return 0
    sleep 0.1
  done
  die "timed out after ${secs}s waiting for $what"
}

# --- the image ---------------------------------------------------------------

# stack_build_image SRC_DIR [nydus-image create options...]: a RAFS v6 image of
# SRC_DIR (bootstrap in $WORK/layer/image/image.boot, blobs in the localfs
# backend dir $WORK/blobs), packaged as the OCI archive $WORK/image.tar whose
# only layer holds image/image.boot (as in tests/e2e).
stack_build_image() {
  local src=$1 t0 arch
  shift
  mkdir -p "$WORK"/{layer/image,blobs,oci/blobs/sha256}
  say "nydus-image create $* (RAFS v6, blobs into a localfs dir)"
  t0=$(date +%s%N)
  "$BIN/nydus-image" create -t dir-rafs -B "$WORK/layer/image/image.boot" -D "$WORK/blobs" "$@" "$src" \
    > "$WORK/nydus-image.log" 2>&1 || { cat "$WORK/nydus-image.log"; die "nydus-image failed"; }
  say "  built in $(( ($(date +%s%N) - t0) / 1000000 )) ms: bootstrap $(stat -c %s "$WORK/layer/image/image.boot") bytes, blobs $(du -sh "$WORK/blobs" | cut -f1)"

  # OCI archive: oci-layout, index.json, blobs/sha256/{layer,config,manifest}.
  case "$(uname -m)" in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; *) arch=$(uname -m) ;; esac
  local oci=$WORK/oci layer_digest layer_size config_digest config_size manifest_digest manifest_size
  _put_blob() {  # file -> prints "digest size", moves it into the blob store
    local d s
    d=$(sha256sum "$1" | cut -d' ' -f1)
    s=$(stat -c %s "$1")
    mv "$1" "$oci/blobs/sha256/$d"
    echo "$d $s"
  }
  tar --format=ustar --owner=0 --group=0 --numeric-owner --mtime=@1700000000 \
    -C "$WORK/layer" -cf "$WORK/layer.tar" image
  read -r layer_digest layer_size < <(_put_blob "$WORK/layer.tar")
  printf '{"architecture":"%s","os":"linux","config":{"Cmd":["/bin/sh"],"Env":["PATH=/bin"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$arch" "$layer_digest" > "$WORK/config.json"
  read -r config_digest config_size < <(_put_blob "$WORK/config.json")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
    "$config_digest" "$config_size" "$layer_digest" "$layer_size" > "$WORK/manifest.json"
  read -r manifest_digest manifest_size < <(_put_blob "$WORK/manifest.json")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"%s","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"latest"}}]}' \
    "$manifest_digest" "$manifest_size" "$arch" "$IMAGE" > "$oci/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' > "$oci/oci-layout"
  tar --owner=0 --group=0 --numeric-owner -C "$oci" -cf "$WORK/image.tar" oci-layout index.json blobs
}

# --- snapshotter and containerd ---------------------------------------------

# stack_start POLICY [extra [daemon] TOML lines...]: writes the nydusd and
# snapshotter configs below $STACK, starts containerd-nydus-grpc (system API
# on $STACK/system.sock) and a private containerd using it, and imports
# $WORK/image.tar with the nydus snapshotter.
stack_start() {
  local policy=$1 line
  shift
  local stack=${STACK:-$WORK}
  mkdir -p "$stack"
  cat > "$stack/nydusd-config.json" <<EOF
{
  "device": {
    "backend": {"type": "localfs", "config": {"dir": "$WORK/blobs"}},
    "cache": {"type": "blobcache", "config": {"work_dir": "/replaced-by-the-snapshotter"}}
  },
  "mode": "direct",
  "digest_validate": false
}
EOF
  {
    cat <<EOF
version = 1
root = "$stack/nydus"
address = "$stack/nydus.sock"
daemon_mode = "dedicated"

[daemon]
nydusd_path = "$BIN/nydusd"
nydusimage_path = "$BIN/nydus-image"
nydusd_config = "$stack/nydusd-config.json"
recover_policy = "$policy"
failover_policy = "resend"
EOF
    for line in "$@"; do echo "$line"; done
    cat <<EOF

[system]
enable = true
address = "$stack/system.sock"

[log]
level = "info"
EOF
  } > "$stack/snapshotter.toml"
  say "starting containerd-nydus-grpc (recover_policy = $policy${*:+, $*}, system API on $stack/system.sock)"
  # setsid: a Ctrl-C on the terminal reaches only the script, whose clean-up
  # then stops containerd and the snapshotter in order.
  setsid "$BIN/containerd-nydus-grpc" --config "$stack/snapshotter.toml" > "$stack/snapshotter.out" 2>&1 &
  SNAPSHOTTER_PID=$!
  wait_for "the snapshotter's socket" "$STACK_START_TIMEOUT" test -S "$stack/nydus.sock"
  if ! kill -0 "$SNAPSHOTTER_PID" 2>/dev/null; then cat "$stack/snapshotter.out"; die "the snapshotter exited"; fi

  cat > "$stack/containerd.toml" <<EOF
version = 2
root = "$stack/containerd/root"
state = "$stack/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$stack/containerd.sock"
[ttrpc]
  address = "$stack/containerd.sock.ttrpc"
[proxy_plugins.nydus]
  type = "snapshot"
  address = "$stack/nydus.sock"
EOF
  say "starting containerd (private root, state and socket in $stack)"
  setsid /usr/bin/containerd --config "$stack/containerd.toml" > "$stack/containerd.log" 2>&1 &
  CONTAINERD_PID=$!
  wait_for "containerd" "$STACK_START_TIMEOUT" grep -qs "containerd successfully booted" "$stack/containerd.log"

  say "ctr images import --snapshotter nydus"
  ctr_ images import --snapshotter nydus "$WORK/image.tar" > "$stack/import.log" 2>&1 ||
    { cat "$stack/import.log"; die "import failed"; }
}

# stack_run_container NAME [ctr run options...] -- COMMAND...: ctr run -d with
# the nydus snapshotter; NAME is stopped by stack_teardown.
stack_run_container() {
  local name=$1 opts=()
  shift
  while [ $# -gt 0 ] && [ "$1" != -- ]; do opts+=("$1"); shift; done
  shift
  STACK_CONTAINERS+=("$name")
  ctr_ run -d --snapshotter nydus "${opts[@]}" "$IMAGE" "$name" "$@" > "${STACK:-$WORK}/run-$name.log" 2>&1 ||
    { cat "${STACK:-$WORK}/run-$name.log"; die "ctr run $name failed"; }
}

# The RAFS mount of a nydusd (the first FUSE mount below the snapshotter root).
stack_fuse_mount() {
  awk -v w="${STACK:-$WORK}/nydus/" 'index($5, w) == 1 && / - fuse/ { print $5; exit }' /proc/self/mountinfo
}

system_api() { "$BIN/nydusctl" --system "${STACK:-$WORK}/system.sock" "$@"; }

# Stops everything the current stack started: containers, containerd, its
# shims and runc state, the snapshotter, its nydusd daemons; aborts and
# detaches the mounts below $STACK. Every wait is bounded; nothing in it
# fails (it also runs under set -e, between two stacks).
stack_teardown() {
  local stack=${STACK:-$WORK} name p
  if [ -n "$CONTAINERD_PID" ] && kill -0 "$CONTAINERD_PID" 2>/dev/null; then
    for name in "${STACK_CONTAINERS[@]}"; do
      timeout 10 /usr/bin/ctr -a "$stack/containerd.sock" -n "$NS" tasks kill -s SIGKILL "$name" >/dev/null 2>&1 || true
      timeout 10 /usr/bin/ctr -a "$stack/containerd.sock" -n "$NS" tasks rm -f "$name" >/dev/null 2>&1 || true
      timeout 10 /usr/bin/ctr -a "$stack/containerd.sock" -n "$NS" containers rm "$name" >/dev/null 2>&1 || true
    done
    timeout 20 /usr/bin/ctr -a "$stack/containerd.sock" -n "$NS" images rm --sync "$IMAGE" >/dev/null 2>&1 || true
  fi
  stop_pid "$CONTAINERD_PID" 10
  CONTAINERD_PID=""
  for p in $(our_shim_pids); do kill -KILL "$p" 2>/dev/null || true; done
  # What the shim would have done: kill the container and drop runc's state.
  if [ -d "/run/containerd/runc/$NS" ]; then
    for name in "${STACK_CONTAINERS[@]}"; do
      runc --root "/run/containerd/runc/$NS" delete -f "$name" >/dev/null 2>&1 || true
    done
    rmdir "/run/containerd/runc/$NS" 2>/dev/null || true
  fi
  STACK_CONTAINERS=()
  stop_pid "$SNAPSHOTTER_PID" 10
  SNAPSHOTTER_PID=""
  for p in $(our_nydusd_pids); do kill -KILL "$p" 2>/dev/null || true; done
  release_mounts_below "$stack"
  return 0
}

# stack_finish RC RESULT KEEP: the end of a caller's EXIT trap. Tears the
# stack down, keeps $WORK when KEEP is 1 (else removes it), and exits with RC,
# or with RESULT when RC is 0 (the script itself went through).
stack_finish() {
  local rc=$1 result=$2 keep=$3
  stack_teardown
  if [ "$keep" = 1 ]; then
    say "kept $WORK"
  else
    rm -rf "$WORK"
  fi
  [ "$rc" = 0 ] && rc=$result
  exit "$rc"
}
