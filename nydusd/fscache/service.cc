#include "nydusd/fscache/service.h"

#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <system_error>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "nydusd/fscache/protocol.h"

namespace nydus::fscache {

namespace {

// After an unexpected poll or read error a worker pauses this long before
// trying again, so a persistent error cannot spin a CPU.
constexpr std::chrono::milliseconds kErrorBackoff{100};

}  // namespace

Result<std::unique_ptr<FscacheService>> FscacheService::create(std::unique_ptr<CachefilesDevice> device,
                                                               BlobRegistry* registry, unsigned threads) {
  if (!device || !registry) return make_error(ErrorKind::kInvalidArgument, "fscache: service needs a device and a registry");
  if (threads < 1 || threads > kMaxThreads) {
    return make_error(ErrorKind::kInvalidArgument, "fscache: threads must be in 1..={}, got {}", kMaxThreads, threads);
  }
  UniqueFd efd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!efd) return Error::from_errno(errno, "fscache: eventfd");
  return std::unique_ptr<FscacheService>(new FscacheService(std::move(device), registry, threads, std::move(efd)));
}

FscacheService::FscacheService(std::unique_ptr<CachefilesDevice> device, BlobRegistry* registry, unsigned threads,
                               UniqueFd stop_fd)
    : device_(std::move(device)), registry_(registry), handler_(registry, device_.get()), threads_(threads),
      stop_fd_(std::move(stop_fd)) {}

FscacheService::~FscacheService() { stop(); }

Status FscacheService::start() {
  if (!workers_.empty()) return make_error(ErrorKind::kFailedPrecondition, "fscache: service already running");
  // Drain a stop signal left from an earlier stop().
  uint64_t v;
  while (::read(stop_fd_.get(), &v, sizeof(v)) > 0) {
  }
  stopping_.store(false);
  for (unsigned i = 0; i < threads_; ++i) {
    try {
      workers_.emplace_back([this, i] { worker_loop(i); });
    } catch (const std::system_error& e) {
      stop();
      return make_error(ErrorKind::kIo, "fscache: cannot start worker {}: {}", i, e.what());
    }
  }
  spdlog::info("fscache: serving with {} worker thread(s)", threads_);
  return ok_status();
}

void FscacheService::stop() {
  if (workers_.empty()) return;
  stopping_.store(true);
  uint64_t one = 1;
  if (::write(stop_fd_.get(), &one, sizeof(one)) < 0 && errno != EAGAIN) {
    spdlog::error("fscache: signalling the workers to stop: {}", std::strerror(errno));
  }
  for (auto& t : workers_) t.join();
  workers_.clear();
  spdlog::info("fscache: workers stopped ({} open object(s) kept)", handler_.object_count());
}

void FscacheService::worker_loop(unsigned index) {
  const std::string name = fmt::format("fscache-{}", index);
  ::pthread_setname_np(::pthread_self(), name.substr(0, 15).c_str());
  AlignedBuffer buffer;
  alignas(8) uint8_t msg[kMaxMessageSize];
  pollfd fds[2] = {{device_->fd(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
  while (!stopping_.load()) {
    int n = ::poll(fds, 2, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      spdlog::error("fscache: worker {}: poll: {}", index, std::strerror(errno));
      std::this_thread::sleep_for(kErrorBackoff);
      continue;
    }
    if (fds[1].revents != 0 || stopping_.load()) break;
    if (fds[0].revents & (POLLERR | POLLHUP | POLLNVAL)) {
      spdlog::error("fscache: worker {}: /dev/cachefiles reports an error (revents {:#x}); stopping", index,
                    fds[0].revents);
      break;
    }
    if (!(fds[0].revents & POLLIN)) continue;
    // One message per read; stop reading as soon as a stop is requested.
    while (!stopping_.load()) {
      auto got = device_->read_message(msg);
      if (!got.ok()) {
        spdlog::error("fscache: worker {}: {}", index, got.error().message());
        std::this_thread::sleep_for(kErrorBackoff);
        break;
      }
      if (*got == 0) break;
      handler_.handle(std::span<const uint8_t>(msg, *got), buffer);
    }
  }
}

}  // namespace nydus::fscache
