#!/usr/bin/env bash
# The headline, live: a crash (kill -9) and a hot upgrade of nydusd are
# invisible to the container reading from it.
#
#   tests/demo/run-demo.sh [BUILD_DIR]        (make demo; needs root, /dev/fuse,
#                                              containerd, runc, busybox-static)
#
# 1. Builds a sample image: busybox plus DEMO_FILES x DEMO_FILE_MIB MiB of random
#    data (240 MiB by default), with BUILD_DIR/bin/nydus-image; packages it as
#    an OCI archive whose only layer holds image/image.boot (the blobs stay in
#    a localfs backend dir, as in tests/e2e).
# 2. Starts a private containerd (own root/state/socket in a temp dir) whose
#    proxy plugin "nydus" is containerd-nydus-grpc, configured with
#    recover_policy = "failover" and the system API on a temp system.sock.
# 3. Imports the image and runs a container whose busybox script reads and
#    md5-checks every data file in a loop, logging reads, errors and the
#    longest single-file read (stall). The host evicts the files' page cache
#    all the time, so reads keep reaching nydusd instead of the kernel cache.
# 4. kill -9 of nydusd mid-read; the snapshotter's failover takes over.
# 5. Hot upgrade through system.sock (nydusctl upgrade) to a copy of nydusd
#    under a new name, as a new release would arrive.
# 6. Stops the container and prints the summary: reads, errors (must be 0),
#    longest stall, and the snapshotter's view of the daemon (GET
#    /api/v1/daemons: recovery count, failover and upgrade durations).
#
# Exit status: 0 when the reader saw no error and every step worked, 1
# otherwise, 2 when a prerequisite is missing. Everything started here is
# stopped by pid and every mount below the temp dir is removed, on success,
# failure and Ctrl-C alike.
#
# Knobs (environment): DEMO_FILES (48), DEMO_FILE_MIB (5), DEMO_SETTLE_SECS
# (5, reading time after each event), DEMO_SKIP_KILL=1, DEMO_SKIP_UPGRADE=1
# (run the rest alone), DEMO_KEEP=1 (keep the temp dir for inspection).
set -euo pipefail

BUILD_DIR=$(realpath "${1:-build}")
BIN="$BUILD_DIR/bin"
FILES=${DEMO_FILES:-48}
FILE_MIB=${DEMO_FILE_MIB:-5}
SETTLE=${DEMO_SETTLE_SECS:-5}
IMAGE=docker.io/library/nydus-demo:latest
NS=nydus-demo-$$   # per run: runc keeps its state per namespace in /run/containerd/runc
STACK_TAG=demo
# shellcheck source=tests/demo/stack_lib.sh
source "$(dirname "$(realpath "$0")")/stack_lib.sh"

# --- prerequisites -----------------------------------------------------------
missing=()
[ "$(id -u)" = 0 ] || missing+=("root")
[ -c /dev/fuse ] || missing+=("/dev/fuse")
for tool in /usr/bin/containerd /usr/bin/ctr /bin/busybox; do
  [ -x "$tool" ] || missing+=("$tool")
done
command -v runc >/dev/null || missing+=("runc")
for b in nydusd nydus-image containerd-nydus-grpc nydusctl; do
  [ -x "$BIN/$b" ] || missing+=("$BIN/$b (make build)")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "demo: missing: ${missing[*]}" >&2
  echo "demo: run 'make demo' as root (it installs packaging/deps.txt and builds)" >&2
  exit 2
fi

# Short path: the snapshotter's root must stay under 70 bytes (sun_path).
WORK=$(mktemp -d /tmp/nydus-demo.XXXXXX)
EVICTOR_PID=""
RESULT=1

