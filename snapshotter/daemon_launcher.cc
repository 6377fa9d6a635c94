#include "snapshotter/daemon_launcher.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <unistd.h>

#include <condition_variable>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include "common/unique_fd.h"

namespace nydus::snapshotter {

namespace {

// `nydusd --version` prints and exits at once; this only bounds a broken binary.
constexpr std::chrono::milliseconds kVersionTimeout{10000};
// A healthy process's command line reads in microseconds.
constexpr std::chrono::milliseconds kCmdlineTimeout{2000};

std::string trim(std::string s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  size_t e = s.find_last_not_of(" \t\r\n");
  if (b == std::string::npos) return {};
  return s.substr(b, e - b + 1);
}

}  // namespace

std::string BinaryVersion::display() const { return trim(version + " " + git_commit); }

Result<BinaryVersion> parse_version_output(const std::string& text) {
  BinaryVersion v;
  bool found = false;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    auto value_of = [&](std::string_view key) -> std::optional<std::string> {
      if (line.rfind(key, 0) != 0) return std::nullopt;
      return trim(line.substr(key.size()));
    };
    if (auto x = value_of("Version:")) {
      v.version = *x;
      found = true;
    } else if (auto y = value_of("Git Commit:")) {
      v.git_commit = *y;
    }
  }
  if (!found) {
    return make_error(ErrorKind::kCorrupt, "no \"Version:\" line in --version output: {}", text.substr(0, 200));
  }
  return v;
}

Result<Process> ProcessLauncher::spawn(const std::string& binary, const std::vector<std::string>& args,
                                       const std::string& output_file) {
  SpawnOptions o;
  o.argv.push_back(binary);
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  o.stdin_redirect = Redirect::null();
  if (!output_file.empty()) {
    // Before nydusd's logger is up (a bad flag, an unreadable config) it
    // writes to stderr; keep that next to its log so a failed start can be
    // explained from the log tail.
    o.stdout_redirect = Redirect::append_to(output_file);
    o.stderr_redirect = Redirect::append_to(output_file);
  }
  o.new_session = true;
  NYDUS_ASSIGN_OR_RETURN(Process p, Process::spawn(o));
  p.detach();
  return p;
}

Result<Process> ProcessLauncher::adopt(pid_t pid) {
  NYDUS_ASSIGN_OR_RETURN(Process p, Process::adopt(pid));
  p.detach();
  return p;
}

Result<std::vector<std::string>> ProcessLauncher::cmdline(pid_t pid) {
  // Reading /proc/<pid>/cmdline takes the target's mmap lock; a wedged
  // process (e.g. a nydusd faulting on its own dead FUSE mount) can block the
  // reader in D state indefinitely. Read on a helper thread and give up after
  // kCmdlineTimeout: an unreadable identity counts as "not ours", so recovery
  // goes on (and never signals that pid). The helper is detached and leaks
  // only if the read never returns.
  struct Shared {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<Result<std::vector<std::string>>> result;
  };
  auto shared = std::make_shared<Shared>();
  std::thread([shared, pid] {
    auto r = read_proc_cmdline(pid);
    std::lock_guard<std::mutex> lock(shared->mu);
    shared->result.emplace(std::move(r));
    shared->cv.notify_all();
  }).detach();
  std::unique_lock<std::mutex> lock(shared->mu);
  if (!shared->cv.wait_for(lock, kCmdlineTimeout, [&] { return shared->result.has_value(); })) {
    return make_error(ErrorKind::kTimeout, "reading /proc/{}/cmdline took over {} ms (process wedged)", pid,
                      kCmdlineTimeout.count());
  }
  return std::move(*shared->result);
}

Result<BinaryVersion> ProcessLauncher::version(const std::string& binary) {
  // The output goes to an anonymous memory file: Process has no capture,
  // --version output is tiny, and no file system needs to be writable (a
  // sandboxed unit may have a read-only /tmp).
  UniqueFd out(::memfd_create("nydusd-version", MFD_CLOEXEC));
  if (!out) return Error::from_errno(errno, "creating a memory file for nydusd --version");
  SpawnOptions o;
  o.argv = {binary, "--version"};
  o.stdin_redirect = Redirect::null();
  o.fds = {{out.get(), 1}, {out.get(), 2}};
  NYDUS_ASSIGN_OR_RETURN(Process p, Process::spawn(o));
  NYDUS_ASSIGN_OR_RETURN(int status, p.wait(kVersionTimeout));
  std::string output(4096, '\0');
  ssize_t n = ::pread(out.get(), output.data(), output.size(), 0);
  output.resize(n > 0 ? static_cast<size_t>(n) : 0);
  if (status != 0) {
    return make_error(ErrorKind::kFailedPrecondition, "{} --version exited with status {}: {}", binary, status,
                      output.substr(0, 200));
  }
  auto v = parse_version_output(output);
  if (!v.ok()) return std::move(v).error().wrap(binary);
  return v;
}

Result<std::vector<std::string>> read_proc_cmdline(pid_t pid) {
  std::string path = fmt::format("/proc/{}/cmdline", pid);
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(ErrorKind::kNotFound, "no process {} ({} unreadable)", pid, path);
  std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> args;
  size_t start = 0;
  while (start < raw.size()) {
    size_t end = raw.find('\0', start);
    if (end == std::string::npos) end = raw.size();
    args.push_back(raw.substr(start, end - start));
    start = end + 1;
  }
  return args;
}

bool cmdline_serves_api_socket(const std::vector<std::string>& cmdline, const std::string& api_socket) {
  for (size_t i = 0; i < cmdline.size(); ++i) {
    const std::string& a = cmdline[i];
    if ((a == "--apisock" || a == "-A") && i + 1 < cmdline.size() && cmdline[i + 1] == api_socket) return true;
    if (a == "--apisock=" + api_socket) return true;
  }
  return false;
}

}  // namespace nydus::snapshotter
