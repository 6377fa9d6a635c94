#include "common/process.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
// glibc 2.36's <sys/pidfd.h> lacks __BEGIN_DECLS: give it C linkage here.
extern "C" {
#include <sys/pidfd.h>
}
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <memory>
#include <set>

#include <spdlog/spdlog.h>

extern char** environ;

namespace nydus {

namespace {

using Clock = std::chrono::steady_clock;

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif

// struct clone_args, version 0 (64 bytes), as the kernel ABI defines it;
// glibc 2.36 does not export clone3.
struct CloneArgs {
  uint64_t flags;
  uint64_t pidfd;
  uint64_t child_tid;
  uint64_t parent_tid;
  uint64_t exit_signal;
  uint64_t stack;
  uint64_t stack_size;
  uint64_t tls;
};
static_assert(sizeof(CloneArgs) == 64, "clone_args v0 is 64 bytes");

constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// What the child did last before it failed; reported over the error pipe.
enum class ChildStep : int {
  kSession,
  kDeathSignal,
  kMoveFds,
  kStdin,
  kStdout,
  kStderr,
  kMapFds,
  kCloseFds,
  kChdir,
  kExec,
};

const char* child_step_name(ChildStep step) {
  switch (step) {
    case ChildStep::kSession: return "setsid";
    case ChildStep::kDeathSignal: return "prctl(PR_SET_PDEATHSIG)";
    case ChildStep::kMoveFds: return "duplicate fds to pass";
    case ChildStep::kStdin: return "redirect stdin";
    case ChildStep::kStdout: return "redirect stdout";
    case ChildStep::kStderr: return "redirect stderr";
    case ChildStep::kMapFds: return "place passed fds";
    case ChildStep::kCloseFds: return "mark other fds close-on-exec";
    case ChildStep::kChdir: return "chdir";
    case ChildStep::kExec: return "exec";
  }
  return "unknown step";
}

struct ChildReport {
  int step;
  int err;
};

// Everything the child needs, prepared before the fork so that the child
// itself only makes async-signal-safe calls (no allocation, no locks: another
// thread of ours may have held the malloc lock when we forked).
struct ChildPlan {
  std::string exe;
  std::vector<std::string> argv_storage;
  std::vector<char*> argv;
  std::vector<std::string> env_storage;
  std::vector<char*> envp;
  const char* cwd = nullptr;

  struct Stdio {
    Redirect::Kind kind;
    const char* path;
  };
  Stdio stdio[3];

  std::vector<FdMapping> fds;
  std::vector<int> tmp_fds;  // written by the child, sized here
  // fd ranges to mark close-on-exec (every fd >= 3 that is not a target).
  std::vector<std::pair<unsigned, unsigned>> cloexec_ranges;
  int min_high_fd = 3;  // above every target fd
  int max_fd = 1024;    // for the fallback without close_range

  bool new_session = false;
  int death_signal = 0;
  pid_t parent_pid = 0;
};

// Runs in the child between fork and exec. Never returns.
[[noreturn]] void run_child(ChildPlan& plan, int err_fd) {
  auto fail = [&](ChildStep step) {
    ChildReport report{static_cast<int>(step), errno};
    ssize_t n;
    do {
      n = ::write(err_fd, &report, sizeof(report));
    } while (n < 0 && errno == EINTR);
    ::_exit(127);
  };

  // Default dispositions: ignored signals would survive exec, and a handler
  // of ours must not run in the child before exec. (The parent blocked every
  // signal around the fork, so none could arrive before this.)
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    ::sigaction(sig, &dfl, nullptr);  // EINVAL for glibc-reserved ones: fine
  }

  if (plan.new_session && ::setsid() < 0) fail(ChildStep::kSession);
  if (plan.death_signal != 0) {
    if (::prctl(PR_SET_PDEATHSIG, plan.death_signal) != 0) fail(ChildStep::kDeathSignal);
    // The parent may have died before the prctl took effect.
    if (::getppid() != plan.parent_pid) ::_exit(127);
  }