cleanup() {
  local rc=$?
  trap - EXIT
  trap '' INT TERM  # a second Ctrl-C must not cut the clean-up short (every wait in it is bounded)
  set +e
  say "cleaning up"
  [ -n "$EVICTOR_PID" ] && kill "$EVICTOR_PID" 2>/dev/null
  touch "$WORK/out/stop" 2>/dev/null
  stack_finish "$rc" "$RESULT" "${DEMO_KEEP:-0}"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM

# --- 1. the sample image -----------------------------------------------------
mkdir -p "$WORK"/{src/bin,src/data,expected,out,bin}
say "building a sample root file system: busybox + $FILES x $FILE_MIB MiB of random data"
cp /bin/busybox "$WORK/src/bin/busybox"
for applet in sh cat md5sum cut date sleep ls; do ln -s busybox "$WORK/src/bin/$applet"; done
for ((i = 0; i < FILES; i++)); do
  f=$(printf 'f%03d.bin' "$i")
  head -c "$((FILE_MIB << 20))" /dev/urandom > "$WORK/src/data/$f"
  md5sum "$WORK/src/data/$f" | cut -d' ' -f1 > "$WORK/expected/$f.md5"
done
stack_build_image "$WORK/src"

# --- 2. snapshotter and containerd ---------------------------------------------
# The "new release" for the upgrade: the same build under another name.
cp "$BIN/nydusd" "$WORK/bin/nydusd-v2"
stack_start failover

# --- 3. the reading container --------------------------------------------------
# busybox sh. Each read is one md5sum of one file, timed with /proc/uptime
# (10 ms resolution); the counters go to /out/status after every round, any
# mismatch or failed read to /out/errors with a timestamp.
cat > "$WORK/expected/reader.sh" <<'EOF'
reads=0; errors=0; maxstall=0; round=0
now_cs() { read up _ < /proc/uptime; echo "${up%.*}${up#*.}"; }
echo "$(date +%T) reader: started" >> /out/reader.log
while [ ! -e /out/stop ]; do
  round=$((round + 1))
  for f in /data/*.bin; do
    name=${f##*/}
    t0=$(now_cs)
    sum=$(md5sum "$f" 2>>/out/errors) ; rc=$?
    t1=$(now_cs)
    stall=$(( (t1 - t0) * 10 ))
    [ "$stall" -gt "$maxstall" ] && maxstall=$stall
    reads=$((reads + 1))
    read want < "/expected/$name.md5"
    if [ $rc -ne 0 ] || [ "${sum%% *}" != "$want" ]; then
      errors=$((errors + 1))
      echo "$(date +%T) ERROR round $round $name: rc=$rc got '${sum%% *}' want '$want'" >> /out/errors
      usleep 100000  # a broken mount fails fast: do not flood the log
    fi
    [ "$stall" -ge 500 ] && echo "$(date +%T) slow read: $name took ${stall} ms" >> /out/reader.log
  done
  echo "round=$round reads=$reads errors=$errors maxstall_ms=$maxstall time=$(date +%T)" > /out/status.tmp
  mv /out/status.tmp /out/status
done
echo "$(date +%T) reader: stopped after $round rounds" >> /out/reader.log
EOF
: > "$WORK/out/errors"
say "ctr run --snapshotter nydus: a container md5-checking every data file in a loop"
stack_run_container reader \
  --mount "type=bind,src=$WORK/out,dst=/out,options=rbind:rw" \
  --mount "type=bind,src=$WORK/expected,dst=/expected,options=rbind:ro" \
  -- /bin/busybox sh /expected/reader.sh

status_field() {  # name -> value from /out/status (0 before the first round)
  local v
  v=$({ tr ' ' '\n' < "$WORK/out/status"; } 2>/dev/null | sed -n "s/^$1=//p")
  echo "${v:-0}"
}
round_at_least() { [ "$(status_field round)" -ge "$1" ]; }
show_status() { say "  reader: $(cat "$WORK/out/status" 2>/dev/null || echo 'no round finished yet')"; }

# The RAFS mount of the daemon (a FUSE mount below our snapshotter root).
MNT=$(stack_fuse_mount)
[ -n "$MNT" ] || die "no nydusd FUSE mount below $WORK/nydus"
say "nydusd serves the image at $MNT (pid $(our_nydusd_pids | tr '\n' ' '))"

