// The nydusd daemon controller: owns the VFS, the FUSE session and the state
// machine, and carries out the actions of state_machine.h. The control API
// (api.h) and main() drive it; neither touches the session or the VFS directly.
//
// Two modes share the state machine, the API and the supervisor protocol:
//   fuse       (default) a FUSE session serving the VFS of RAFS mounts; the
//              fd handed over is /dev/fuse.
//   singleton  `nydusd singleton --fscache DIR`: the kernel's EROFS reads the
//              images itself and asks for bytes through /dev/cachefiles
//              (nydusd/fscache); images are bound with /api/v2/blobs and the
//              fd handed over is /dev/cachefiles. Actions:
//                Mount     open /dev/cachefiles, dir/tag/bind ondemand, bind
//                          the --config blobs (no worker reads yet)
//                Start     (after a takeover: write `restore` first) workers
//                Stop      workers stop between requests (READs in hand are
//                          completed); Umount: the same, the device stays
//                          open until the process ends
//                Restore   receive the blob entries and the device fd, bind
//                          the entries, adopt the fd (no reads, no `restore`
//                          yet: in a hot upgrade the predecessor still serves
//                          until it exits; Start writes `restore`, after it
//                          has gone; fscache-facts.md §5, §7)
//              The state and the device fd are saved to the supervisor as
//              soon as the session is bound and after every blob change, so
//              the supervisor holds a reference from the start: the last one
//              closing would break every mount (facts §4.2).
//
// Every action runs under `mu_`, so API handlers, signal handling and the
// startup path are serialized; a failed action leaves the state unchanged.
//
// Exit paths:
//   exit_for_upgrade()  PUT /api/v1/daemon/exit: workers stop at a request
//                       boundary, state goes to STOPPED, nothing is unmounted.
//   shutdown()          SIGTERM/SIGINT: workers stop, the mount is removed.
// Both then wake main() through exit_fd(), which ends the process.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"
#include "common/unique_fd.h"
#include "nydusd/daemon/config.h"
#include "nydusd/daemon/error_events.h"
#include "nydusd/daemon/state_machine.h"
#include "nydusd/fscache/blob_entry.h"
#include "nydusd/fscache/registry.h"
#include "nydusd/fscache/service.h"
#include "nydusd/fuse/session.h"
#include "nydusd/fuse/vfs.h"

namespace nydus::daemon {

enum class FailoverPolicy { kNone, kResend };
Result<FailoverPolicy> parse_failover_policy(std::string_view text);

// One image to mount: from the command line or POST/PUT /api/v1/mount.
struct MountRequest {
  std::string mountpoint = "/";       // VFS path
  std::string fs_type = "rafs";
  std::string source;                 // bootstrap file
  std::string config_text;            // the JSON config (v1 or v2)
  std::vector<std::string> prefetch_files;
};

enum class DaemonMode { kFuse, kSingleton };

// `nydusd singleton --fscache DIR [--fscache-tag T] [--fscache-threads N]`.
struct FscacheOptions {
  std::string dir;                    // cachefiles `dir` (empty with --upgrade: from the saved state)
  std::string tag;
  unsigned threads = fscache::kDefaultThreads;
  std::vector<fscache::BlobEntry> preload;  // --config {"blobs":[...]}
};

// Test hook (fault injection): every fscache data READ first sleeps this
// many milliseconds, so a test can kill or upgrade a daemon while READs are
// in flight. Read once at startup; unset or 0 in production.
inline constexpr const char* kFscacheReadDelayEnv = "NYDUS_TEST_FSCACHE_READ_DELAY_MS";
// Test hook: while the file this names exists, every fscache OPEN waits the
// milliseconds written in it (read at each OPEN) before it is answered, so
// a test can kill a daemon while a mount(2) waits for it. Unset in
// production.
inline constexpr const char* kFscacheOpenDelayFileEnv = "NYDUS_TEST_FSCACHE_OPEN_DELAY_FILE";

struct DaemonOptions {
  DaemonMode mode = DaemonMode::kFuse;
  FscacheOptions fscache;             // mode singleton
  std::string mountpoint;             // host FUSE mountpoint (mode fuse)
  unsigned threads = fuse::kDefaultThreads;
  std::optional<std::string> id;
  std::optional<std::string> supervisor;
  bool upgrade = false;
  FailoverPolicy failover_policy = FailoverPolicy::kResend;
  std::optional<MountRequest> initial_mount;  // --bootstrap
};

// Why main() is asked to end the process.
enum class ExitReason { kNone, kExitForUpgrade, kShutdown, kConnectionLost };

class Daemon {
 public:
  static Result<std::unique_ptr<Daemon>> create(DaemonOptions options);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Normal start: Mount (kernel mount + initial image), then Start.
  Status start_serving();

  // Fires one event through the state machine and runs its action.
  Status fire(DaemonEvent event);
  DaemonState state() const;

  // The mount API. mount: POST (any state; the path must be free).
  // remount: PUT (the path must be mounted). umount: DELETE (invalidates the
  // kernel's cache of the image first, then removes it).
  Status mount(const MountRequest& request);
  Status remount(const MountRequest& request);
  Status umount(std::string_view mountpoint);

  bool singleton() const { return options_.mode == DaemonMode::kSingleton; }
  // /api/v2/blobs (singleton mode; kUnsupported in fuse mode). bind: PUT,
  // unbind: DELETE (?domain_id=D[&blob_id=B]); both save the state again
  // when a supervisor is configured (a failed save is logged, the change
  // stands). list: GET, the bound entries as given.
  Status bind_blob(const fscache::BlobEntry& entry);
  Status unbind_blob(std::string_view domain_id, std::optional<std::string_view> blob_id);
  Result<nlohmann::json> list_blobs(const std::optional<std::string>& domain_id) const;

