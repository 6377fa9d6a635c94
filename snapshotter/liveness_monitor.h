// Liveness of nydusd daemons, kernel-driven and without polling
// (reference-snapshotter.md §5, done better):
//
//  * the daemon's pidfd becomes readable the instant the process exits,
//    whether it is our child or was adopted after a snapshotter restart.
//    That is the authority on death: no false positives (#774) and no blind
//    window before the API socket exists (#534);
//  * a held, idle connection to its API socket hangs up when the API server
//    goes away. nydusd never closes an idle connection, so a hang-up while
//    the process lives means its control plane is gone (a wedged or
//    half-dead daemon): reported as its own event kind, and the pidfd stays
//    watched.
//
// One thread waits in epoll_wait on every watched fd plus an eventfd that
// stops it. Each fd is reported once and then dropped from the epoll set.
//
// Callbacks run on the monitor thread with no monitor lock held; they may
// call watch()/unwatch() (for other or the same ids) but must not call
// stop() or destroy the monitor. After unwatch(id) returns no new event for
// that registration is delivered (one already being delivered may finish).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/result.h"
#include "common/unique_fd.h"

namespace nydus::snapshotter {

struct LivenessEvent {
  enum class Kind {
    kProcessExited,  // the pidfd is readable
    kApiHangup,      // the held API connection hung up
  };
  std::string daemon_id;
  Kind kind;
};

class LivenessMonitor {
 public:
  using Callback = std::function<void(const LivenessEvent&)>;

  // Starts the monitor thread.
  static Result<std::unique_ptr<LivenessMonitor>> create(Callback callback);
  ~LivenessMonitor();  // stop()
  LivenessMonitor(const LivenessMonitor&) = delete;
  LivenessMonitor& operator=(const LivenessMonitor&) = delete;

  // Watches daemon `id`: `pidfd` is duplicated (the caller keeps its own),
  // `api_connection` (may be empty) is taken over and closed by unwatch().
  // A second watch of the same id replaces the first.
  Status watch(const std::string& id, int pidfd, UniqueFd api_connection);
  // Forgets `id` (no-op when not watched) and closes its fds.
  void unwatch(const std::string& id);
  bool watching(const std::string& id) const;

  // Ends the thread. Idempotent. Not from a callback.
  void stop();

 private:
  struct Watch {
    UniqueFd pidfd;
    UniqueFd connection;
    uint64_t pid_token = 0;
    uint64_t conn_token = 0;
  };
  struct Token {
    std::string id;
    bool is_pidfd;
  };

  LivenessMonitor(UniqueFd epoll, UniqueFd wake, Callback callback);
  void run();
  void forget_locked(const std::string& id);

  UniqueFd epoll_;
  UniqueFd wake_;  // eventfd: stop
  Callback callback_;
  mutable std::mutex mu_;
  std::map<std::string, Watch> watches_;   // guarded by mu_
  std::map<uint64_t, Token> tokens_;       // guarded by mu_
  uint64_t next_token_ = 1;                // guarded by mu_
  std::thread thread_;
  bool stopped_ = false;
};

}  // namespace nydus::snapshotter
