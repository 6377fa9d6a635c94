// The fscache service: N worker threads serving one bound /dev/cachefiles
// (`nydusd singleton --fscache DIR [--fscache-tag T] [--fscache-threads N]`).
//
// Worker loop: poll(device POLLIN, stop eventfd POLLIN); on POLLIN read
// messages (read(2) never blocks here: it returns 0 when nothing is pending)
// and hand each to the RequestHandler, until read returns 0; then poll again.
// Every worker polls the same fd; the one whose read gets a message serves
// it, the others read 0 and go back to poll.
//
// Stopping (hot upgrade, exit): stop() sets the stop flag and signals the
// eventfd; a worker in poll returns at once, a worker inside a request
// finishes that request (its READ is completed) and then reads no more. So
// after stop() returns no request is half-served and none is read that will
// not be served, which is what a successor needs before it writes `restore`
// (facts §5: drain-and-exit) or takes the anon fds (objects()).
//
// Lifecycle:
//   fresh start   CachefilesDevice::open_and_bind -> FscacheService(...) -> start()
//   failover      (nydusd/daemon, Takeover then Start) re-bind the saved
//                 entries, CachefilesDevice::adopt(fd from the supervisor),
//                 FscacheService(...), and once the predecessor has exited
//                 restore() and start()
//   hand-off      stop(); give a successor device().dup_fd(), registry.list()
//                 (and optionally handler().objects() with dups of the anon fds)
//
// Thread safety: start/stop/restore are for one controlling thread; the
// handler and registry are shared with the workers (see their headers).
#pragma once

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"
#include "nydusd/fscache/device.h"
#include "nydusd/fscache/handler.h"
#include "nydusd/fscache/registry.h"

namespace nydus::fscache {

inline constexpr unsigned kDefaultThreads = 4;
inline constexpr unsigned kMaxThreads = 1024;

class FscacheService {
 public:
  // `registry` must outlive the service.
  static Result<std::unique_ptr<FscacheService>> create(std::unique_ptr<CachefilesDevice> device,
                                                        BlobRegistry* registry, unsigned threads = kDefaultThreads);
  ~FscacheService();
  FscacheService(const FscacheService&) = delete;
  FscacheService& operator=(const FscacheService&) = delete;

  // Spawns the workers. kFailedPrecondition if running.
  Status start();
  // Stops the workers between requests and joins them (see above). The
  // device stays open and bound; start() may be called again.
  void stop();
  bool running() const { return !workers_.empty(); }

  // Writes `restore`: pending requests, including those a dead predecessor
  // had read, are delivered again. Write it only after the predecessor has
  // exited (its anon fds closed), facts §7.4.
  Status restore() { return device_->restore(); }

  CachefilesDevice& device() { return *device_; }
  RequestHandler& handler() { return handler_; }
  BlobRegistry& registry() { return *registry_; }

 private:
  FscacheService(std::unique_ptr<CachefilesDevice> device, BlobRegistry* registry, unsigned threads, UniqueFd stop_fd);
  void worker_loop(unsigned index);

  std::unique_ptr<CachefilesDevice> device_;
  BlobRegistry* registry_;
  RequestHandler handler_;
  const unsigned threads_;
  UniqueFd stop_fd_;  // eventfd
  std::atomic<bool> stopping_{false};
  std::vector<std::thread> workers_;
};

}  // namespace nydus::fscache
