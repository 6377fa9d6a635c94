#include "snapshotter/supervisor.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include <spdlog/spdlog.h>

#include "common/fd_passing.h"
#include "common/unix_socket.h"

namespace nydus::snapshotter {

namespace {
// The largest state a daemon may save (nydusd's own takeover limit).
constexpr size_t kMaxStateBytes = 16u << 20;
constexpr size_t kMaxStateFds = 16;
}  // namespace

Result<std::unique_ptr<SupervisorStore>> SupervisorStore::open(std::string dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Error::from_errno(ec.value(), fmt::format("creating {}", dir));
  if (::chmod(dir.c_str(), 0700) != 0) return Error::from_errno(errno, fmt::format("chmod {}", dir));
  return std::unique_ptr<SupervisorStore>(new SupervisorStore(std::move(dir)));
}

SupervisorStore::~SupervisorStore() {
  std::map<std::string, std::unique_ptr<Entry>> entries;
  {
    std::lock_guard<std::mutex> lock(mu_);
    entries.swap(entries_);
  }
  for (auto& [_, e] : entries) stop_entry(*e);
}

std::string SupervisorStore::socket_path(const std::string& id) const { return dir_ + "/" + id + ".sock"; }

Result<std::string> SupervisorStore::add(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = entries_.find(id); it != entries_.end()) return it->second->path;
  auto e = std::make_unique<Entry>();
  e->id = id;
  e->path = socket_path(id);
  NYDUS_ASSIGN_OR_RETURN(e->listen_fd, listen_unix(e->path, 0600));
  e->stop_fd = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!e->stop_fd) return Error::from_errno(errno, "eventfd");
  Entry* raw = e.get();
  e->thread = std::thread([this, raw] { serve(raw); });
  std::string path = e->path;
  entries_[id] = std::move(e);
  return path;
}

void SupervisorStore::stop_entry(Entry& e) {
  uint64_t one = 1;
  if (::write(e.stop_fd.get(), &one, sizeof(one)) < 0) {
    spdlog::warn("supervisor {}: waking its thread: {}", e.id, std::strerror(errno));
  }
  if (e.thread.joinable()) e.thread.join();
  ::unlink(e.path.c_str());
}

void SupervisorStore::remove(const std::string& id) {
  std::unique_ptr<Entry> e;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(id);
    if (it == entries_.end()) return;
    e = std::move(it->second);
    entries_.erase(it);
  }
  stop_entry(*e);  // the held fd closes with the entry
  cv_.notify_all();
}

bool SupervisorStore::contains(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.count(id) > 0;
}

void SupervisorStore::serve(Entry* e) {
  while (true) {
    pollfd fds[2] = {{e->listen_fd.get(), POLLIN, 0}, {e->stop_fd.get(), POLLIN, 0}};
    int rc = ::poll(fds, 2, -1);
    if (rc < 0) {
      if (errno == EINTR) continue;
      spdlog::error("supervisor {}: poll: {}; no more saves or takeovers", e->id, std::strerror(errno));
      return;
    }
    if (fds[1].revents) return;
    auto conn = accept_unix(e->listen_fd.get(), std::chrono::milliseconds(0));
    if (!conn.ok()) continue;  // taken by nobody else; a spurious wake-up
    handle(e, std::move(conn).value());
  }
}

