#include "tests/unit/snapshotter/test_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <stdexcept>

extern char** environ;

namespace nydus::testing {

namespace {

int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

}  // namespace

TestChild::TestChild(const std::vector<std::string>& argv, const std::string& log_file) {
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
  UniqueFd read_end(pipefd[0]), write_end(pipefd[1]);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), 1);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), 2);
  // The test blocks no signals the child should see, but reset the mask to
  // be sure (gRPC and Catch may have changed ours).
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t empty;
  sigemptyset(&empty);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);

  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  int rc = ::posix_spawn(&pid_, args[0], &actions, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) throw std::runtime_error("posix_spawn " + argv[0] + ": " + std::strerror(rc));
  write_end.reset();

  pidfd_.reset(pidfd_open(pid_));
  if (!pidfd_) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    throw std::runtime_error("pidfd_open failed");
  }
  stop_fd_.reset(::eventfd(0, EFD_CLOEXEC));
  reader_ = std::thread([this, fd = read_end.release(), log_file] { reader_loop(fd, log_file); });
}

TestChild::~TestChild() {
  if (!reaped_) {
    ::kill(pid_, SIGKILL);
    int status;
    ::waitpid(pid_, &status, 0);
    reaped_ = true;
  }
  uint64_t one = 1;
  if (::write(stop_fd_.get(), &one, sizeof(one)) < 0) {
    // The reader also stops at EOF.
  }
  if (reader_.joinable()) reader_.join();
}

void TestChild::reader_loop(int out_fd, std::string log_file) {
  UniqueFd out(out_fd);
  std::ofstream log;
  if (!log_file.empty()) log.open(log_file, std::ios::app);
  char buf[8192];
  // Reads what the pipe holds now without blocking; false at EOF.
  auto drain = [&]() {
    int flags = ::fcntl(out.get(), F_GETFL);
    ::fcntl(out.get(), F_SETFL, flags | O_NONBLOCK);
    ssize_t n;
    bool eof = false;
    while (true) {
      n = ::read(out.get(), buf, sizeof(buf));
      if (n > 0) {
        if (log.is_open()) log.write(buf, n).flush();
        std::lock_guard<std::mutex> lock(mu_);
        output_.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n == 0) eof = true;
      if (n < 0 && errno == EINTR) continue;
      break;
    }
    ::fcntl(out.get(), F_SETFL, flags);
    return !eof;
  };
  bool watch_exit = true;
  bool open = true;
  while (open) {
    pollfd fds[3] = {{out.get(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}, {pidfd_.get(), POLLIN, 0}};
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

bool TestChild::running() {
  if (reaped_) return false;
  pollfd p{pidfd_.get(), POLLIN, 0};
  return ::poll(&p, 1, 0) == 0;
}

void TestChild::signal(int sig) {
  if (!reaped_) ::kill(pid_, sig);
}

std::optional<int> TestChild::wait(std::chrono::milliseconds timeout) {
  if (reaped_) return std::nullopt;
  pollfd p{pidfd_.get(), POLLIN, 0};
  int r;
  do {
    r = ::poll(&p, 1, static_cast<int>(timeout.count()));
  } while (r < 0 && errno == EINTR);
  if (r <= 0) return std::nullopt;
  int status = 0;
  ::waitpid(pid_, &status, 0);
  reaped_ = true;
  return status;
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

bool CommandResult::exited_ok() const { return status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0; }

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

std::vector<std::string> mounts_under(const std::string& root) {
  std::vector<std::string> found;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    size_t pos = 0;
    for (int i = 0; i < 4 && pos != std::string::npos; ++i) pos = line.find(' ', pos + 1);
    if (pos == std::string::npos) continue;
    size_t end = line.find(' ', pos + 1);
    std::string mp = line.substr(pos + 1, end - pos - 1);
    if (mp == root || mp.rfind(root + "/", 0) == 0) found.push_back(mp);
  }
  return found;
}

}  // namespace nydus::testing