  // PUT /api/v1/daemon/fuse/sendfd: sends the state and a dup of the FUSE fd
  // (singleton: of /dev/cachefiles) to --supervisor (takeover.h).
  // kFailedPrecondition without a supervisor, kNotReady before FUSE INIT
  // completed (singleton: before the session is bound); the daemon's state
  // never changes.
  Status save_state();

  Status exit_for_upgrade();
  Status shutdown();
  // Readable once the process should end; exit_reason() says why.
  int exit_fd() const { return exit_fd_.get(); }
  ExitReason exit_reason() const;

  // GET /api/v1/daemon (v2: backend_collection is null).
  nlohmann::json info(bool v2) const;
  // Metrics of the mount with VFS path `id`, or of the only mount when none
  // is given (kNotFound otherwise).
  Result<nlohmann::json> fs_metrics(const std::optional<std::string>& id) const;
  Result<nlohmann::json> backend_metrics(const std::optional<std::string>& id) const;
  Result<nlohmann::json> blobcache_metrics(const std::optional<std::string>& id) const;
  nlohmann::json inflight() const;
  // GET /api/v1/metrics/files and /pattern of one mount (see FsIoStats);
  // kFailedPrecondition when the mount's config has the switch off.
  Result<nlohmann::json> file_metrics(const std::optional<std::string>& id, bool latest) const;
  Result<nlohmann::json> access_patterns(const std::optional<std::string>& id) const;
  // GET/PUT /api/v1/config?id=<mountpoint>: the reference's hot-reloadable
  // keys. They configure registry backends; the localfs backend reads none
  // of them, so they are kept and reported, and unknown keys are refused.
  Result<nlohmann::json> hot_config(const std::string& id) const;
  Status set_hot_config(const std::string& id, const nlohmann::json& body);
  // Recent errors for GET /api/v1/daemon/events; main() attaches its sink.
  const std::shared_ptr<ErrorEvents>& error_events() const { return error_events_; }

  const DaemonOptions& options() const { return options_; }
  fuse::Vfs& vfs() { return *vfs_; }
  // The negotiated FUSE INIT, once known (the failover work saves it).
  std::optional<fuse::FuseInitState> fuse_init_state() const;

 private:
  explicit Daemon(DaemonOptions options);

  // What the daemon remembers of each mount besides the VFS (for the info
  // output and, later, the saved state).
  struct MountRecord {
    MountRequest request;
    FsConfig config;
    std::chrono::system_clock::time_point mounted_time;
  };

  Status fire_locked(DaemonEvent event);
  Status run_action_locked(DaemonAction action);
  Status action_mount_locked();
  // Takeover: receive the state and fd from the supervisor, rebuild the
  // mounts under their saved indexes, adopt the connection (synthetic INIT).
  // On failure nothing is kept: the VFS is empty again and the state INIT.
  Status action_restore_locked();
  // Start: after a takeover, FUSE_NOTIFY_RESEND first (policy resend, kernel
  // with HAS_RESEND), then the workers.
  Status action_start_locked();
  Status save_locked();
  Status save_singleton_locked();
  // Singleton counterparts of the actions.
  Status fscache_mount_locked();
  Status fscache_restore_locked();
  Status fscache_start_locked();
  // After a mount change: save again when a supervisor is configured and the
  // connection is initialized (a failure is logged, the change stands).
  void resave_after_mount_change_locked();
  Result<std::shared_ptr<fuse::RafsMount>> build_mount(const MountRequest& request,
                                                       FsConfig* config) const;
  Result<fuse::Vfs::MountEntry> find_entry(const std::optional<std::string>& id) const;
  void invalidate_locked(const fuse::Vfs::MountEntry& entry);
  void request_exit(ExitReason reason);

  DaemonOptions options_;
  std::unique_ptr<fuse::Vfs> vfs_;
  std::shared_ptr<ErrorEvents> error_events_ = std::make_shared<ErrorEvents>();
  std::map<std::string, std::map<std::string, std::string>> hot_config_;  // guarded by mu_
  std::unique_ptr<fuse::FuseSession> session_;
  UniqueFd exit_fd_;  // eventfd

  mutable std::mutex mu_;                          // serializes actions and mount changes
  std::atomic<DaemonState> state_{DaemonState::kInit};  // written under mu_, read lock-free
  std::map<std::string, MountRecord> records_;     // guarded by mu_; VFS path -> record
  std::atomic<ExitReason> exit_reason_{ExitReason::kNone};

  // Singleton mode. The registry lives as long as the daemon (the API binds
  // into it in any state); the service exists once the session is bound or
  // adopted. fscache_ is guarded by mu_.
  std::unique_ptr<fscache::BlobRegistry> registry_;
  std::unique_ptr<fscache::FscacheService> fscache_;
  std::string fscache_dir_;                        // guarded by mu_: the bound dir
  std::string fscache_tag_;                        // guarded by mu_
  unsigned fscache_threads_ = fscache::kDefaultThreads;  // guarded by mu_
  bool restore_pending_ = false;                   // guarded by mu_: taken over, not started

  // Failover (guarded by mu_ unless atomic).
  bool resend_pending_ = false;                    // taken over, not started yet
  std::atomic<uint64_t> takeovers_{0};
  std::atomic<int64_t> last_restore_duration_ms_{-1};
  std::atomic<uint64_t> saves_{0};
  std::atomic<uint64_t> resent_at_takeover_base_{0};
};

}  // namespace nydus::daemon
