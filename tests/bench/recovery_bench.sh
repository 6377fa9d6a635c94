#!/usr/bin/env bash
# recovery_bench: how visible are nydusd crashes and hot upgrades to readers,
# through the real snapshotter? Not a test. One command, as root:
#
#   tests/bench/recovery_bench.sh [BUILD_DIR] [CYCLES]      (defaults: build/, 50)
#
# Needs BUILD_DIR/bin/{nydusd,nydus-image,containerd-nydus-grpc,nydusctl,
# recovery_reader}, containerd, ctr, runc, curl, jq, /dev/fuse.
#
# One image (RB_FILES x RB_FILE_MIB MiB, lz4_block, contents a pure function
# of (file, offset): recovery_reader verifies every byte), packaged as an OCI
# archive whose layer holds the RAFS bootstrap (blobs in a localfs backend),
# as tests/demo/run-demo.sh does; it shares tests/demo/stack_lib.sh with it.
# Then, per mode, a fresh stack (containerd-nydus-grpc + private containerd,
# empty blob cache), the first RB_WARM_FILES files read once through the
# mount (cached in nydusd's blob cache; the rest is not), and the load:
# RB_READERS readers (recovery_reader run), each open + pread + close of a
# random 4 KiB or 1 MiB (50/50), O_DIRECT when the mount takes it; RB_COLD_PERCENT %
# of the reads go to a chunk no read has touched yet (a blob cache miss).
# RB_BASELINE_SECS of load with no event (the readers' normal latency), then
# the cycles:
#
#   failover  recover_policy = failover, hot_standby = false: kill -9 of the
#             serving nydusd (pid from GET /api/v1/daemons)
#   standby   the same with hot_standby = true (each kill waits until the
#             snapshotter's standby is up and in INIT; a kill without one is
#             counted as "no standby")
#   restart   recover_policy = restart, RB_RESTART_CYCLES (5) cycles
#   upgrade   recover_policy = failover; PUT /api/v1/nydusd/upgrade through
#             system.sock (nydusctl --system SOCK upgrade), alternating two
#             copies of nydusd under new names
#
# Readers: in failover, standby and upgrade, inside a containerd container
# (ctr run with the nydus snapshotter; the rootfs is overlayfs over the
# nydusd FUSE mount; recovery_reader is a static binary bind-mounted at /rb).
# In restart, on the host, on the nydusd mount of a snapshot that containerd
# prepared (ctr snapshots prepare): a restart unmounts and mounts again, and a
# container's overlayfs stays pinned to the dead mount for good, so it could
# never recover; host readers re-open the path at each read and see the new
# mount once it is there.
#
# A cycle's window runs from the kill (or the upgrade request) to the moment
# GET /api/v1/daemons shows a new pid RUNNING (the upgrade: the request's
# answer). A read overlaps a cycle when it ran at any time within the
# window; the cycle's stall is the longest such read. Printed per mode:
# errors (all reads and those overlapping a window), stall p50/p99/max over
# cycles, p99 of all overlapping reads, the readers' baseline p50/p99 in the
# same run, the ratio stall/baseline p99, the window, and the snapshotter's
# own numbers (its per-cycle log "failover done in X ms" / "upgrade ... in X
# ms", and GET /api/v1/daemons: recovery_count, last_failover_ms,
# last_upgrade_ms). Then ratios standby/failover and failover/restart.
#
# Knobs (environment): RB_MODES ("failover standby restart upgrade"),
# RB_READERS (8), RB_FILES (64), RB_FILE_MIB (16), RB_WARM_FILES (16),
# RB_COLD_PERCENT (2), RB_BASELINE_SECS (5), RB_SETTLE_OPS (200: reads after a
# cycle before the next), RB_RESTART_CYCLES (5), RB_KEEP=1 (keep the temp dir).
#
# Exit status: 0 when every mode ran and failover, standby and upgrade saw no
# error; 1 otherwise; 2 when a prerequisite is missing. Everything started is
# stopped by pid, every mount below the temp dir is aborted and detached.
set -euo pipefail

