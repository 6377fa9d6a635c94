// nydusd command lines, as the reference snapshotter builds them
// (reference-snapshotter.md §4.1), and the daemon ids they carry.
//
// The argv is emitted in the reference's fixed field order, skipping empty
// fields, each value a separate element (`--flag value`, never
// `--flag=value`):
//
//   <mode> [--fscache D] [--fscache-threads N] [--upgrade] [--thread-num N]
//   [--id ID] [--config F] [--bootstrap F] [--mountpoint M] [--apisock S]
//   [--log-level L] [--log-rotation-size MB] [--supervisor S] [--log-file F]
//   [--prefetch-files P] [--backend-source URL] [--failover-policy P]
//
// Pure functions: no file system, no processes. Unit-tested with golden
// strings (tests/unit/snapshotter/daemon_command_test.cc).
#pragma once

#include <string>
#include <vector>

#include "snapshotter/config.h"

namespace nydus::snapshotter {

// One nydusd invocation. Empty strings and zero numbers are left out.
struct DaemonCommand {
  std::string mode = "fuse";  // "fuse" or "singleton"
  std::string fscache_dir;
  int fscache_threads = 0;
  bool upgrade = false;
  int thread_num = 0;
  std::string id;
  std::string config;
  std::string bootstrap;
  std::string mountpoint;
  std::string apisock;
  std::string log_level;
  int log_rotation_size = 0;
  std::string supervisor;
  std::string log_file;
  std::string prefetch_files;
  std::string backend_source;
  std::string failover_policy;
};

// The arguments after the program name.
std::vector<std::string> daemon_args(const DaemonCommand& command);

// Everything a daemon's command line is derived from besides its record.
struct DaemonLaunchSettings {
  int thread_num = 0;            // daemon.threads_number (0: nydusd's default)
  std::string log_level = "info";  // log.level
  bool log_to_stdout = false;    // log.log_to_stdout: no --log-file
  FailoverPolicy failover_policy = FailoverPolicy::kResend;
  // Only with recover_policy=failover: the supervisor socket; the reference
  // passes --id together with it (nydusd requires --id and --supervisor
  // together).
  std::string supervisor;
  bool upgrade = false;
};

// Paths of one daemon below the snapshotter root (reference §2 layout).
struct DaemonPaths {
  std::string config_dir;   // <root>/config/<id>
  std::string config_file;  // <root>/config/<id>/config.json
  std::string socket_dir;   // <root>/socket/<id>
  std::string api_socket;   // <root>/socket/<id>/api.sock
  std::string log_dir;      // <logdir>/<id>
  std::string log_file;     // <logdir>/<id>/nydusd.log
};
DaemonPaths daemon_paths(const std::string& root, const std::string& log_dir, const std::string& id);

// fusedev dedicated: one nydusd serving `bootstrap` at `mountpoint`
// (<root>/snapshots/<metaID>/mnt), configured by paths.config_file.
DaemonCommand dedicated_fuse_command(const DaemonPaths& paths, const std::string& id,
                                     const std::string& bootstrap, const std::string& mountpoint,
                                     const DaemonLaunchSettings& settings);

// fusedev shared: one nydusd with an empty FUSE file system at `mountpoint`
// (<root>/mnt); images are attached later with POST /api/v1/mount. No
// --config, no --bootstrap.
DaemonCommand shared_fuse_command(const DaemonPaths& paths, const std::string& id,
                                  const std::string& mountpoint, const DaemonLaunchSettings& settings);

// fscache: one `nydusd singleton` serving the kernel's EROFS through
// /dev/cachefiles with `fscache_dir` as the cache; images are bound later
// with PUT /api/v2/blobs. No mountpoint, no --failover-policy (the kernel's
// `restore` replaces the FUSE resend). A successor (settings.upgrade) gets no
// --fscache: the directory comes with the saved state.
DaemonCommand fscache_singleton_command(const DaemonPaths& paths, const std::string& id,
                                        const std::string& fscache_dir, const DaemonLaunchSettings& settings);

// A new daemon id: a 20-character xid (12 bytes: seconds, 5 random bytes,
// a 3-byte counter; base32hex, lower case), as the reference's rs/xid.
// Unique within this process and, with overwhelming probability, across
// processes. Sorts by creation second.
std::string new_daemon_id();

}  // namespace nydus::snapshotter
