// Recovery of crashed nydusd daemons and their hot upgrade: the controller
// half of "a nydusd crash or upgrade is invisible to containers".
//
// The RecoveryController is the DaemonManager's DaemonDeathHandler and the
// system API's SystemBackend. It owns one worker thread; a death only queues
// a job (the liveness monitor thread never blocks), and the worker starts on
// it within milliseconds of the pidfd firing.
//
// Policies (daemon.recover_policy):
//   none      the death is recorded (state DIED); the supervisor lets go of
//             the FUSE fd, so the kernel aborts the connection and readers
//             get ENOTCONN, as with the reference. The mount stays.
//   restart   the fd is let go as well (readers of existing containers see
//             errors, by nature: the old connection is gone), the stale
//             mount cleared, a fresh nydusd started and shared instances
//             re-mounted. New containers get the new mount.
//   failover  a successor `nydusd --upgrade` on the next API socket
//             (api.sock -> api1.sock -> ...) is armed with the saved state
//             and fd (the supervisor serves only that pid), takes over,
//             starts (FUSE_NOTIFY_RESEND first) and becomes the daemon.
//             Readers stall for the switch and see no error.
//             With daemon.hot_standby the successor is already waiting in
//             INIT, so the switch needs no process start. A standby is
//             spawned after every (re)start; its pid is written to
//             <socket dir>/standby.pid so that a restarted snapshotter can
//             end it (the standby holds nothing).
//
// Crash loops: every death (and every failed recovery attempt) of a daemon
// is remembered for crash_loop_window; the n-th within it waits
// recover_backoff * 2^(n-2) (capped) before the next attempt, and beyond
// crash_loop_limit the daemon is marked FAILED and left alone. The
// supervisor keeps its fd (readers wait, they do not fail) unless
// failed_abort_connection, which aborts the connection (readers fail fast).
// An upgrade takes a FAILED or DIED daemon over from the held state.
//
// Hot upgrade (upgrade()): per daemon, under its operation mutex: fresh
// save; new binary with --upgrade on the next API socket; INIT; takeover
// while the old one still serves; old one told to exit (it stops at a request
// boundary, never unmounts); reap; start the new one (it resends what the old
// one had read); switch the record. Any failure before the old daemon was
// told to exit kills the new process and leaves the old one serving
// (rollback); a failure of the new daemon's start after that is repaired by
// a failover with the previous binary. Daemons started later use the new
// binary once every daemon upgraded.
//
// Locking: a daemon's operation mutex is taken by the worker and by
// upgrade(); mu_ guards the maps below and is never held across a blocking
// call. upgrade_mu_ serializes upgrades (a second one is kBusy).
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/process.h"
#include "snapshotter/config.h"
#include "snapshotter/daemon_manager.h"
#include "snapshotter/system_backend.h"

namespace nydus::snapshotter {

// How long a successor may take to report INIT, and then RUNNING after start.
inline constexpr std::chrono::milliseconds kSuccessorStartTimeout{20000};
// How long an old daemon may take to exit after PUT /api/v1/daemon/exit
// before it is killed (the successor resends whatever it had read).
inline constexpr std::chrono::milliseconds kOldDaemonExitTimeout{10000};

struct RecoveryOptions {
  RecoverPolicy policy = RecoverPolicy::kFailover;
  bool hot_standby = false;
  int crash_loop_limit = 5;
  std::chrono::seconds crash_loop_window{60};
  std::chrono::milliseconds backoff_initial{100};
  std::chrono::milliseconds backoff_max{5000};
  bool failed_abort_connection = false;

  static RecoveryOptions from_config(const DaemonConfig& config);
};

// The api socket after `current` in the same directory:
// .../api.sock -> .../api1.sock, .../apiN.sock -> .../api<N+1>.sock.
std::string next_api_socket(const std::string& current);

// The delay before recovery attempt number `n` (1-based) within the window.
std::chrono::milliseconds recovery_backoff(int n, std::chrono::milliseconds initial, std::chrono::milliseconds max);

class RecoveryController final : public DaemonDeathHandler, public SystemBackend {
 public:
  // Registers itself as the manager's death handler, ends standbys left by a
  // previous snapshotter and prepares standbys for the daemons that run.
  RecoveryController(DaemonManager& manager, RecoveryOptions options);
  ~RecoveryController() override;  // stop()
  RecoveryController(const RecoveryController&) = delete;
  RecoveryController& operator=(const RecoveryController&) = delete;

  // Ends the worker and every standby; unregisters from the manager.
  // Idempotent.
  void stop();

  // DaemonDeathHandler
  void on_daemon_death(Daemon& daemon) override;
  void on_daemon_running(Daemon& daemon) override;
  void on_daemon_stopping(Daemon& daemon) override;

  // SystemBackend
  std::vector<DaemonView> daemons() override;
  nlohmann::json daemon_records() override;
  Result<std::vector<DaemonUpgradeResult>> upgrade(const UpgradeRequest& request) override;

  // Whether a standby is ready for daemon `id` (tests, views).
  std::optional<pid_t> standby_pid(const std::string& id) const;
  // Waits until no job is queued or running; false on timeout (tests).
  bool wait_idle(std::chrono::milliseconds timeout);

 private:
  struct Standby {
    Process process;
    std::unique_ptr<DaemonClient> client;
    std::string binary;
    std::string version;
  };
  struct Stats {
    uint64_t recoveries = 0;
    std::optional<double> last_failover_ms;
    std::optional<double> last_upgrade_ms;
    std::deque<std::chrono::steady_clock::time_point> attempts;  // within the window
  };
  struct Job {
    enum class Kind { kRecover, kStandby } kind;
    std::string id;
    std::chrono::steady_clock::time_point due;
    int attempt = 0;  // kRecover: the attempt's number within the crash-loop window
  };
  struct Successor {
    Process process;
    std::unique_ptr<DaemonClient> client;
  };

  void run();
  void enqueue(Job job);
  void recover(const std::string& id, int attempt);
  void schedule_recovery(const std::string& id);
  void prepare_standby(const std::string& id);
  // Takes the held state over into a successor running `binary`; on success
  // the successor is the daemon. Caller holds the operation mutex.
  Status take_over(Daemon& daemon, const std::string& binary, const std::string& version, bool use_standby);
  Result<Successor> start_successor(Daemon& daemon, const std::string& binary);
  Status switch_to(Daemon& daemon, Successor successor, const std::string& binary, const std::string& version);
  DaemonUpgradeResult upgrade_one(Daemon& daemon, const std::string& binary, const std::string& version);
  void abort_connection(Daemon& daemon);
  // Counts a death or failed attempt; returns its number within the window.
  int note_attempt(const std::string& id);
  std::optional<Standby> take_standby(const std::string& id);
  void discard_standby(const std::string& id);
  static void end_process(Process& process);
  void reap_stale_standby(const DaemonRecord& record);

  DaemonManager& manager_;
  const RecoveryOptions options_;
  std::mutex upgrade_mu_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;                    // guarded by mu_
  bool busy_ = false;                       // guarded by mu_: a job runs
  bool stopping_ = false;                   // guarded by mu_
  std::map<std::string, Stats> stats_;      // guarded by mu_
  std::map<std::string, Standby> standbys_; // guarded by mu_
  std::thread worker_;
};

}  // namespace nydus::snapshotter
