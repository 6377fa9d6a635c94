// The nydusd daemon manager: starts, watches, re-adopts and stops the nydusd
// processes that serve RAFS instances (reference-snapshotter.md §4, §5, §10).
//
// A RAFS instance is one nydus image mounted for one meta-layer snapshot
// (the committed layer holding image/image.boot); its key is that
// snapshot's id. It lives from the first Prepare/View over the meta layer
// until the meta layer itself is released (which containerd can only do once
// no snapshot has it as parent), as in the reference.
//
//  * dedicated mode: one nydusd per instance, mounted by nydusd itself at
//    <root>/snapshots/<metaID>/mnt from --bootstrap; the daemon stops when
//    its instance is unmounted (refcount 1 -> 0).
//  * shared mode: one nydusd at <root>/mnt for all instances; each instance
//    is attached with POST /api/v1/mount?mountpoint=/<metaID> and appears
//    at <root>/mnt/<metaID>; DELETE detaches it. The shared daemon stays
//    while the snapshotter runs (the reference's "retain").
//  * fscache (fs_driver fscache, always shared): one `nydusd singleton
//    --fscache <cache>/fscache` for all instances. Each instance is bound
//    with PUT /api/v2/blobs under an fscache id of its own (a fresh xid kept
//    in the instance's annotations as "fscache_id") and mounted by the
//    snapshotter: mount -t erofs -o fsid=<fscache id> at
//    <root>/snapshots/<metaID>/mnt. The kernel then reads through
//    /dev/cachefiles; nydusd has no mountpoint. Removal: umount, then
//    DELETE /api/v2/blobs. The supervisor's copy of the /dev/cachefiles fd
//    keeps the mounts alive across a crash (failover: takeover + restore).
//    A restart re-mounts every instance under a fresh fscache id while it
//    holds the daemon's operation mutex; should the fresh daemon die during
//    such a mount(2), the supervisor lets go of its fd (the kernel then
//    fails the mount instead of keeping it pending for a recovery that
//    would wait for that mutex), and the recovery restarts it again.
//
// Persistence: every change is one SQLite transaction on the daemons and
// instances tables. A daemon record is written before its process is
// spawned (state STARTING), gets its pid right after the spawn and RUNNING
// once nydusd reports it; an instance record is written only after the
// instance serves. Stopping a daemon ends the process first and deletes the
// records after, so a crash in between leaves a record that recovery
// restarts or reclaims, never an orphan process nobody knows.
//
// Recovery (open): for each daemon record, Process::adopt(pid), check that
// /proc/<pid>/cmdline carries our --apisock (a recycled pid is never
// touched), and GET /api/v1/daemon until RUNNING: then the daemon is
// re-adopted as it runs (detached, watched again) and its instances counted.
// A daemon found dead is restarted: plain restart, not failover (the
// reference's "recovering" path): stale mount and socket cleared, same id,
// argv and config, shared instances re-POSTed in Seq order. Containers
// whose overlay sits on the dead FUSE mount keep failing (by nature of a
// restart); new ones get the new mount. Dedicated daemons without instances
// (an interrupted start) are reclaimed.
//
// Liveness: a LivenessMonitor watches every serving daemon's pidfd and a held
// API connection. A death is logged with the exit status and log tail,
// recorded (state DIED), and handed to the DaemonDeathHandler hook (the
// RecoveryController, recovery.h).
//
// Supervisor (options.supervisors): every daemon is started with
// --supervisor <root>/supervisor/<id>.sock --id <id>; the spawned pid is the
// socket's owner (the only process allowed to save), and a fresh save is
// requested after RUNNING (also after re-adoption) and after every shared
// mount change, so the store always holds the current state and FUSE fd.
//
// Threads and locks. Calls arrive from gRPC threads concurrently; the
// monitor thread delivers deaths. Lock order (never acquire leftwards):
//   instance key lock (per meta snapshot id)
//     -> shared_mu_ (creating the shared daemon)
//       -> Daemon::operation_mutex()
//         -> mu_ (the maps below) -> Daemon's internal lock -> store transaction
// mu_ and the Daemon's internal lock are never held across a blocking call.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/mount.h"
#include "common/result.h"
#include "snapshotter/config.h"
#include "snapshotter/daemon.h"
#include "snapshotter/daemon_client.h"
#include "snapshotter/daemon_command.h"
#include "snapshotter/daemon_launcher.h"
#include "snapshotter/liveness_monitor.h"
#include "snapshotter/store.h"

