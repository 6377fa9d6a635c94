#include "snapshotter/liveness_monitor.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <vector>

#include <spdlog/spdlog.h>

namespace nydus::snapshotter {

namespace {
constexpr uint64_t kWakeToken = 0;
constexpr int kMaxEvents = 64;
}  // namespace

Result<std::unique_ptr<LivenessMonitor>> LivenessMonitor::create(Callback callback) {
  UniqueFd epoll(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll) return Error::from_errno(errno, "epoll_create1");
  UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake) return Error::from_errno(errno, "eventfd");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeToken;
  if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, wake.get(), &ev) != 0) {
    return Error::from_errno(errno, "epoll_ctl(eventfd)");
  }
  std::unique_ptr<LivenessMonitor> m(new LivenessMonitor(std::move(epoll), std::move(wake), std::move(callback)));
  m->thread_ = std::thread([raw = m.get()] { raw->run(); });
  return m;
}

LivenessMonitor::LivenessMonitor(UniqueFd epoll, UniqueFd wake, Callback callback)
    : epoll_(std::move(epoll)), wake_(std::move(wake)), callback_(std::move(callback)) {}

LivenessMonitor::~LivenessMonitor() { stop(); }

void LivenessMonitor::stop() {
  if (stopped_) return;
  stopped_ = true;
  uint64_t one = 1;
  if (::write(wake_.get(), &one, sizeof(one)) < 0) spdlog::error("liveness monitor: waking the thread failed");
  if (thread_.joinable()) thread_.join();
  std::lock_guard<std::mutex> lock(mu_);
  watches_.clear();
  tokens_.clear();
}

Status LivenessMonitor::watch(const std::string& id, int pidfd, UniqueFd api_connection) {
  UniqueFd dup(::fcntl(pidfd, F_DUPFD_CLOEXEC, 0));
  if (!dup) return Error::from_errno(errno, fmt::format("liveness: dup of daemon {}'s pidfd", id));
  std::lock_guard<std::mutex> lock(mu_);
  forget_locked(id);
  Watch w;
  w.pidfd = std::move(dup);
  w.pid_token = next_token_++;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = w.pid_token;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, w.pidfd.get(), &ev) != 0) {
    return Error::from_errno(errno, fmt::format("liveness: epoll_ctl(pidfd) of daemon {}", id));
  }
  tokens_[w.pid_token] = Token{id, true};
  if (api_connection) {
    w.connection = std::move(api_connection);
    w.conn_token = next_token_++;
    // No EPOLLIN: the server never writes unasked, and a hang-up shows as
    // RDHUP/HUP. Registration errors are returned, never swallowed (#778).
    epoll_event cev{};
    cev.events = EPOLLRDHUP | EPOLLHUP | EPOLLERR;
    cev.data.u64 = w.conn_token;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, w.connection.get(), &cev) != 0) {
      int err = errno;
      ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, w.pidfd.get(), nullptr);
      tokens_.erase(w.pid_token);
      return Error::from_errno(err, fmt::format("liveness: epoll_ctl(api connection) of daemon {}", id));
    }
    tokens_[w.conn_token] = Token{id, false};
  }
  watches_[id] = std::move(w);
  return ok_status();
}

void LivenessMonitor::forget_locked(const std::string& id) {
  auto it = watches_.find(id);
  if (it == watches_.end()) return;
  Watch& w = it->second;
  if (w.pidfd) ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, w.pidfd.get(), nullptr);
  if (w.connection) ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, w.connection.get(), nullptr);
  tokens_.erase(w.pid_token);
  tokens_.erase(w.conn_token);
  watches_.erase(it);
}

void LivenessMonitor::unwatch(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  forget_locked(id);
}

bool LivenessMonitor::watching(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  return watches_.count(id) > 0;
}

void LivenessMonitor::run() {
  epoll_event events[kMaxEvents];
  while (true) {
    int n = ::epoll_wait(epoll_.get(), events, kMaxEvents, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      spdlog::critical("liveness monitor: epoll_wait failed: {}; daemon deaths go unnoticed", std::strerror(errno));
      return;
    }
    std::vector<LivenessEvent> fired;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (int i = 0; i < n; ++i) {
        uint64_t token = events[i].data.u64;
        if (token == kWakeToken) return;
        auto t = tokens_.find(token);
        if (t == tokens_.end()) continue;  // unwatched meanwhile
        std::string id = t->second.id;
        bool is_pidfd = t->second.is_pidfd;
        auto w = watches_.find(id);
        if (w == watches_.end()) continue;
        if (is_pidfd) {
          // The process is gone: nothing of this registration matters any more.
          forget_locked(id);
          fired.push_back({id, LivenessEvent::Kind::kProcessExited});
        } else {
          ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, w->second.connection.get(), nullptr);
          w->second.connection.reset();
          tokens_.erase(token);
          w->second.conn_token = 0;
          fired.push_back({id, LivenessEvent::Kind::kApiHangup});
        }
      }
    }
    // A pidfd and a connection of the same daemon in one batch: report the
    // exit only.
    for (const auto& e : fired) {
      if (e.kind == LivenessEvent::Kind::kApiHangup) {
        bool exited = false;
        for (const auto& other : fired) {
          exited |= other.daemon_id == e.daemon_id && other.kind == LivenessEvent::Kind::kProcessExited;
        }
        if (exited) continue;
      }
      try {
        callback_(e);
      } catch (const std::exception& ex) {
        spdlog::error("liveness monitor: handler for daemon {} threw: {}", e.daemon_id, ex.what());
      }
    }
  }
}

}  // namespace nydus::snapshotter
