// The FUSE session of nydusd: one /dev/fuse connection served by N worker
// threads through libfuse's low-level API.
//
// Design (docs/fuse-takeover-facts.md; architecture.md "nydusd inside"):
//  - One connection fd, no clones: every worker reads the same fd, so handing
//    that one fd to a successor hands over the whole connection, including
//    the requests queued in it.
//  - Reads go through fuse_session_custom_io. The read callback polls the
//    connection fd together with a stop eventfd and returns "interrupted"
//    when stop is signalled, before reading: a worker stops only between
//    requests, never holding a request it read but did not answer. Requests
//    not yet read stay queued in the kernel for whoever serves next. The fd is
//    non-blocking, so a worker that loses the race for a request goes back to
//    poll instead of blocking in read(2).
//  - The FUSE_INIT exchange is captured at the wire (the raw request a worker
//    read, the raw reply the writev callback sends) into a FuseInitState, and
//    capabilities are negotiated in one place, op_init.
//  - Takeover (the failover work builds on this): adopt() takes an fd whose
//    INIT a predecessor answered, replays a synthetic INIT to libfuse whose
//    reply the writev callback swallows, and resend() writes
//    FUSE_NOTIFY_RESEND so requests the predecessor had read come back.
//
// Mounting uses our own mount(2) of /dev/fuse (fstype "fuse", source "rafs",
// MS_NOSUID|MS_NODEV|MS_RDONLY, allow_other, default_permissions).
//
// Threading: mount/adopt/start/stop/unmount are called by one controller
// thread (the daemon serializes its actions); inflight(), init_state() and the
// notify_* calls may be called from any thread. The session never unmounts on
// its own, not even in its destructor: exit-for-upgrade must leave the mount.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"
#include "common/unique_fd.h"
#include "nydusd/fuse/init_state.h"
#include "nydusd/fuse/libfuse.h"
#include "nydusd/fuse/vfs.h"

namespace nydus::fuse {

inline constexpr unsigned kDefaultThreads = 4;
inline constexpr unsigned kMaxThreads = 1024;

struct FuseSessionOptions {
  std::string mountpoint;          // host path (canonicalized by mount())
  unsigned threads = kDefaultThreads;
};

class FuseSession {
 public:
  // Creates the libfuse session (nothing is mounted or read yet). `vfs`
  // must outlive the session.
  static Result<std::unique_ptr<FuseSession>> create(Vfs& vfs, FuseSessionOptions options);
  ~FuseSession();  // stops the workers; never unmounts
  FuseSession(const FuseSession&) = delete;
  FuseSession& operator=(const FuseSession&) = delete;

  // Opens /dev/fuse, mounts it at the mountpoint and attaches it to libfuse.
  // On failure nothing stays mounted.
  Status mount();
  // Attaches an fd of a connection whose INIT was already answered (taken
  // over from a predecessor) and replays `init` to libfuse. No mount happens.
  // kFailedPrecondition when `init.max_write` needs a larger read buffer
  // than libfuse's (the kernel would fail every read with EINVAL).
  Status adopt(UniqueFd fd, const FuseInitState& init);
  // The size of libfuse 3.14's request buffer: FUSE_MAX_MAX_PAGES (256) pages
  // plus FUSE_BUFFER_HEADER_SIZE (4 KiB). Every read passes this length.
  static size_t libfuse_buffer_size();
  // Writes FUSE_NOTIFY_RESEND: the kernel queues again every request that was
  // read from this connection and not answered. Call before start().
  Status resend();

  // Starts the worker threads (again, after a stop()).
  Status start();
  // Stops the workers at request boundaries and joins them. Idempotent.
  void stop();
  // Unmounts (lazily when busy). The fd stays open until destruction.
  Status unmount();

  bool attached() const { return fuse_fd_ >= 0; }
  bool running() const { return serving_.load(); }
  const std::string& mountpoint() const { return options_.mountpoint; }
  unsigned threads() const { return options_.threads; }
  // The connection fd (owned by libfuse), -1 before mount/adopt. A successor
  // gets a dup of it.
  int connection_fd() const { return fuse_fd_; }

