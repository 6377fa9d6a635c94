// The takeover state of nydusd: what a daemon saves to its supervisor
// (PUT /api/v1/daemon/fuse/sendfd) and what a successor restores
// (PUT /api/v1/daemon/fuse/takeover). Pure functions, no I/O: the daemon
// (daemon.cc) does the socket work with common/fd_passing.h.
//
// Wire framing (reference-nydusd.md §5.1, fixed by the reference snapshotter):
// nydusd connects to the --supervisor unix socket; a save sends the
// serialized nydus.state.v1.DaemonState (proto/state.proto) as the message
// bytes with exactly ONE SCM_RIGHTS fd, a dup of the /dev/fuse connection fd;
// a takeover connects and receives the same. End of message = connection
// close. No header, no ack: the state validates itself (format_major,
// required fields) because the framing cannot tell a truncated message from a
// complete one.
//
// Versioning: format_major is bumped only for a change an older reader must
// refuse; a reader refuses a major above kStateFormatMajor with a clear
// error and leaves its daemon in INIT (the old daemon or the supervisor's fd
// keeps the mount alive, so the takeover can be retried with another binary).
// Fields are only ever added (state.proto), so old and new binaries read
// each other's states; unknown fields are skipped.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"
#include "nydusd/fuse/init_state.h"

namespace nydus::daemon {

inline constexpr uint32_t kStateFormatMajor = 1;
// Minor 1: mount_count is written last and checked (truncation detection).
inline constexpr uint32_t kStateFormatMinor = 1;

// Bounds of the supervisor exchange. A silent supervisor fails the save or
// the takeover with kTimeout; the daemon's state does not change.
inline constexpr std::chrono::milliseconds kSupervisorConnectTimeout{5000};
inline constexpr std::chrono::milliseconds kSupervisorSendTimeout{10000};
inline constexpr std::chrono::milliseconds kSupervisorReceiveTimeout{10000};
// The largest state a takeover accepts (the reference caps each config at
// 16 KiB and a daemon at 255 mounts, so real states are far smaller).
inline constexpr size_t kMaxStateBytes = 16u << 20;

// One mount of the saved state.
struct SavedMount {
  uint8_t index = 0;             // VFS index 1..255 (node ids = index << 56 | nid)
  std::string mountpoint;        // VFS path
  std::string fs_type = "rafs";
  std::string bootstrap;
  std::string config;            // full JSON config text
  std::vector<std::string> prefetch_files;
};

// One fscache blob entry of the saved state (a bound bootstrap; its data
// blobs follow from its blob table).
struct SavedBlob {
  std::string domain_id;         // as given (may be empty)
  std::string blob_id;
  std::string json;              // the whole BlobCacheEntry as JSON
};

// fscache (singleton) mode: the cachefiles session a successor adopts.
struct SavedFscache {
  std::string cache_dir;         // the bound --fscache dir (canonical)
  std::string tag;
  uint32_t threads = 0;
  std::vector<SavedBlob> blobs;  // bind order
};

// The daemon state in our own types (the protobuf stays inside takeover.cc).
// mode "fuse": `fuse`, `mounts`, the pseudo tree and the FUSE fields are set
// and the fd is /dev/fuse; mode "singleton": only `fscache` is, and the fd is
// /dev/cachefiles.
struct SavedState {
  std::string mode = "fuse";     // "fuse" or "singleton"
  SavedFscache fscache;          // mode singleton
  uint32_t format_major = kStateFormatMajor;
  uint32_t format_minor = kStateFormatMinor;
  std::string writer_version;
  std::string daemon_id;
  std::string mountpoint;        // host FUSE mountpoint
  fuse::FuseInitState fuse;
  std::vector<SavedMount> mounts;
  uint32_t next_mount_index = 1;
  std::string failover_policy;   // "resend" or "none"
  uint32_t thread_num = 0;
  uint64_t fuse_conn_id = 0;
  struct PseudoDir {
    uint64_t ino = 0;
    uint64_t parent = 0;
    std::string name;
  };
  std::vector<PseudoDir> pseudo_dirs;  // the VFS pseudo tree, ino order
};

// Serializes `state` (format_major/minor as given).
std::vector<uint8_t> encode_state(const SavedState& state);

// Parses and validates a received state. Errors (all kCorrupt unless said):
// empty or unparsable bytes (truncated/corrupted), format_major 0 or missing,
// kUnsupported for a format_major above ours or an unknown mode; mode fuse:
// no FUSE negotiation (protocol major 7 and minor, max_write); mode
// singleton: no fscache section, a blob without id or JSON, or mounts; a mount with index 0, a repeated index or
// mountpoint, or an empty bootstrap; for minor >= 1 a missing or wrong
// mount_count (the message was cut at a field boundary).
Result<SavedState> decode_state(std::span<const uint8_t> bytes);

}  // namespace nydus::daemon