BUILD_DIR=$(realpath "${1:-build}")
CYCLES=${2:-50}
BIN="$BUILD_DIR/bin"
MODES=${RB_MODES:-failover standby restart upgrade}
READERS=${RB_READERS:-8}
FILES=${RB_FILES:-64}
FILE_MIB=${RB_FILE_MIB:-16}
WARM_FILES=${RB_WARM_FILES:-16}
COLD_PERCENT=${RB_COLD_PERCENT:-2}
BASELINE_SECS=${RB_BASELINE_SECS:-5}
SETTLE_OPS=${RB_SETTLE_OPS:-200}
RESTART_CYCLES=${RB_RESTART_CYCLES:-5}
IMAGE=docker.io/library/nydus-recovery-bench:latest
NS=nydus-rb-$$
STACK_TAG=bench
# The snapshotter's crash-loop guard would mark a daemon killed 50 times in a
# row FAILED, and its back-off would add waits the bench does not measure:
# both are set out of the way (and printed).
CRASH_LOOP_TOML=("crash_loop_limit = 1000" "crash_loop_window_secs = 1" "recover_backoff_ms = 0"
  "recover_backoff_max_ms = 0")

HERE=$(dirname "$(realpath "$0")")
# shellcheck source=tests/demo/stack_lib.sh
source "$HERE/../demo/stack_lib.sh"
READER="$BIN/recovery_reader"

# --- prerequisites -----------------------------------------------------------
missing=()
[ "$(id -u)" = 0 ] || missing+=("root")
[ -c /dev/fuse ] || missing+=("/dev/fuse")
for tool in /usr/bin/containerd /usr/bin/ctr; do [ -x "$tool" ] || missing+=("$tool"); done
for tool in runc curl jq; do command -v "$tool" >/dev/null || missing+=("$tool"); done
for b in nydusd nydus-image containerd-nydus-grpc nydusctl recovery_reader; do
  [ -x "$BIN/$b" ] || missing+=("$BIN/$b")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "recovery_bench: missing: ${missing[*]}" >&2
  exit 2
fi

WORK=$(mktemp -d /tmp/nydus-rb.XXXXXX)
RESULT=0
STACK=""
bench_reader_pid=""  # the host readers of the restart mode
cleanup() {
  local rc=$?
  trap - EXIT
  trap '' INT TERM
  set +e
  [ -n "${STACK:-}" ] && touch "$STACK/out/r.stop" 2>/dev/null
  [ -n "$bench_reader_pid" ] && kill -KILL "$bench_reader_pid" 2>/dev/null
  stack_finish "$rc" "$RESULT" "${RB_KEEP:-0}"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM

now() { "$READER" now; }
ms_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) / 1e6 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "-"; else printf "%.2fx", a / b }'; }
reader_ops() { local o; { read -r o _ < "$STACK/out/r.progress"; } 2>/dev/null || o=0; echo "${o:-0}"; }

# The serving daemon: "pid state api_socket" of the first daemon in GET /api/v1/daemons.
serving_daemon() {
  curl -s --max-time 5 --unix-socket "$STACK/system.sock" http://localhost/api/v1/daemons |
    jq -r '.[0] | "\(.pid) \(.state) \(.api_socket)"' 2>/dev/null
}