  // The negotiated INIT, once the kernel's INIT was answered (or adopted).
  std::optional<FuseInitState> init_state() const;
  // Whether the kernel answered ENOSYS-to-open with zero-message opens.
  bool no_open() const { return no_open_.load(); }

  // Called (from a worker thread) when the connection goes away under us:
  // unmounted by someone else or aborted. Set before start().
  void set_on_connection_lost(std::function<void()> callback) {
    on_connection_lost_ = std::move(callback);
  }

  // Kernel cache invalidation; return 0 or -errno (-ENOENT: not cached).
  // No-ops returning -ENOTCONN unless the workers are running, because an
  // invalidation can wait on a read that only a worker can answer.
  int notify_inval_inode(uint64_t node);
  int notify_inval_entry(uint64_t parent, const std::string& name);

  // Requests being processed, one slot per worker:
  // [{"inode","opcode","unique","timestamp_secs"}]; empty when idle.
  nlohmann::json inflight() const;

  Vfs& vfs() const { return vfs_; }

  // Requests read with FUSE_UNIQUE_RESEND (bit 63) set: the kernel re-queued
  // them after a FUSE_NOTIFY_RESEND (ours, or a peer's on the connection).
  uint64_t resent_requests() const { return resent_requests_.load(std::memory_order_relaxed); }

  // Test hook (environment NYDUSD_TEST_HANG_READ_INO=<node id>, read by
  // create()): a READ of that node is taken from the kernel and never
  // answered while the session runs, so a test can kill -9 a daemon that
  // holds a request and show that FUSE_NOTIFY_RESEND recovers it.
  static constexpr const char* kTestHangReadEnv = "NYDUSD_TEST_HANG_READ_INO";

 private:
  FuseSession(Vfs& vfs, FuseSessionOptions options);

  struct InflightSlot {
    std::atomic<uint64_t> unique{0};
    std::atomic<uint64_t> nodeid{0};
    std::atomic<uint32_t> opcode{0};
    std::atomic<int64_t> since_secs{0};
  };

  Status attach_fd(int fd);
  void worker_main(size_t slot);
  // Before processing a request: note it in the in-flight slot; keep the raw
  // INIT request for capture.
  void note_request(size_t slot, const fuse_buf& buf, size_t size);

  // libfuse callbacks (friends via static members).
  static ssize_t io_read(int fd, void* buf, size_t len, void* userdata);
  static ssize_t io_writev(int fd, struct iovec* iov, int count, void* userdata);
  static void op_init(void* userdata, struct fuse_conn_info* conn);
  friend struct FuseOps;

  Vfs& vfs_;
  FuseSessionOptions options_;
  fuse_session* se_ = nullptr;
  int fuse_fd_ = -1;        // owned by libfuse (closed by fuse_session_destroy)
  UniqueFd stop_fd_;        // eventfd; readable = workers must stop
  std::atomic<bool> serving_{false};        // workers are running (readable from any thread)
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> connection_lost_{false};
  std::atomic<bool> no_open_{false};
  std::atomic<bool> no_opendir_{false};
  std::vector<std::thread> workers_;
  std::unique_ptr<InflightSlot[]> slots_;
  std::function<void()> on_connection_lost_;

  mutable std::mutex init_mu_;
  // The unique of an INIT read but not yet answered; written under init_mu_,
  // read lock-free by every reply so that replies never contend on the mutex.
  std::atomic<uint64_t> pending_init_unique_{0};
  std::vector<uint8_t> pending_init_in_;          // guarded by init_mu_
  std::optional<FuseInitState> init_state_;       // guarded by init_mu_
  std::atomic<bool> initialized_{false};
  std::atomic<uint64_t> resent_requests_{0};
  uint64_t test_hang_read_node_ = 0;  // 0: off (see kTestHangReadEnv)
};

}  // namespace nydus::fuse
