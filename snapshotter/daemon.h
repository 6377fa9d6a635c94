// One nydusd process the snapshotter manages: its persistent record, the
// process handle (pidfd), its API client, its state and the RAFS instances
// it serves (their count is its reference count).
//
// Ownership: the DaemonManager creates and owns Daemons (shared_ptr, so a
// caller that looked one up keeps it alive across a concurrent removal).
// The Process is always detached: dropping a Daemon never kills nydusd.
//
// Locking (see also daemon_manager.h for the order across objects):
//   operation_mutex()  serializes lifecycle operations on this daemon: start,
//                      stop, shared mount/umount, death handling and, later,
//                      restart/failover/upgrade. Held across blocking calls
//                      on this daemon (HTTP, waits). While it is held, the
//                      process handle is not replaced, so pidfd() is stable.
//   mu_ (internal)     guards the fields below; never held across blocking
//                      calls. Every accessor takes it briefly.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/process.h"
#include "snapshotter/daemon_client.h"
#include "snapshotter/store.h"

namespace nydus::snapshotter {

// Our states beyond nydusd's INIT/READY/RUNNING, as recorded in the
// daemons table.
inline constexpr std::string_view kStateStarting = "STARTING";  // record written, process not serving yet
inline constexpr std::string_view kStateDied = "DIED";          // the process exited unexpectedly
inline constexpr std::string_view kStateStopping = "STOPPING";  // we asked it to exit
// Recovery gave up (crash loop): the supervisor may still hold the FUSE fd,
// so readers wait until an upgrade to a good binary takes over.
inline constexpr std::string_view kStateFailed = "FAILED";

inline constexpr std::string_view kModeDedicated = "dedicated";
inline constexpr std::string_view kModeShared = "shared";
// DaemonRecord::fs_driver values.
inline constexpr std::string_view kDriverFusedev = "fusedev";
inline constexpr std::string_view kDriverFscache = "fscache";

class Daemon {
 public:
  Daemon(DaemonRecord record, std::unique_ptr<DaemonClient> client)
      : id_(record.id), shared_(record.daemon_mode == kModeShared), fscache_(record.fs_driver == kDriverFscache),
        record_(std::move(record)),
        client_(std::move(client)) {}
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  const std::string& id() const { return id_; }
  bool shared() const { return shared_; }
  // A `nydusd singleton` serving EROFS over fscache (always shared): its
  // instances are bound with /api/v2/blobs and mounted by the snapshotter.
  bool fscache() const { return fscache_; }
  // Replaced (replace_client) only under operation_mutex(); use it under
  // that mutex too, or on a daemon nobody else can reach yet.
  DaemonClient& client() { return *client_; }
  std::mutex& operation_mutex() { return op_mu_; }

  DaemonRecord record() const {
    std::lock_guard<std::mutex> lock(mu_);
    return record_;
  }
  std::string state() const {
    std::lock_guard<std::mutex> lock(mu_);
    return record_.state;
  }
  pid_t pid() const {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<pid_t>(record_.pid);
  }
  bool stopping() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stopping_;
  }
  // Snapshot ids of the RAFS instances served (the reference count).
  std::vector<std::string> instances() const {
    std::lock_guard<std::mutex> lock(mu_);
    return {instances_.begin(), instances_.end()};
  }
  size_t refcount() const {
    std::lock_guard<std::mutex> lock(mu_);
    return instances_.size();
  }
  // The pidfd of the current process, -1 without one. Stable while
  // operation_mutex() is held.
  int pidfd() const {
    std::lock_guard<std::mutex> lock(mu_);
    return process_ ? process_->pidfd() : -1;
  }

  // --- mutators (the manager, and later the failover code) ---
  void set_process(Process process) {
    std::lock_guard<std::mutex> lock(mu_);
    process.detach();
    record_.pid = process.pid();
    process_ = std::move(process);
  }
  void set_state(std::string_view state) {
    std::lock_guard<std::mutex> lock(mu_);
    record_.state = std::string(state);
  }
  void set_binary(std::string path, std::string version) {
    std::lock_guard<std::mutex> lock(mu_);
    record_.binary_path = std::move(path);
    record_.version = std::move(version);
  }
  // A successor took over on another API socket (failover, upgrade). The
  // caller holds operation_mutex().
  void replace_client(std::unique_ptr<DaemonClient> client) {
    std::lock_guard<std::mutex> lock(mu_);
    record_.api_socket = client->api_socket();
    client_ = std::move(client);
  }
  void set_stopping(bool stopping) {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = stopping;
  }
  void add_instance(const std::string& snapshot_id) {
    std::lock_guard<std::mutex> lock(mu_);
    instances_.insert(snapshot_id);
  }
  void remove_instance(const std::string& snapshot_id) {
    std::lock_guard<std::mutex> lock(mu_);
    instances_.erase(snapshot_id);
  }
  // Sends `sig` to the process (kNotFound when it is gone or there is none).
  Status kill(int sig) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!process_) return make_error(ErrorKind::kNotFound, "daemon {} has no process", id_);
    return process_->kill(sig);
  }
  // The exit status once the process exited (reaping a child), nullopt
  // while it runs or without a process.
  std::optional<int> try_wait() {
    std::lock_guard<std::mutex> lock(mu_);
    if (!process_) return std::nullopt;
    auto st = process_->try_wait();
    if (!st.ok()) return std::nullopt;
    return *st;
  }
  bool has_process() const {
    std::lock_guard<std::mutex> lock(mu_);
    return process_.has_value();
  }

 private:
  const std::string id_;
  const bool shared_;
  const bool fscache_;
  mutable std::mutex mu_;
  DaemonRecord record_;              // guarded by mu_
  std::optional<Process> process_;   // guarded by mu_; always detached
  std::set<std::string> instances_;  // guarded by mu_
  bool stopping_ = false;            // guarded by mu_
  std::unique_ptr<DaemonClient> client_;
  std::mutex op_mu_;
};

}  // namespace nydus::snapshotter