# True when the snapshotter's hot standby for the daemon whose API socket is
# $1 is up and waiting in INIT (recovery.cc writes <api dir>/standby.pid).
standby_ready() {
  local f pid api
  f=${1%/*}/standby.pid
  [ -s "$f" ] || return 1
  read -r pid api < "$f" || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  curl -s --max-time 1 --unix-socket "$api" http://localhost/api/v1/daemon 2>/dev/null | grep -q '"INIT"'
}

# Microseconds on the wall clock, without a fork (bash 5).
now_us() { local t=${EPOCHREALTIME/./}; echo "$t"; }

fuse_mounted() { [ -n "$(stack_fuse_mount)" ]; }

wait_ops() {  # n more reads, within 30 s
  local target=$(( $(reader_ops) + $1 )) deadline=$(( $(now_us) + 30000000 ))
  while [ "$(now_us)" -lt "$deadline" ]; do
    [ "$(reader_ops)" -ge "$target" ] && return 0
    sleep 0.01
  done
  return 1
}

# --- the image ---------------------------------------------------------------
mkdir -p "$WORK"/{src/data,bin,rb}
say "generating $FILES x $FILE_MIB MiB"
"$READER" gen "$WORK/src/data" "$FILES" "$FILE_MIB"
stack_build_image "$WORK/src" -c lz4_block
rm -rf "$WORK/src"
cp "$READER" "$WORK/rb/recovery_reader"
# The "new releases" for the upgrades: the same build under two other names.
cp "$BIN/nydusd" "$WORK/bin/nydusd-v2"
cp "$BIN/nydusd" "$WORK/bin/nydusd-v3"

# --- one mode ------------------------------------------------------------------
# run_mode NAME POLICY CYCLES [extra [daemon] toml lines]
run_mode() {
  local name=$1 policy=$2 cycles=$3
  shift 3
  STACK=$WORK/$name
  local res="$WORK/result-$name" where=container mnt
  if [ "$name" = restart ]; then where=host; fi
  : > "$res"
  mkdir -p "$STACK/out"
  say "=== mode $name: recover_policy=$policy $* ($cycles cycles, readers in a $where)"
  stack_start "$policy" "$@" "${CRASH_LOOP_TOML[@]}"

  local reader_args=(--readers "$READERS" --files "$FILES" --file-mib "$FILE_MIB" --warm-files "$WARM_FILES"
    --cold-percent "$COLD_PERCENT")
  if [ "$where" = container ]; then
    stack_run_container "rb-$name" \
      --mount "type=bind,src=$WORK/rb,dst=/rb,options=rbind:ro" \
      --mount "type=bind,src=$STACK/out,dst=/out,options=rbind:rw" \
      -- /rb/recovery_reader run /data /out/r "${reader_args[@]}"
    wait_for "the nydusd mount" 30 fuse_mounted
    mnt=$(stack_fuse_mount)
  else
    local parent
    parent=$(ctr_ snapshots --snapshotter nydus ls | awk '$NF == "Committed" { print $1; exit }')
    [ -n "$parent" ] || die "no committed nydus snapshot"
    ctr_ snapshots --snapshotter nydus prepare rb-host "$parent" > "$STACK/prepare.log" 2>&1 ||
      { cat "$STACK/prepare.log"; die "ctr snapshots prepare failed"; }
    wait_for "the nydusd mount" 30 fuse_mounted
    mnt=$(stack_fuse_mount)
    "$READER" run "$mnt/data" "$STACK/out/r" "${reader_args[@]}" > "$STACK/out/reader.log" 2>&1 &
    bench_reader_pid=$!
  fi
  say "  nydusd mount $mnt; warming $WARM_FILES files into the blob cache"
  "$READER" warm "$mnt/data" "$WARM_FILES"
  touch "$STACK/out/r.go"
  wait_ops 100 || die "the readers made no progress (see $STACK/out)"
  local base_from base_to
  base_from=$(now)
  sleep "$BASELINE_SECS"
  base_to=$(now)

  local c pid state api t0 t1 no_standby=0 failed=0 v=2 ok deadline
  : > "$STACK/events"
  for ((c = 1; c <= cycles; c++)); do
    read -r pid state api < <(serving_daemon) || true
    if [ -z "${pid:-}" ] || [ "$state" != RUNNING ]; then
      say "  cycle $c: no RUNNING daemon (pid '${pid:-}' state '${state:-}')"
      failed=1
      break
    fi
    if [ "$name" = standby ]; then
      ok=0
      # 10 s for a standby to come up; 2 s once three kills found none.
      deadline=$(( $(now_us) + (no_standby < 3 ? 10000000 : 2000000) ))
      while [ "$(now_us)" -lt "$deadline" ]; do standby_ready "$api" && { ok=1; break; }; sleep 0.01; done
      if [ "$ok" = 0 ]; then
        no_standby=$((no_standby + 1))
        if [ "$no_standby" -le 3 ]; then
          say "  cycle $c: no hot standby ready (${api%/*}/standby.pid: $(cat "${api%/*}/standby.pid" 2>&1))"
        fi
        if [ "$no_standby" = 3 ]; then say "  (further cycles without a ready standby are only counted)"; fi
      fi
    fi
    if [ "$name" = upgrade ]; then
      t0=$(now)
      if ! system_api upgrade --nydusd-path "$WORK/bin/nydusd-v$v" --version "rb-v$v-$c" > "$STACK/upgrade-$c.log" 2>&1; then
        say "  cycle $c: upgrade failed: $(tail -n 3 "$STACK/upgrade-$c.log" | tr '\n' ' ')"
        failed=1
        break
      fi
      t1=$(now)
      v=$((5 - v))
    else
      t0=$("$READER" kill "$pid")
      if ! read -r t1 _ < <("$READER" wait-running "$STACK/system.sock" "$pid" 30000); then
        say "  cycle $c: no new RUNNING daemon within 30 s after kill -9 of pid $pid"
        failed=1
        break
      fi
    fi
    echo "$t0 $t1" >> "$STACK/events"
    if ! wait_ops "$SETTLE_OPS"; then
      say "  cycle $c: the readers made no progress within 30 s after the cycle"
      failed=1
      break
    fi
    if ((c % 10 == 0)); then say "  $c cycles, last window $(ms_between "$t0" "$t1") ms, reads $(reader_ops)"; fi
  done
  local done_cycles=$((c - 1))
  [ "$failed" = 1 ] && done_cycles=$(wc -l < "$STACK/events")

  touch "$STACK/out/r.stop"
  wait_for "the readers' samples" 120 test -s "$STACK/out/r.summary"
  [ -n "${bench_reader_pid:-}" ] && { wait "$bench_reader_pid" 2>/dev/null || true; bench_reader_pid=""; }
  curl -s --max-time 5 --unix-socket "$STACK/system.sock" http://localhost/api/v1/daemons > "$STACK/daemons.json" || true

  # Results: key=value lines.
  {
    echo "name=$name cycles=$done_cycles failed=$failed no_standby=$no_standby where=$where" | tr ' ' '\n'
    tr ' ' '\n' < "$STACK/out/r.summary"
    "$READER" analyze "$STACK/out/r.samples" "$STACK/events" "$base_from" "$base_to" | tr ' ' '\n'
    jq -r '.[0] | "recovery_count=\(.recovery_count)\nlast_failover_ms=\(.last_failover_ms)\nlast_upgrade_ms=\(.last_upgrade_ms)"' \
      "$STACK/daemons.json" 2>/dev/null
    # The snapshotter's per-cycle durations, from its log.
    grep -ohE "(failover|restart) done in [0-9.]+ ms|upgrade: nydusd [^ ]+ pid [0-9]+ -> [0-9]+ in [0-9.]+ ms" \
      "$STACK/snapshotter.out" "$STACK"/nydus/logs/*.log 2>/dev/null |
      grep -oE "[0-9.]+ ms$" | awk '{ print $1 }' | sort -n |
      awk '{ v[NR] = $1 } END { if (NR) printf "snap_n=%d\nsnap_p50_ms=%s\nsnap_max_ms=%s\n", NR, v[int((NR + 1) / 2)], v[NR]; else print "snap_n=0" }'
  } | grep . >> "$res"
  if [ -s "$STACK/out/r.errors" ]; then
    say "  reader errors (first 5 of $(wc -l < "$STACK/out/r.errors") logged):"
    head -n 5 "$STACK/out/r.errors" | sed 's/^/    /'
  fi
  if [ "$failed" = 1 ]; then
    say "  mode $name stopped early; the snapshotter's last lines:"
    cat "$STACK/snapshotter.out" "$STACK"/nydus/logs/*.log 2>/dev/null | tail -n 15 | sed 's/^/    /'
  fi
  stack_teardown
  cat "$STACK/snapshotter.out" "$STACK"/nydus/logs/*.log > "$WORK/snapshotter-$name.log" 2>/dev/null || true
  rm -rf "$STACK"
  STACK=""
}

get() {  # mode key
  sed -n "s/^$2=//p" "$WORK/result-$1" 2>/dev/null | head -n 1
}
ms() { awk -v u="$1" 'BEGIN { if (u == "") print "-"; else printf "%.1f", u / 1000 }'; }

say "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for m in $MODES; do
  case $m in
    failover) run_mode failover failover "$CYCLES" "hot_standby = false" ;;
    standby) run_mode standby failover "$CYCLES" "hot_standby = true" ;;
    restart) run_mode restart restart "$((RESTART_CYCLES < CYCLES ? RESTART_CYCLES : CYCLES))" ;;
    upgrade) run_mode upgrade failover "$CYCLES" "hot_standby = false" ;;
    *) die "unknown mode $m" ;;
  esac
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# --- the table -------------------------------------------------------------------
echo
say "recovery_bench: $READERS readers, $FILES x $FILE_MIB MiB lz4_block, $WARM_FILES files cached, ${COLD_PERCENT}% uncached reads, 4 KiB / 1 MiB 50/50, every byte verified"
say "load average after: $LOAD_AFTER ($(nproc) CPUs); snapshotter: ${CRASH_LOOP_TOML[*]}"
printf '\n%-9s %-9s %6s %8s %7s %7s %8s %9s %9s %9s %8s %8s %8s %9s %10s %8s %8s %6s %8s\n' \
  mode readers cycles reads errors err_in err_span stall_p50 stall_p99 stall_max ovl_p99 base_p50 base_p99 stall/p99 window_p50 snap_p50 snap_max recov last_ms
for m in $MODES; do
  [ -s "$WORK/result-$m" ] || { printf '%-9s (no result)\n' "$m"; continue; }
  last=$(get "$m" last_failover_ms)
  [ "$m" = upgrade ] && last=$(get "$m" last_upgrade_ms)
  last=$(awk -v v="$last" 'BEGIN { if (v == "" || v == "null") print "-"; else printf "%.1f", v }')
  printf '%-9s %-9s %6s %8s %7s %7s %8s %9s %9s %9s %8s %8s %8s %9s %10s %8s %8s %6s %8s\n' \
    "$m" "$(get "$m" where)" "$(get "$m" cycles)" "$(get "$m" ops)" "$(get "$m" errors)" "$(get "$m" errors_in_cycles)" \
    "$(ms "$(get "$m" errspan_max_us)")" \
    "$(ms "$(get "$m" stall_p50_us)")" "$(ms "$(get "$m" stall_p99_us)")" "$(ms "$(get "$m" stall_max_us)")" \
    "$(ms "$(get "$m" overlap_p99_us)")" "$(ms "$(get "$m" base_p50_us)")" "$(ms "$(get "$m" base_p99_us)")" \
    "$(ratio "$(get "$m" stall_p50_us)" "$(get "$m" base_p99_us)")" "$(ms "$(get "$m" window_p50_us)")" \
    "$(get "$m" snap_p50_ms)" "$(get "$m" snap_max_ms)" "$(get "$m" recovery_count)" "$last"
done
echo "(times in ms. err_in: failed reads overlapping a cycle. err_span: the longest outage readers saw, event ->"
echo " end of the last failed read before the next event. stall: the longest read overlapping a cycle, p50/p99/max"
echo " over cycles. ovl_p99: p99 of every read overlapping a cycle. base: the same readers before the first cycle."
echo " stall/p99 = stall_p50 / base_p99. window: kill (upgrade request) -> new pid RUNNING seen on system.sock"
echo " (upgrade: the request answered). snap: the snapshotter's own per-cycle duration from its log. recov, last_ms:"
echo " GET /api/v1/daemons recovery_count and last_failover_ms (last_upgrade_ms for upgrade).)"
echo
if [ -s "$WORK/result-standby" ] && [ -s "$WORK/result-failover" ]; then
  echo "hot standby vs cold failover: stall p50 $(ratio "$(get standby stall_p50_us)" "$(get failover stall_p50_us)"), stall max $(ratio "$(get standby stall_max_us)" "$(get failover stall_max_us)"), snapshotter p50 $(ratio "$(get standby snap_p50_ms)" "$(get failover snap_p50_ms)"); kills without a ready standby: $(get standby no_standby)"
fi
if [ -s "$WORK/result-restart" ] && [ -s "$WORK/result-failover" ]; then
  echo "failover vs restart: errors $(get failover errors) vs $(get restart errors) in $(get failover cycles) vs $(get restart cycles) cycles; errors per cycle $(awk -v a="$(get failover errors)" -v n="$(get failover cycles)" 'BEGIN { printf "%.1f", n ? a / n : 0 }') vs $(awk -v a="$(get restart errors)" -v n="$(get restart cycles)" 'BEGIN { printf "%.1f", n ? a / n : 0 }'); window p50 $(ratio "$(get failover window_p50_us)" "$(get restart window_p50_us)"), snapshotter p50 $(ratio "$(get failover snap_p50_ms)" "$(get restart snap_p50_ms)")"
fi
for m in $MODES; do
  [ -s "$WORK/result-$m" ] || continue
  echo "$m: baseline by kind (p50/p99 ms): warm 4K $(ms "$(get "$m" base_warm4k_p50_us)")/$(ms "$(get "$m" base_warm4k_p99_us)"), warm 1M $(ms "$(get "$m" base_warm1m_p50_us)")/$(ms "$(get "$m" base_warm1m_p99_us)"), cold 4K $(ms "$(get "$m" base_cold4k_p50_us)")/$(ms "$(get "$m" base_cold4k_p99_us)"), cold 1M $(ms "$(get "$m" base_cold1m_p50_us)")/$(ms "$(get "$m" base_cold1m_p99_us)"); uncached chunks read $(get "$m" cold_served)/$(get "$m" cold_total); O_DIRECT $(get "$m" o_direct); reads overlapping a cycle: $(get "$m" overlap_n), p50/p99 $(ms "$(get "$m" overlap_p50_us)")/$(ms "$(get "$m" overlap_p99_us)") ms; window max $(ms "$(get "$m" window_max_us)") ms"
done

for m in $MODES; do
  [ -s "$WORK/result-$m" ] || { RESULT=1; continue; }
  [ "$(get "$m" failed)" = 0 ] || RESULT=1
  if [ "$m" != restart ] && [ "$(get "$m" errors)" != 0 ]; then RESULT=1; fi
done
if [ "$RESULT" = 0 ]; then say "OK"; else say "FAILED: see above (RB_KEEP=1 keeps $WORK)"; fi
