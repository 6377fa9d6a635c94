// How the daemon manager starts and finds nydusd processes, behind an
// interface so unit tests can stand in other programs.
//
// Daemons must outlive the snapshotter (the reference's KillMode=process
// requirement): every Process returned here is detach()ed already, so
// dropping a handle, a snapshotter exit or a crash never kills nydusd. The
// manager ends a daemon only by an explicit SIGTERM. Children run in their
// own session, so a terminal's or a process group's signals meant for the
// snapshotter do not reach them, and with no parent-death signal.
//
// Thread safety: implementations are stateless or internally locked.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "common/process.h"
#include "common/result.h"

namespace nydus::snapshotter {

// What `nydusd --version` printed.
struct BinaryVersion {
  std::string version;     // "Version:" line
  std::string git_commit;  // "Git Commit:" line
  // One string for the daemon record: "<version> <git_commit>", trimmed.
  std::string display() const;
};

// Parses the reference's `--version` lines ("Version:", "Git Commit:", ...).
// Output without a "Version:" line is kCorrupt.
Result<BinaryVersion> parse_version_output(const std::string& text);

class DaemonLauncher {
 public:
  virtual ~DaemonLauncher() = default;

  // Starts `binary` with `args` (argv[0] is the binary path), stdout and
  // stderr appended to `output_file` ("" inherits ours). The Process is
  // detached.
  virtual Result<Process> spawn(const std::string& binary, const std::vector<std::string>& args,
                                const std::string& output_file) = 0;

  // Attaches to a running daemon by pid (re-adoption after a restart);
  // kNotFound when no such process exists. The Process is detached.
  virtual Result<Process> adopt(pid_t pid) = 0;

  // The command line of process `pid` (/proc/<pid>/cmdline), for the
  // identity check that guards against a recycled pid. Bounded in time
  // (kTimeout): a wedged process must not wedge recovery.
  virtual Result<std::vector<std::string>> cmdline(pid_t pid) = 0;

  // Runs `binary --version`.
  virtual Result<BinaryVersion> version(const std::string& binary) = 0;
};

// The real one: common/process.h.
class ProcessLauncher final : public DaemonLauncher {
 public:
  Result<Process> spawn(const std::string& binary, const std::vector<std::string>& args,
                        const std::string& output_file) override;
  Result<Process> adopt(pid_t pid) override;
  Result<std::vector<std::string>> cmdline(pid_t pid) override;
  Result<BinaryVersion> version(const std::string& binary) override;
};

// Reads /proc/<pid>/cmdline into its NUL-separated arguments.
Result<std::vector<std::string>> read_proc_cmdline(pid_t pid);

// Whether `cmdline` is a nydusd serving `api_socket`: it carries
// "--apisock <api_socket>" (or "--apisock=<api_socket>", "-A <api_socket>").
// A pid whose command line fails this is not ours, whatever it is.
bool cmdline_serves_api_socket(const std::vector<std::string>& cmdline, const std::string& api_socket);

}  // namespace nydus::snapshotter