  // Move the error pipe and every fd to pass above all target numbers, so
  // that placing one never overwrites another.
  int moved_err = ::fcntl(err_fd, F_DUPFD_CLOEXEC, plan.min_high_fd);
  if (moved_err < 0) fail(ChildStep::kMoveFds);
  err_fd = moved_err;
  for (size_t i = 0; i < plan.fds.size(); ++i) {
    plan.tmp_fds[i] = ::fcntl(plan.fds[i].parent_fd, F_DUPFD_CLOEXEC, plan.min_high_fd);
    if (plan.tmp_fds[i] < 0) fail(ChildStep::kMoveFds);
  }

  static constexpr ChildStep kStdioSteps[3] = {ChildStep::kStdin, ChildStep::kStdout,
                                               ChildStep::kStderr};
  for (int i = 0; i < 3; ++i) {
    const auto& s = plan.stdio[i];
    if (s.kind == Redirect::Kind::kInherit) continue;
    const char* path = s.kind == Redirect::Kind::kNull ? "/dev/null" : s.path;
    int flags = i == 0 ? O_RDONLY : (O_WRONLY | O_APPEND | (s.kind == Redirect::Kind::kFile ? O_CREAT : 0));
    int fd = ::open(path, flags | O_CLOEXEC | O_NOCTTY, 0644);
    if (fd < 0) fail(kStdioSteps[i]);
    if (fd == i) {
      if (::fcntl(fd, F_SETFD, 0) != 0) fail(kStdioSteps[i]);
    } else {
      if (::dup2(fd, i) < 0) fail(kStdioSteps[i]);
      ::close(fd);
    }
  }

  for (size_t i = 0; i < plan.fds.size(); ++i) {
    // dup2 clears close-on-exec on the new number.
    if (::dup2(plan.tmp_fds[i], plan.fds[i].child_fd) < 0) fail(ChildStep::kMapFds);
  }

  for (auto [lo, hi] : plan.cloexec_ranges) {
    if (::syscall(SYS_close_range, lo, hi, CLOSE_RANGE_CLOEXEC) == 0) continue;
    if (errno != ENOSYS && errno != EINVAL) fail(ChildStep::kCloseFds);
    // Kernels before 5.11: one fcntl per possible fd.
    unsigned last = std::min<unsigned>(hi, static_cast<unsigned>(plan.max_fd));
    for (unsigned fd = lo; fd <= last && fd >= lo; ++fd) {
      ::fcntl(static_cast<int>(fd), F_SETFD, FD_CLOEXEC);  // EBADF for unused numbers
    }
  }

  if (plan.cwd != nullptr && ::chdir(plan.cwd) != 0) fail(ChildStep::kChdir);

  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);

  ::execve(plan.exe.c_str(), plan.argv.data(), plan.envp.data());
  fail(ChildStep::kExec);
  ::_exit(127);  // not reached
}

bool is_executable_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

std::vector<std::string> build_env(const SpawnOptions& o) {
  std::vector<std::string> env;
  auto overridden = [&](std::string_view entry) {
    auto eq = entry.find('=');
    std::string_view key = entry.substr(0, eq);
    for (const auto& name : o.unset_env) {
      if (name == key) return true;
    }
    for (const auto& [k, v] : o.env) {
      if (k == key) return true;
    }
    return false;
  };
  if (o.inherit_env && environ != nullptr) {
    for (char** e = environ; *e != nullptr; ++e) {
      if (!overridden(*e)) env.emplace_back(*e);
    }
  }
  for (const auto& [k, v] : o.env) env.push_back(k + "=" + v);
  return env;
}