void SupervisorStore::handle(Entry* e, UniqueFd conn) {
  auto peer = peer_credentials(conn.get());
  if (!peer.ok()) {
    spdlog::warn("supervisor {}: no peer credentials ({}); connection refused", e->id, peer.error().message());
    std::lock_guard<std::mutex> lock(mu_);
    ++e->refused;
    return;
  }
  enum class Role { kRefuse, kSave, kServe } role = Role::kRefuse;
  std::vector<uint8_t> bytes;
  int fd = -1;
  UniqueFd fd_copy;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (e->takeover != 0 && peer->pid == e->takeover) {
      role = Role::kServe;
      bytes = e->bytes;
      // A dup, so drop_fd or a concurrent save cannot close it mid-send.
      if (e->fd) fd_copy = UniqueFd(::fcntl(e->fd.get(), F_DUPFD_CLOEXEC, 3));
      fd = fd_copy.get();
    } else if (e->owner != 0 && peer->pid == e->owner) {
      role = Role::kSave;
    } else {
      ++e->refused;
    }
  }
  switch (role) {
    case Role::kRefuse:
      spdlog::warn("supervisor {}: refused a connection from pid {} (uid {}): it is not the nydusd this "
                   "snapshotter spawned for the daemon",
                   e->id, peer->pid, peer->uid);
      break;
    case Role::kServe: {
      if (fd < 0 || bytes.empty()) {
        spdlog::error("supervisor {}: takeover by pid {} but no state is held", e->id, peer->pid);
        break;
      }
      int fds[] = {fd};
      auto st = send_message(conn.get(), bytes, fds, kIoTimeout);
      if (!st.ok()) {
        spdlog::error("supervisor {}: serving the state to pid {}: {}", e->id, peer->pid, st.error().message());
        break;
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        ++e->serves;
      }
      cv_.notify_all();
      spdlog::info("supervisor {}: served {} bytes of state and the FUSE fd to pid {}", e->id, bytes.size(),
                   peer->pid);
      break;
    }
    case Role::kSave: {
      auto message = receive_message(conn.get(), kIoTimeout, kMaxStateBytes, kMaxStateFds);
      if (!message.ok()) {
        spdlog::error("supervisor {}: receiving a save from pid {}: {}", e->id, peer->pid, message.error().message());
        break;
      }
      if (message->fds.empty() || message->bytes.empty()) {
        spdlog::error("supervisor {}: a save from pid {} without state bytes or fd ({} bytes, {} fds); ignored",
                      e->id, peer->pid, message->bytes.size(), message->fds.size());
        break;
      }
      size_t size = message->bytes.size();
      {
        std::lock_guard<std::mutex> lock(mu_);
        e->bytes = std::move(message->bytes);
        e->fd = std::move(message->fds.front());  // closes the fd it replaces
        ++e->saves;
      }
      cv_.notify_all();
      spdlog::debug("supervisor {}: saved {} bytes of state and the FUSE fd from pid {}", e->id, size, peer->pid);
      break;
    }
  }
}

void SupervisorStore::set_owner(const std::string& id, pid_t pid) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  it->second->owner = pid;
  if (it->second->takeover == pid) it->second->takeover = 0;
}

Status SupervisorStore::arm_takeover(const std::string& id, pid_t pid) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return make_error(ErrorKind::kNotFound, "daemon {} has no supervisor", id);
  if (!it->second->fd || it->second->bytes.empty()) {
    return make_error(ErrorKind::kNotFound, "the supervisor of daemon {} holds no saved state", id);
  }
  it->second->takeover = pid;
  return ok_status();
}

void SupervisorStore::disarm(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = entries_.find(id); it != entries_.end()) it->second->takeover = 0;
}

uint64_t SupervisorStore::saves(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(id);
  return it == entries_.end() ? 0 : it->second->saves;
}

uint64_t SupervisorStore::serves(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(id);
  return it == entries_.end() ? 0 : it->second->serves;
}

uint64_t SupervisorStore::refused(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(id);
  return it == entries_.end() ? 0 : it->second->refused;
}

bool SupervisorStore::wait_save(const std::string& id, uint64_t after, std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [&] {
    auto it = entries_.find(id);
    return it == entries_.end() || it->second->saves > after;
  }) && entries_.count(id) > 0;
}

bool SupervisorStore::wait_serve(const std::string& id, uint64_t after, std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [&] {
    auto it = entries_.find(id);
    return it == entries_.end() || it->second->serves > after;
  }) && entries_.count(id) > 0;
}

bool SupervisorStore::has_state(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(id);
  return it != entries_.end() && it->second->fd && !it->second->bytes.empty();
}

size_t SupervisorStore::state_size(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(id);
  return it == entries_.end() ? 0 : it->second->bytes.size();
}

Result<UniqueFd> SupervisorStore::dup_fd(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end() || !it->second->fd) {
    return make_error(ErrorKind::kNotFound, "the supervisor of daemon {} holds no fd", id);
  }
  UniqueFd fd(::fcntl(it->second->fd.get(), F_DUPFD_CLOEXEC, 3));
  if (!fd) return Error::from_errno(errno, "dup the held FUSE fd");
  return fd;
}

void SupervisorStore::drop_fd(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = entries_.find(id); it != entries_.end()) it->second->fd.reset();
}

}  // namespace nydus::snapshotter
