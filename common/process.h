// Child processes owned through a pidfd.
//
// A Process is a move-only handle on one process, holding its pidfd. The
// pidfd makes exit notification an event (poll it: readable once the process
// has exited) and makes signals race-free (pidfd_send_signal never reaches a
// recycled pid).
//
// Ownership is an explicit choice (style habit 3):
//   * By default the handle owns the process: its destructor kills a process
//     that is still running with SIGKILL and reaps it (a child) or waits for
//     its exit notification (an adopted process), bounded by kReapTimeout.
//     Tests rely on this to never leave a process behind, also when a
//     REQUIRE fails and unwinds.
//   * detach() gives that up: the handle still watches the process (pid,
//     pidfd, kill, wait all keep working), but its destructor only closes the
//     pidfd, and the process outlives the handle and this process. Daemons
//     detach so that they survive a snapshotter restart.
//   * Caveat for detached children: a child that exits while this process
//     still runs stays a zombie until somebody reaps it, so an owner that
//     detaches should keep the handle and call try_wait()/wait() when the
//     pidfd becomes readable.
//
// Spawned vs adopted: spawn() creates a child; adopt() attaches to a running
// process by pid (re-adoption after a restart). An adopted process that is
// not our child cannot be reaped and its exit status is unknown: wait() and
// try_wait() report kExitStatusUnknown once the pidfd says it exited.
//
// Exit status encoding (wait, try_wait, exit_status):
//   0..255           the process exited with this code
//   -1..-64          the process was killed by signal -status (SIGKILL: -9),
//                    with or without a core dump
//   kExitStatusUnknown  an adopted non-child exited; its status is lost
//
// Thread safety: a Process is not thread-safe; one owner uses it at a time.
// Reaping: only through the pidfd (waitid(P_PIDFD)), so a handle never reaps
// a process it does not own. Nobody else in the process should call
// wait(-1)/waitpid(-1) or set SIGCHLD to SIG_IGN (which auto-reaps).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <climits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"

namespace nydus {

// Where a standard stream of a child goes.
struct Redirect {
  enum class Kind { kInherit, kNull, kFile };
  Kind kind = Kind::kInherit;
  std::string path;  // kFile: opened for append (created 0644); for stdin, read

  static Redirect inherit() { return {}; }
  static Redirect null() { return {Kind::kNull, {}}; }
  static Redirect append_to(std::string file) { return {Kind::kFile, std::move(file)}; }
};

// An fd of this process to appear in the child as `child_fd`.
struct FdMapping {
  int parent_fd;
  int child_fd;
};

struct SpawnOptions {
  // argv[0] is the program: a path containing '/' is used as is; a bare name
  // is looked up in PATH (the child's PATH if overridden, else ours) before
  // anything is forked. `executable` overrides the program while keeping
  // argv[0] as the name the child sees.
  std::vector<std::string> argv;
  std::optional<std::string> executable;

  // Environment: ours plus `env` overrides (inherit_env = true), or exactly
  // `env` (inherit_env = false). `unset_env` names are removed from ours.
  bool inherit_env = true;
  std::vector<std::pair<std::string, std::string>> env;
  std::vector<std::string> unset_env;

  // Working directory of the child (redirect paths are opened before the
  // chdir, so relative ones are relative to our working directory).
  std::optional<std::string> working_dir;

  Redirect stdin_redirect = Redirect::inherit();
  Redirect stdout_redirect = Redirect::inherit();
  Redirect stderr_redirect = Redirect::inherit();

  // fds handed to the child at the given numbers (their close-on-exec flag is
  // cleared in the child). Every other fd above 2 is closed at exec, whether
  // or not it was close-on-exec here. A mapping onto 0..2 replaces that
  // stream and must not be combined with a redirect of the same stream.
  std::vector<FdMapping> fds;

  // Start the child in a new session (setsid), detached from our terminal and
  // process group, e.g. for daemons that must not get our terminal signals.
  bool new_session = false;

  // Signal the child gets when the thread that spawned it exits
  // (PR_SET_PDEATHSIG). Tests set SIGKILL so that even a crashed test run
  // leaves nothing behind. Note: tied to the spawning *thread*.
  std::optional<int> parent_death_signal;
};

class Process {
 public:
  static constexpr int kExitStatusUnknown = INT_MIN;
  // The longest a destructor waits for a killed process to go away.
  static constexpr std::chrono::milliseconds kReapTimeout{5000};

  // Starts a child. Its pidfd comes from clone3(CLONE_PIDFD) (fork +
  // pidfd_open when clone3 is unavailable, e.g. under a seccomp filter).
  // A failure in the child before exec (redirect, chdir, exec itself) comes
  // back here as an error naming the program and the step, and the child is
  // reaped.
  static Result<Process> spawn(const SpawnOptions& options);

  // Attaches to a running process we may not have spawned (pidfd_open). A
  // pid that does not exist is kNotFound.
  static Result<Process> adopt(pid_t pid);

  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  Process(Process&& other) noexcept;
  // Ends the process currently held (as the destructor would), then takes over.
  Process& operator=(Process&& other) noexcept;
  ~Process();

  pid_t pid() const { return pid_; }
  // Pollable: readable once the process has exited (POLLIN). Stays owned by
  // the handle.
  int pidfd() const { return pidfd_.get(); }
  bool is_child() const { return is_child_; }
  bool detached() const { return detached_; }
  // The program name, for messages.
  const std::string& name() const { return name_; }

  // Sends `sig` through the pidfd. kNotFound once the process is gone
  // (reaped, or an adopted process that exited).
  Status kill(int sig);

  // Non-blocking: nullopt while the process runs, else its exit status (see
  // the encoding above). Reaps a child; the status is remembered.
  Result<std::optional<int>> try_wait();

  // Waits up to `timeout` for the process to exit (kTimeout if it does not)
  // and returns its exit status.
  Result<int> wait(std::chrono::milliseconds timeout);

  // Whether the process has exited (reaping a child as try_wait does).
  bool exited();

  // The exit status once known.
  std::optional<int> exit_status() const { return status_; }

  // Let the process outlive this handle (see the header comment).
  void detach() { detached_ = true; }

 private:
  Process(pid_t pid, UniqueFd pidfd, bool is_child, std::string name)
      : pid_(pid), pidfd_(std::move(pidfd)), is_child_(is_child), name_(std::move(name)) {}

  // Kill-and-reap of the destructor and move assignment.
  void terminate_owned() noexcept;

  pid_t pid_ = -1;
  UniqueFd pidfd_;
  bool is_child_ = false;
  bool detached_ = false;
  std::optional<int> status_;
  std::string name_;
};

}  // namespace nydus