Result<std::string> resolve_executable(const std::string& program,
                                       const std::vector<std::string>& env) {
  if (program.empty()) return make_error(ErrorKind::kInvalidArgument, "spawn: empty program name");
  if (program.find('/') != std::string::npos) return program;
  std::string path_var = kDefaultPath;
  for (const auto& e : env) {
    if (e.rfind("PATH=", 0) == 0) path_var = e.substr(5);
  }
  size_t start = 0;
  while (start <= path_var.size()) {
    size_t end = path_var.find(':', start);
    if (end == std::string::npos) end = path_var.size();
    std::string dir = path_var.substr(start, end - start);
    if (dir.empty()) dir = ".";
    std::string candidate = dir + "/" + program;
    if (is_executable_file(candidate)) return candidate;
    start = end + 1;
  }
  return make_error(ErrorKind::kNotFound, "spawn {}: not found in PATH ({})", program, path_var);
}

int decode_status(const siginfo_t& info) {
  if (info.si_code == CLD_EXITED) return info.si_status;
  return -info.si_status;  // CLD_KILLED, CLD_DUMPED
}

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
  if (left.count() <= 0) return 0;
  return static_cast<int>(std::min<int64_t>(left.count(), std::numeric_limits<int>::max()));
}

std::string read_comm(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  std::getline(in, name);
  return name.empty() ? "pid " + std::to_string(pid) : name;
}

}  // namespace