namespace nydus::snapshotter {

// How long a new or restarted nydusd may take to report RUNNING.
inline constexpr std::chrono::milliseconds kDaemonStartTimeout{20000};
// How long a re-adopted daemon may take to answer GET /api/v1/daemon.
inline constexpr std::chrono::milliseconds kAdoptProbeTimeout{5000};
// How long a daemon may take to exit after SIGTERM (unmounting included)
// before it gets SIGKILL, and then how long its exit may take.
inline constexpr std::chrono::milliseconds kDaemonStopTimeout{10000};
inline constexpr std::chrono::milliseconds kDaemonKillTimeout{5000};
// Bytes of a daemon's log quoted in errors and death reports.
inline constexpr size_t kLogTailBytes = 2048;

// What happens when a daemon dies while the snapshotter runs. Called on the
// monitor thread after the death was logged and recorded (state DIED), with
// no manager lock held. The recovery policies (restart, failover) implement
// this; they serialize with other operations through
// daemon.operation_mutex().
class DaemonDeathHandler {
 public:
  virtual ~DaemonDeathHandler() = default;
  virtual void on_daemon_death(Daemon& daemon) = 0;
  // A daemon started serving (first start or re-adoption), after its state
  // was saved to the supervisor. Called with the daemon's operation mutex
  // held: implementations only queue work (e.g. a hot standby).
  virtual void on_daemon_running(Daemon& /*daemon*/) {}
  // A daemon is being stopped for good (its instance went away). Called with
  // its operation mutex held, before the process is signalled.
  virtual void on_daemon_stopping(Daemon& /*daemon*/) {}
};

class SupervisorStore;

struct DaemonManagerOptions {
  std::string root;          // the snapshotter root (canonical)
  std::string nydusd_path;   // binary that new daemons run
  DaemonMode mode = DaemonMode::kDedicated;
  nlohmann::json config_template;  // daemon.nydusd_config, parsed
  std::string cache_dir;     // blob cache work_dir filled into every config
  std::string log_dir;       // nydusd logs go to <log_dir>/<id>/nydusd.log
  DaemonLaunchSettings launch;
  std::chrono::milliseconds start_timeout = kDaemonStartTimeout;
  // Every daemon gets a supervisor socket (--supervisor
  // <root>/supervisor/<id>.sock --id <id>); its state is saved after it
  // reaches RUNNING and after every mount change. main passes one whatever
  // the recover_policy, since hot upgrade needs the held state too. Not
  // owned; must outlive the manager. nullptr: no supervisor, no failover
  // and no upgrade.
  SupervisorStore* supervisors = nullptr;
  // fusedev, or fscache (then mode must be kShared).
  FsDriver fs_driver = FsDriver::kFusedev;
  // The cachefiles directory of fscache mode (on a disk file system:
  // cachefiles refuses tmpfs).
  std::string fscache_dir;
};

struct RafsMountRequest {
  std::string snapshot_id;  // the meta layer's snapshot id: the instance key
  std::string bootstrap;    // absolute path of its image.boot
  std::string image_id;     // for records and logs (image ref or layer name)
};

class DaemonManager {
 public:
  // Creates the directories, asks the binary for its version, recovers the
  // recorded daemons (see above) and starts the liveness monitor. Fails only
  // on what makes the manager unusable (database, binary); a daemon that
  // cannot be recovered is logged and left recorded (state DIED).
  static Result<std::unique_ptr<DaemonManager>> open(DaemonManagerOptions options, MetaStore& store,
                                                     DaemonLauncher& launcher, DaemonClientFactory& clients);
  // Stops watching. Daemons keep running (KillMode=process semantics).
  ~DaemonManager();
  DaemonManager(const DaemonManager&) = delete;
  DaemonManager& operator=(const DaemonManager&) = delete;