# Keep evicting the data files' page cache (fadvise DONTNEED through dd
# iflag=nocache), so the container's reads go to nydusd, not to the kernel.
(
  while [ ! -e "$WORK/out/stop" ]; do
    for f in "$MNT"/data/*.bin; do dd if="$f" iflag=nocache count=0 status=none 2>/dev/null; done
    sleep 0.2
  done
) &
EVICTOR_PID=$!

wait_for "two reader rounds" 90 round_at_least 2
show_status

STEP_FAILED=0

# expect_progress EVENT READS_BEFORE: lets the container read for $SETTLE s,
# then fails the step unless it made progress since the event.
expect_progress() {
  sleep "$SETTLE"
  show_status
  if [ "$(status_field reads)" -le "$2" ]; then
    say "  the reader made no progress since the $1"
    STEP_FAILED=1
  fi
}

# --- 4. kill -9 --------------------------------------------------------------
if [ "${DEMO_SKIP_KILL:-0}" != 1 ]; then
  pids=$(our_nydusd_pids | tr '\n' ' ')
  [ -n "$pids" ] || die "no nydusd to kill"
  before=$(status_field reads)
  say "kill -9 nydusd ($pids) while the container reads"
  # shellcheck disable=SC2086
  kill -KILL $pids || true
  expect_progress kill "$before"
  say "  nydusd now: pid $(our_nydusd_pids | tr '\n' ' ')"
fi

# --- 5. hot upgrade ----------------------------------------------------------
if [ "${DEMO_SKIP_UPGRADE:-0}" != 1 ]; then
  say "hot upgrade through system.sock: nydusctl upgrade --nydusd-path $WORK/bin/nydusd-v2"
  before=$(status_field reads)
  if system_api upgrade --nydusd-path "$WORK/bin/nydusd-v2" --version demo-v2; then
    expect_progress upgrade "$before"
  else
    say "  the upgrade failed"
    STEP_FAILED=1
  fi
fi

# --- 6. summary --------------------------------------------------------------
touch "$WORK/out/stop"
kill "$EVICTOR_PID" 2>/dev/null || true
EVICTOR_PID=""
# One more round finishes after the stop file; then the reader exits.
for ((i = 0; i < 300; i++)); do
  grep -q "reader: stopped" "$WORK/out/reader.log" 2>/dev/null && break
  sleep 0.1
done
ctr_ tasks kill -s SIGKILL reader >/dev/null 2>&1 || true

READS=$(status_field reads)
ERRORS=$(status_field errors)
STALL=$(status_field maxstall_ms)
echo
say "==================== summary ===================="
say "reads: $READS   errors: $ERRORS   longest stall: ${STALL} ms"
if [ -s "$WORK/out/errors" ]; then
  say "reader errors (first 10):"
  head -n 10 "$WORK/out/errors"
fi
grep "slow read" "$WORK/out/reader.log" 2>/dev/null | head -n 5 || true
# nydusd's own counters: the bytes it served prove the reads reached it.
api_sock=$(ls -t "$WORK"/nydus/socket/*/api*.sock 2>/dev/null | head -n 1 || true)
if [ -n "$api_sock" ]; then
  say "nydusd metrics (nydusctl --sock $api_sock metrics), current daemon only:"
  "$BIN/nydusctl" --sock "$api_sock" metrics | grep -E "^METRIC|data_read|fop_hits|fop_errors|nr_opens" || true
fi
say "GET /api/v1/daemons:"
system_api daemons || say "  (system API unavailable)"
system_api --json daemons 2>/dev/null || true

if [ "$ERRORS" = 0 ] && [ -s "$WORK/out/errors" ]; then ERRORS=1; fi  # a read error before any status line
if [ "$ERRORS" -gt 0 ]; then
  say "FAILED: the container saw $ERRORS error(s)"
  RESULT=1
elif [ "$STEP_FAILED" != 0 ]; then
  say "FAILED: a step did not work (see above)"
  RESULT=1
else
  say "OK: $READS reads, 0 errors, longest stall ${STALL} ms"
  RESULT=0
fi