Result<Process> Process::spawn(const SpawnOptions& o) {
  if (o.argv.empty()) return make_error(ErrorKind::kInvalidArgument, "spawn: empty argv");

  auto plan = std::make_unique<ChildPlan>();
  plan->env_storage = build_env(o);
  NYDUS_ASSIGN_OR_RETURN(plan->exe,
                         resolve_executable(o.executable.value_or(o.argv[0]), plan->env_storage));
  plan->argv_storage = o.argv;
  for (auto& a : plan->argv_storage) plan->argv.push_back(a.data());
  plan->argv.push_back(nullptr);
  for (auto& e : plan->env_storage) plan->envp.push_back(e.data());
  plan->envp.push_back(nullptr);
  if (o.working_dir) plan->cwd = o.working_dir->c_str();

  const Redirect* redirects[3] = {&o.stdin_redirect, &o.stdout_redirect, &o.stderr_redirect};
  for (int i = 0; i < 3; ++i) {
    plan->stdio[i] = {redirects[i]->kind, redirects[i]->path.c_str()};
    if (redirects[i]->kind == Redirect::Kind::kFile && redirects[i]->path.empty()) {
      return make_error(ErrorKind::kInvalidArgument, "spawn {}: empty redirect path for fd {}",
                        plan->exe, i);
    }
  }

  std::set<int> targets;
  for (const auto& m : o.fds) {
    if (m.child_fd < 0 || m.child_fd > std::numeric_limits<int>::max() / 2) {
      return make_error(ErrorKind::kInvalidArgument, "spawn {}: bad child fd {}", plan->exe,
                        m.child_fd);
    }
    if (!targets.insert(m.child_fd).second) {
      return make_error(ErrorKind::kInvalidArgument, "spawn {}: child fd {} mapped twice",
                        plan->exe, m.child_fd);
    }
    if (m.child_fd < 3 && redirects[m.child_fd]->kind != Redirect::Kind::kInherit) {
      return make_error(ErrorKind::kInvalidArgument,
                        "spawn {}: child fd {} is both redirected and mapped", plan->exe,
                        m.child_fd);
    }
    if (::fcntl(m.parent_fd, F_GETFD) < 0) {
      return make_error(ErrorKind::kInvalidArgument, "spawn {}: fd {} to pass is not open",
                        plan->exe, m.parent_fd);
    }
  }
  plan->fds = o.fds;
  plan->tmp_fds.assign(o.fds.size(), -1);
  plan->min_high_fd = std::max(3, targets.empty() ? 3 : *targets.rbegin() + 1);
  unsigned lo = 3;
  for (int t : targets) {
    if (t < 3) continue;
    if (static_cast<unsigned>(t) > lo) plan->cloexec_ranges.emplace_back(lo, t - 1);
    lo = static_cast<unsigned>(t) + 1;
  }
  plan->cloexec_ranges.emplace_back(lo, ~0U);
  long open_max = ::sysconf(_SC_OPEN_MAX);
  plan->max_fd = open_max > 0 ? static_cast<int>(std::min<long>(open_max, 1 << 20)) : 1 << 16;
  plan->new_session = o.new_session;
  plan->death_signal = o.parent_death_signal.value_or(0);
  plan->parent_pid = ::getpid();

  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    return Error::from_errno(errno, fmt::format("spawn {}: pipe2", plan->exe));
  }
  UniqueFd err_read(pipe_fds[0]);
  UniqueFd err_write(pipe_fds[1]);

  // Block every signal across the fork: the child must not run our handlers
  // before it resets them.
  sigset_t all, saved;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &saved);

  int pidfd = -1;
  CloneArgs args{};
  args.flags = CLONE_PIDFD;
  args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
  args.exit_signal = SIGCHLD;
  bool via_fork = false;
  long pid = ::syscall(SYS_clone3, &args, sizeof(args));
  if (pid < 0 && (errno == ENOSYS || errno == EPERM)) {
    // clone3 filtered (seccomp profiles answer ENOSYS) or absent: plain fork,
    // then pidfd_open while the child cannot have been reaped by anyone else.
    via_fork = true;
    pid = ::fork();
  }
  if (pid == 0) run_child(*plan, err_write.get());
  int clone_err = errno;
  pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  if (pid < 0) {
    return Error::from_errno(clone_err,
                             fmt::format("spawn {}: {}", plan->exe, via_fork ? "fork" : "clone3"));
  }
  err_write.reset();

  if (via_fork) {
    pidfd = ::pidfd_open(static_cast<pid_t>(pid), 0);
    if (pidfd < 0) {
      int err = errno;
      ::kill(static_cast<pid_t>(pid), SIGKILL);
      ::waitpid(static_cast<pid_t>(pid), nullptr, 0);
      return Error::from_errno(err, fmt::format("spawn {}: pidfd_open", plan->exe));
    }
  }
  Process proc(static_cast<pid_t>(pid), UniqueFd(pidfd), /*is_child=*/true, o.argv[0]);

  // EOF on the error pipe means exec succeeded (close-on-exec closed it).
  ChildReport report{};
  size_t got = 0;
  while (got < sizeof(report)) {
    ssize_t n = ::read(err_read.get(), reinterpret_cast<char*>(&report) + got, sizeof(report) - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  if (got == 0) {
    spdlog::debug("spawned {} as pid {}", plan->exe, pid);
    return proc;
  }
  // The child failed and exits with 127: reap it now (the destructor would
  // kill it first, which is harmless but misleading).
  (void)proc.wait(kReapTimeout);
  if (got < sizeof(report)) {
    return make_error(ErrorKind::kInternal, "spawn {}: truncated report from the child",
                      plan->exe);
  }
  return Error::from_errno(
      report.err,
      fmt::format("spawn {}: {}", plan->exe, child_step_name(static_cast<ChildStep>(report.step))));
}

Result<Process> Process::adopt(pid_t pid) {
  if (pid <= 0) return make_error(ErrorKind::kInvalidArgument, "adopt: bad pid {}", pid);
  int fd = ::pidfd_open(pid, 0);
  if (fd < 0) {
    int err = errno;
    if (err == ESRCH) return make_error(ErrorKind::kNotFound, "adopt: no process {}", pid);
    return Error::from_errno(err, fmt::format("adopt: pidfd_open({})", pid));
  }
  UniqueFd pidfd(fd);
  // waitid on a pidfd succeeds only for our own children; WNOWAIT leaves an
  // exited child unreaped for try_wait().
  siginfo_t info{};
  bool is_child = ::waitid(P_PIDFD, static_cast<id_t>(pidfd.get()), &info,
                           WEXITED | WNOHANG | WNOWAIT) == 0;
  return Process(pid, std::move(pidfd), is_child, read_comm(pid));
}

Process::Process(Process&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      pidfd_(std::move(other.pidfd_)),
      is_child_(other.is_child_),
      detached_(other.detached_),
      status_(std::exchange(other.status_, std::nullopt)),
      name_(std::move(other.name_)) {}

Process& Process::operator=(Process&& other) noexcept {
  if (this != &other) {
    terminate_owned();
    pid_ = std::exchange(other.pid_, -1);
    pidfd_ = std::move(other.pidfd_);
    is_child_ = other.is_child_;
    detached_ = other.detached_;
    status_ = std::exchange(other.status_, std::nullopt);
    name_ = std::move(other.name_);
  }
  return *this;
}

Process::~Process() { terminate_owned(); }

void Process::terminate_owned() noexcept {
  if (!pidfd_ || detached_) {
    pidfd_.reset();
    return;
  }
  try {
    auto st = try_wait();
    if (!st.ok() || !st->has_value()) {
      ::pidfd_send_signal(pidfd_.get(), SIGKILL, nullptr, 0);
      auto waited = wait(kReapTimeout);
      if (!waited.ok()) {
        spdlog::error("process {} (pid {}) did not go away after SIGKILL: {}", name_, pid_,
                      waited.error().message());
      }
    }
  } catch (...) {
    // Logging must not turn a destructor into std::terminate.
  }
  pidfd_.reset();
}

Status Process::kill(int sig) {
  if (!pidfd_) return make_error(ErrorKind::kFailedPrecondition, "kill: empty process handle");
  if (status_ && is_child_) {
    return make_error(ErrorKind::kNotFound, "kill {}: process {} has exited", sig, pid_);
  }
  if (::pidfd_send_signal(pidfd_.get(), sig, nullptr, 0) != 0) {
    int err = errno;
    if (err == ESRCH) {
      return make_error(ErrorKind::kNotFound, "kill {}: process {} has exited", sig, pid_);
    }
    return Error::from_errno(err, fmt::format("kill {} (pid {})", name_, pid_));
  }
  return ok_status();
}

Result<std::optional<int>> Process::try_wait() {
  if (status_) return status_;
  if (!pidfd_) return make_error(ErrorKind::kFailedPrecondition, "wait: empty process handle");
  if (is_child_) {
    siginfo_t info{};
    int rc;
    do {
      rc = ::waitid(P_PIDFD, static_cast<id_t>(pidfd_.get()), &info, WEXITED | WNOHANG);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) return Error::from_errno(errno, fmt::format("waitid {} (pid {})", name_, pid_));
    if (info.si_pid == 0) return std::optional<int>();
    status_ = decode_status(info);
    return status_;
  }
  pollfd pfd{pidfd_.get(), POLLIN, 0};
  int rc = ::poll(&pfd, 1, 0);
  if (rc < 0 && errno != EINTR) return Error::from_errno(errno, "poll(pidfd)");
  if (rc > 0 && (pfd.revents & POLLIN)) status_ = kExitStatusUnknown;
  return status_;
}

Result<int> Process::wait(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    NYDUS_ASSIGN_OR_RETURN(std::optional<int> st, try_wait());
    if (st) return *st;
    int wait_ms = remaining_ms(deadline);
    if (wait_ms == 0) {
      return make_error(ErrorKind::kTimeout, "{} (pid {}) still running after {} ms", name_,
                        pid_, timeout.count());
    }
    pollfd pfd{pidfd_.get(), POLLIN, 0};
    int rc = ::poll(&pfd, 1, wait_ms);
    if (rc < 0 && errno != EINTR) return Error::from_errno(errno, "poll(pidfd)");
  }
}

bool Process::exited() {
  auto st = try_wait();
  return st.ok() && st->has_value();
}

}  // namespace nydus