  // Serves the RAFS instance of `request.snapshot_id` (idempotent) and
  // returns its mountpoint. Starts a dedicated daemon, or attaches to the
  // shared one, and waits until it serves (events: pidfd, socket, state).
  // kNotReady when the instance's daemon is dead.
  Result<std::string> mount(const RafsMountRequest& request);
  // Tears the instance down: DELETE on the shared daemon, or stops the
  // dedicated one (SIGTERM, reap, mountpoint gone). false: no such instance.
  Result<bool> umount(const std::string& snapshot_id);

  bool has_instance(const std::string& snapshot_id) const;
  std::optional<InstanceRecord> instance(const std::string& snapshot_id) const;
  std::vector<InstanceRecord> instances() const;  // by seq
  std::shared_ptr<Daemon> daemon(const std::string& id) const;
  std::vector<std::shared_ptr<Daemon>> daemons() const;
  std::shared_ptr<Daemon> shared_daemon() const;

  // The recovery hook (nullptr: log only, the reference's policy "none").
  // Set before daemons can die, i.e. right after open().
  void set_death_handler(DaemonDeathHandler* handler);

  // Orderly shutdown. `cleanup`: unmount every instance and stop every
  // daemon (cleanup_on_close). Otherwise only an idle shared daemon stops;
  // every daemon serving an instance keeps running for the next snapshotter.
  void close(bool cleanup);

  // (options().nydusd_path is the configured binary; nydusd_path() is current.)
  const DaemonManagerOptions& options() const { return options_; }
  // The binary new daemons run and its version; an upgrade replaces both.
  // The upgrade is recorded in the store with the configured path of the
  // time, and open() takes its binary again while the configuration still
  // names that path (a changed nydusd_path wins; so does a binary that no
  // longer answers --version).
  std::string binary_version() const;
  std::string nydusd_path() const;
  void set_nydusd_binary(std::string path, std::string version);
  // `binary --version` through the launcher.
  Result<BinaryVersion> probe_binary(const std::string& binary) { return launcher_.version(binary); }
  SupervisorStore* supervisors() const { return options_.supervisors; }
  LivenessMonitor& monitor() { return *monitor_; }
  Result<std::vector<DaemonRecord>> daemon_records();
  std::unique_ptr<DaemonClient> make_client(const std::string& api_socket) { return clients_.make(api_socket); }

  // --- building blocks for the recovery policies (failover work) ---
  // Spawns the daemon's process from its record with the current settings
  // (same id, api socket, mountpoint, config) and records the new pid.
  Status spawn_daemon(Daemon& daemon, const std::optional<InstanceRecord>& dedicated_instance);
  // Waits until the daemon reports RUNNING, reacting to its pidfd.
  Status wait_until_running(Daemon& daemon);
  // Starts watching the daemon (pidfd + a held API connection).
  Status watch(Daemon& daemon);
  // Writes the daemon's in-memory record (state, pid, version) to the store.
  Status persist(Daemon& daemon);
  // Asks the daemon for a fresh save (PUT fuse/sendfd) and waits until the
  // supervisor stored it. No-op without a supervisor.
  Status request_save(Daemon& daemon);
  // Spawns `binary --upgrade` with the daemon's command line on
  // `api_socket` (a successor for failover, upgrade or hot standby). The
  // Process is not attached to the daemon. (No parent-death signal, not
  // even for a hot standby: the standby becomes the serving daemon and must
  // then survive a snapshotter crash.)
  Result<Process> spawn_successor(Daemon& daemon, const std::string& binary, const std::string& api_socket);
  // Plain restart (recover_policy=restart): stale mount and socket cleared,
  // fresh daemon, shared instances re-mounted. Caller holds the operation
  // mutex.
  Status restart_daemon(Daemon& daemon);

 private:
  DaemonManager(DaemonManagerOptions options, MetaStore& store, DaemonLauncher& launcher,
                DaemonClientFactory& clients);

  class KeyedLocks;

  Status recover();
  void restore_upgraded_binary();
  Status recover_daemon(const DaemonRecord& record, const std::vector<InstanceRecord>& instances);
  enum class Adoption { kLive, kDead };
  Adoption try_adopt(Daemon& daemon);
  Status restart(Daemon& daemon, const std::vector<InstanceRecord>& instances);
  void reclaim_leftover(const DaemonRecord& record);

