#include "tests/support/test_supervisor.h"

#include "common/fd_passing.h"
#include "common/unix_socket.h"

namespace nydus::testing {

namespace {
constexpr std::chrono::milliseconds kAcceptPoll{50};  // how often the thread checks stopping_
}  // namespace

TestSupervisor::TestSupervisor(std::string path) : path_(std::move(path)) {}

TestSupervisor::~TestSupervisor() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

Status TestSupervisor::start() {
  NYDUS_ASSIGN_OR_RETURN(listen_fd_, listen_unix(path_));
  thread_ = std::thread(&TestSupervisor::run, this);
  return ok_status();
}

void TestSupervisor::run() {
  while (true) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
    }
    auto conn = accept_unix(listen_fd_.get(), kAcceptPoll);
    if (!conn.ok()) continue;
    bool serve = false;
    std::vector<uint8_t> bytes;
    int fd = -1;
    {
      std::lock_guard lock(mu_);
      if (serve_pending_ > 0) {
        --serve_pending_;
        serve = true;
        bytes = bytes_;
        fd = fd_.get();
      }
    }
    if (serve) {
      std::vector<int> fds;
      if (fd >= 0) fds.push_back(fd);
      auto status = send_message(conn->get(), bytes, fds, kIoTimeout);
      std::lock_guard lock(mu_);
      if (status.ok()) {
        ++serves_;
      } else {
        last_error_ = status.error().message();
      }
    } else {
      auto message = receive_message(conn->get(), kIoTimeout);
      std::lock_guard lock(mu_);
      if (message.ok() && !message->fds.empty()) {
        bytes_ = std::move(message->bytes);
        fd_ = std::move(message->fds.front());  // closes the fd held before
        ++saves_;
      } else {
        last_error_ = message.ok() ? "save without an fd" : message.error().message();
      }
    }
    cv_.notify_all();
  }
}

void TestSupervisor::serve_next() {
  std::lock_guard lock(mu_);
  ++serve_pending_;
}

void TestSupervisor::set_bytes(std::vector<uint8_t> bytes) {
  std::lock_guard lock(mu_);
  bytes_ = std::move(bytes);
}

bool TestSupervisor::wait_count(const uint64_t& counter, uint64_t n,
                                std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return counter >= n; });
}

bool TestSupervisor::wait_saves(uint64_t n, std::chrono::milliseconds timeout) {
  return wait_count(saves_, n, timeout);
}
bool TestSupervisor::wait_serves(uint64_t n, std::chrono::milliseconds timeout) {
  return wait_count(serves_, n, timeout);
}
uint64_t TestSupervisor::saves() const {
  std::lock_guard lock(mu_);
  return saves_;
}
uint64_t TestSupervisor::serves() const {
  std::lock_guard lock(mu_);
  return serves_;
}
std::vector<uint8_t> TestSupervisor::bytes() const {
  std::lock_guard lock(mu_);
  return bytes_;
}
bool TestSupervisor::has_fd() const {
  std::lock_guard lock(mu_);
  return static_cast<bool>(fd_);
}
std::string TestSupervisor::last_error() const {
  std::lock_guard lock(mu_);
  return last_error_;
}

}  // namespace nydus::testing
