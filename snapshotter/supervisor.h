// The supervisor store: the snapshotter's side of nydusd's supervisor socket
// (reference-snapshotter.md §7, reference-nydusd.md §5.1), holding each
// daemon's latest saved state bytes and FUSE fd in memory.
//
// Wire (fixed by the reference; common/fd_passing.h speaks it): nydusd is
// always the connecting client. A save is one message nydusd sends (state
// bytes + one SCM_RIGHTS fd, end = close); a takeover is one message nydusd
// receives (the stored bytes + the stored fd, end = close). The framing has
// no request type, so the store decides which of the two a connection is by
// WHO connects (SO_PEERCRED, recorded by the kernel at connect()):
//
//   * the pid armed with arm_takeover() is served the stored state (every
//     connection from it, until disarm() or a new owner);
//   * the owner pid (the daemon that serves, set_owner()) may save;
//   * anybody else is refused: the connection is closed unread and the
//     refusal logged and counted. A forged client can neither plant a state
//     (and an fd) that a later takeover would hand to nydusd, nor read the
//     held /dev/fuse fd, which would let it answer the container's requests.
//
// Each daemon gets a socket <dir>/<id>.sock, mode 0600, bound once when the
// daemon is added and kept (unlike the reference, which re-listens per
// operation): nydusd may resave on its own after a mount change at any time.
// A save replaces the stored bytes and closes the fd held before (the
// reference leaks it). The fd is held until remove(): while it is held the
// FUSE connection outlives any daemon, which is what makes failover and
// "readers wait, they do not fail" possible.
//
// Threads: one thread per daemon socket, polling its listener and a stop
// eventfd; each connection is handled on that thread, bounded by kIoTimeout.
// Every public method may be called from any thread; mu_ guards the map and
// each entry's fields, and is never held across socket I/O.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"

namespace nydus::snapshotter {

class SupervisorStore {
 public:
  // How long one save or takeover exchange may take once connected.
  static constexpr std::chrono::milliseconds kIoTimeout{10000};
  // How long request_save callers wait for the save to arrive by default.
  static constexpr std::chrono::milliseconds kSaveWait{10000};

  // `dir` is <root>/supervisor (created 0700).
  static Result<std::unique_ptr<SupervisorStore>> open(std::string dir);
  ~SupervisorStore();  // stops every thread, closes every held fd
  SupervisorStore(const SupervisorStore&) = delete;
  SupervisorStore& operator=(const SupervisorStore&) = delete;

  const std::string& dir() const { return dir_; }
  std::string socket_path(const std::string& id) const;

  // Binds <dir>/<id>.sock (mode 0600) and serves it. Idempotent. Returns the
  // socket path.
  Result<std::string> add(const std::string& id);
  // Stops serving, unlinks the socket and closes the held fd.
  void remove(const std::string& id);
  bool contains(const std::string& id) const;

  // The process allowed to save (the daemon's serving process). Disarms a
  // takeover armed for that same pid (it serves now).
  void set_owner(const std::string& id, pid_t pid);
  // The next connections from `pid` receive the stored state. kNotFound
  // without a stored state (nothing to take over).
  Status arm_takeover(const std::string& id, pid_t pid);
  void disarm(const std::string& id);

  // Saves received so far (to wait for one: wait_save(id, saves(id) ...)).
  uint64_t saves(const std::string& id) const;
  uint64_t serves(const std::string& id) const;
  uint64_t refused(const std::string& id) const;
  // Waits until more than `after` saves arrived; false on timeout.
  bool wait_save(const std::string& id, uint64_t after, std::chrono::milliseconds timeout) const;
  // Waits until more than `after` serves happened; false on timeout.
  bool wait_serve(const std::string& id, uint64_t after, std::chrono::milliseconds timeout) const;
  bool has_state(const std::string& id) const;
  size_t state_size(const std::string& id) const;
  // A dup of the held fd (close-on-exec), e.g. to abort its connection.
  Result<UniqueFd> dup_fd(const std::string& id) const;
  // Closes the held fd (bytes stay): with no other holder the kernel aborts
  // the FUSE connection.
  void drop_fd(const std::string& id);

 private:
  struct Entry {
    std::string id;
    std::string path;
    UniqueFd listen_fd;
    UniqueFd stop_fd;  // eventfd
    std::thread thread;
    pid_t owner = 0;
    pid_t takeover = 0;
    std::vector<uint8_t> bytes;
    UniqueFd fd;
    uint64_t saves = 0;
    uint64_t serves = 0;
    uint64_t refused = 0;
  };

  explicit SupervisorStore(std::string dir) : dir_(std::move(dir)) {}
  void serve(Entry* entry);
  void handle(Entry* entry, UniqueFd conn);
  static void stop_entry(Entry& entry);

  std::string dir_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  // unique_ptr: the thread of an entry holds its address.
  std::map<std::string, std::unique_ptr<Entry>> entries_;  // guarded by mu_ (and the fields)
};

}  // namespace nydus::snapshotter
