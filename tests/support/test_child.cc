#include "tests/support/test_child.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <fstream>
#include <stdexcept>

namespace nydus::testing {

TestChild::TestChild(const std::vector<std::string>& argv, const std::string& log_file) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
  UniqueFd read_end(fds[0]), write_end(fds[1]);
  SpawnOptions o;
  o.argv = argv;
  o.stdin_redirect = Redirect::null();
  o.fds = {{write_end.get(), 1}, {write_end.get(), 2}};
  auto p = Process::spawn(o);
  if (!p.ok()) throw std::runtime_error(p.error().message());
  process_.emplace(std::move(p).value());
  write_end.reset();  // the child holds the only write end now
  stop_fd_ = UniqueFd(::eventfd(0, EFD_CLOEXEC));
  // The reader watches its own copy of the pidfd: the Process may close its
  // one while the reader still polls.
  UniqueFd pidfd(::fcntl(process_->pidfd(), F_DUPFD_CLOEXEC, 3));
  if (!stop_fd_ || !pidfd) throw std::runtime_error("eventfd or dup failed");
  reader_ = std::thread([this, out = std::move(read_end), pid = std::move(pidfd), log_file]() mutable {
    reader_loop(std::move(out), std::move(pid), log_file);
  });
}

TestChild::~TestChild() {
  // The reader stops on request (a grandchild, e.g. a daemon the child
  // started, may keep the pipe open forever); then Process's destructor
  // kills and reaps a child that still runs.
  uint64_t one = 1;
  if (::write(stop_fd_.get(), &one, sizeof(one)) < 0) {
    // Cannot happen with an eventfd we own; the reader also ends at EOF.
  }
  if (reader_.joinable()) reader_.join();
  process_.reset();
}

void TestChild::reader_loop(UniqueFd out, UniqueFd pidfd, std::string log_file) {
  std::ofstream log;
  if (!log_file.empty()) log.open(log_file, std::ios::app);
  char buf[8192];
  // Reads what the pipe holds now without blocking; false at EOF.
  auto drain = [&]() {
    while (true) {
      ssize_t n = ::read(out.get(), buf, sizeof(buf));  // O_NONBLOCK: EAGAIN when empty
      if (n > 0) {
        if (log.is_open()) log.write(buf, n).flush();
        std::lock_guard<std::mutex> lock(mu_);
        output_.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      return n != 0;
    }
  };
  ::fcntl(out.get(), F_SETFL, ::fcntl(out.get(), F_GETFL) | O_NONBLOCK);
  bool watch_exit = true;
  bool open = true;
  while (open) {
    pollfd fds[3] = {{out.get(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}, {pidfd.get(), POLLIN, 0}};
    if (::poll(fds, watch_exit ? 3 : 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) open = drain();
    if (fds[1].revents & POLLIN) {
      drain();
      break;
    }
    if (watch_exit && (fds[2].revents & POLLIN)) {
      // The child is gone: what it wrote is in the pipe already.
      open = drain();
      watch_exit = false;
      std::lock_guard<std::mutex> lock(mu_);
      child_exited_ = true;
    }
    std::lock_guard<std::mutex> lock(mu_);
    cv_.notify_all();
  }
  std::lock_guard<std::mutex> lock(mu_);
  output_closed_ = true;
  child_exited_ = true;
  cv_.notify_all();
}

bool TestChild::running() { return !process_->exited(); }

void TestChild::signal(int sig) { (void)process_->kill(sig); }

std::optional<int> TestChild::wait(std::chrono::milliseconds timeout) {
  auto status = process_->wait(timeout);
  if (!status.ok()) return std::nullopt;
  return *status;
}

bool TestChild::wait_for_output(const std::string& needle, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, timeout, [&] {
    return output_.find(needle) != std::string::npos || output_closed_ || child_exited_;
  });
  return output_.find(needle) != std::string::npos;
}

std::string TestChild::output() {
  std::lock_guard<std::mutex> lock(mu_);
  return output_;
}

CommandResult run_command(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
  CommandResult result;
  TestChild child(argv);
  auto status = child.wait(timeout);
  if (status) result.status = *status;
  // Returns as soon as the reader has drained the output of the exited child.
  child.wait_for_output(std::string(1, '\0'), status ? 5000ms : 0ms);
  result.output = child.output();
  return result;
}

}  // namespace nydus::testing