  Result<std::string> mount_dedicated(const RafsMountRequest& request);
  Result<std::string> mount_shared(const RafsMountRequest& request);
  Result<std::string> mount_fscache(const RafsMountRequest& request);
  Status umount_fscache(Daemon& daemon, const InstanceRecord& inst);
  // Binds the instance on the (running) fscache daemon and has the
  // supervisor save it. The caller holds the operation mutex.
  Status bind_fscache(Daemon& daemon, const InstanceRecord& inst);
  // restart() of an fscache daemon: the old mounts died with the old
  // /dev/cachefiles fd; each instance gets a fresh fscache id, binding and
  // mount (a container may still hold the dead mount, whose fsid stays busy).
  // A daemon dying during a mount fails it (mount_while_watching); the
  // restart goes on and its watch() reports the death to the recovery.
  void rebind_fscache_instances(Daemon& daemon, const std::vector<InstanceRecord>& instances);
  // mount -t erofs -o fsid=... of the instance on a thread of its own while
  // the daemon's pidfd is watched. mount(2) waits for nydusd to answer the
  // kernel's OPEN and READs, and the caller holds the operation mutex, so
  // the recovery cannot step in: if the daemon dies meanwhile, the
  // supervisor's copy of the /dev/cachefiles fd would keep the requests
  // pending and mount(2) would wait forever. So on its death the supervisor
  // lets go of that fd: the kernel, with no holder left, fails the pending
  // requests and mount(2) returns an error.
  Result<MountGuard> mount_while_watching(Daemon& daemon, const InstanceRecord& inst);
  // The nydusd command line of a (re)start or, with launch.upgrade, of a
  // successor.
  DaemonCommand command_for(const DaemonRecord& record, const DaemonPaths& paths,
                            const DaemonLaunchSettings& launch, const std::string& bootstrap) const;
  Result<std::shared_ptr<Daemon>> ensure_shared_daemon();
  Result<std::shared_ptr<Daemon>> create_daemon(DaemonMode mode, const std::optional<RafsMountRequest>& request,
                                                 const std::string& mountpoint);
  void abort_start(Daemon& daemon);
  void stop_process(Daemon& daemon);
  void remove_daemon_files(const DaemonRecord& record, bool logs);
  std::string instance_config_path(const Daemon& daemon, const std::string& snapshot_id) const;
  std::string shared_mountpoint() const;

  void on_liveness_event(const LivenessEvent& event);
  void notify_running(Daemon& daemon);
  DaemonDeathHandler* handler() const;

  DaemonManagerOptions options_;
  MetaStore& store_;
  DaemonLauncher& launcher_;
  DaemonClientFactory& clients_;
  mutable std::mutex binary_mu_;
  std::string nydusd_path_;     // guarded by binary_mu_: options_.nydusd_path until an upgrade
  std::string binary_version_;  // guarded by binary_mu_
  std::unique_ptr<LivenessMonitor> monitor_;
  std::unique_ptr<KeyedLocks> instance_locks_;
  std::mutex shared_mu_;

  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Daemon>> daemons_;  // by id; guarded by mu_
  std::map<std::string, InstanceRecord> instances_;         // by snapshot id; guarded by mu_
  std::string shared_daemon_id_;                            // guarded by mu_
  DaemonDeathHandler* death_handler_ = nullptr;             // guarded by mu_
  bool closed_ = false;                                     // guarded by mu_
};

// The last `max_bytes` of a log file (at a line start when possible), for
// error messages. "" when unreadable.
std::string log_tail(const std::string& path, size_t max_bytes = kLogTailBytes);

// Waits until the daemon behind `client` reports RUNNING: reacts to the
// pidfd (exit -> error with the log tail at once), to the API socket
// appearing (inotify on its directory) and retries a refused or not yet
// RUNNING daemon with a short back-off (1 ms doubling to 50 ms); `timeout`
// only turns a hang into kTimeout. `pidfd` may be -1 (no process to watch).
Result<DaemonInfo> wait_for_running(int pidfd, DaemonClient& client, const std::string& log_file,
                                    std::chrono::milliseconds timeout);
// The same for any reported state (INIT for a successor started with
// --upgrade, READY after a takeover).
Result<DaemonInfo> wait_for_state(int pidfd, DaemonClient& client, const std::string& log_file,
                                  std::string_view state, std::chrono::milliseconds timeout);

}  // namespace nydus::snapshotter
