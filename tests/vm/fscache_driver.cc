// fscache_driver: the in-VM test driver of fscache mode. Three subcommands:
//
//   daemon  --fscache DIR [--fscache-tag T] [--fscache-threads N] [--config FILE]
//           [--ready-fd FD] [--supervisor SOCK] [--takeover-fd FD] [--read-delay-ms MS]
//       What `nydusd singleton --fscache DIR --config FILE` does, built from
//       the nydus_fscache library: bind /dev/cachefiles on DIR, preload the
//       {"blobs":[BlobCacheEntry...]} of FILE, serve with N workers. With
//       --supervisor it then sends the saved state ({"blobs":[...]}) and a
//       dup of the device fd over SCM_RIGHTS (common/fd_passing.h framing).
//       With --takeover-fd it serves that already bound device instead
//       (failover: re-bind FILE's entries, write `restore`, serve). Writes
//       "ready\n" to FD once serving; on SIGUSR1 writes one line of JSON
//       counters to FD; stops between requests and exits 0 on SIGTERM/SIGINT.
//       --read-delay-ms (test hook) makes every data READ write "inflight"
//       to FD and wait MS before it is served.
//
//   check   --fsid ID [--domain D] --source SRC --mount MNT [--readers N] [--expect-fail]
//       mount(2) EROFS "fsid=ID[,domain_id=D]" at MNT, compare the whole tree
//       with SRC (names, type, mode, uid, gid, size, mtime s+ns, nlink, rdev,
//       symlink targets, xattrs, every content byte with N parallel readers,
//       hard-link structure), unmount. --expect-fail: the mount must fail.
//
//   session --fscache DIR [--fscache-tag T] [--fscache-threads N] --config FILE
//           [--daemon PATH] [--read-delay-ms MS] --check SPEC [--check SPEC]...
//       Plays the supervisor: listens on a socket, starts the daemon as a
//       child (PATH, default this binary), waits for "ready", keeps the state
//       and device fd the daemon saved, runs each check, then SIGTERMs the
//       daemon and requires exit 0 and no READ errors. SPEC is comma-separated
//       key=value: fsid=, domain=, source=, mount=, readers=, and flags
//       remount (unmount, mount again, and require that no READ reached the
//       daemon: the kernel's cache file serves it), keep (leave mounted until
//       the session ends, so later checks run beside it), fail (the mount
//       must fail), failover (while the readers run, SIGKILL the daemon with
//       a READ in flight, start a successor on the held device fd, require
//       every reader to finish with correct data), upgrade (the same with
//       SIGTERM: the daemon drains its in-flight READs and exits 0 first).
//
// The daemon is a separate process, as in production, so mount(2) and the
// readers are served across processes. `nydusd singleton --fscache` is meant
// to replace `daemon` (--daemon PATH; see the integration note in the report
// and nydusd/fscache/service.h).
//
// Exit status: 0 all good; 1 a check failed (the differences are printed);
// 2 usage; 3 setup failed.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "common/log.h"
#include "common/fd_passing.h"
#include "common/process.h"
#include "common/unix_socket.h"
#include "common/unique_fd.h"
#include "nydusd/fscache/blob_entry.h"
#include "nydusd/fscache/registry.h"
#include "nydusd/fscache/service.h"

namespace fs = std::filesystem;
using namespace nydus;
using namespace nydus::fscache;

namespace {

constexpr int kExitCheckFailed = 1;
constexpr int kExitUsage = 2;
constexpr int kExitSetup = 3;
constexpr std::chrono::seconds kDaemonReadyTimeout{30};
constexpr std::chrono::seconds kDaemonStatsTimeout{10};
constexpr std::chrono::seconds kDaemonExitTimeout{20};
constexpr size_t kMaxDiffs = 40;

struct Args {
  std::map<std::string, std::vector<std::string>> opts;
  std::set<std::string> flags;
  std::string get(const std::string& k, const std::string& d = "") const {
    auto it = opts.find(k);
    return it == opts.end() || it->second.empty() ? d : it->second.back();
  }
};

// --key value pairs; keys in `flag_names` take no value.
std::optional<Args> parse_args(int argc, char** argv, int from, const std::set<std::string>& flag_names) {
  Args a;
  for (int i = from; i < argc; ++i) {
    std::string k = argv[i];
    if (k.rfind("--", 0) != 0) return std::nullopt;
    k = k.substr(2);
    if (flag_names.count(k)) {
      a.flags.insert(k);
      continue;
    }
    if (i + 1 >= argc) return std::nullopt;
    a.opts[k].push_back(argv[++i]);
  }
  return a;
}

std::string json_counters(const HandlerMetrics& m, size_t objects) {
  nlohmann::json j = metrics_json(m);
  j["objects"] = objects;
  return j.dump();
}

Status write_line(int fd, const std::string& line) {
  std::string s = line + "\n";
  size_t done = 0;
  while (done < s.size()) {
    ssize_t n = ::write(fd, s.data() + done, s.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Error::from_errno(errno, "write to the ready fd");
    done += size_t(n);
  }
  return ok_status();
}

// ---------------------------------------------------------------------------
// daemon
// ---------------------------------------------------------------------------

// Test hook (--read-delay-ms): a data blob whose every READ announces itself
// ("inflight" on the ready fd) and then takes `delay`, so a test can kill the
// daemon while READs are in flight.
class DelayedSource final : public ObjectSource {
 public:
  DelayedSource(std::shared_ptr<ObjectSource> inner, std::chrono::milliseconds delay, int notify_fd)
      : inner_(std::move(inner)), delay_(delay), notify_fd_(notify_fd) {}
  uint64_t size() const override { return inner_->size(); }
  Status read(uint64_t offset, std::span<uint8_t> out) override {
    if (notify_fd_ >= 0) (void)write_line(notify_fd_, "inflight");
    std::this_thread::sleep_for(delay_);
    return inner_->read(offset, out);
  }
  std::string describe() const override { return inner_->describe() + " (delayed)"; }

 private:
  std::shared_ptr<ObjectSource> inner_;
  std::chrono::milliseconds delay_;
  int notify_fd_;
};

Result<std::vector<BlobEntry>> load_entries(const std::string& path) {
  if (path.empty()) return std::vector<BlobEntry>{};
  std::ifstream in(path);
  if (!in) return make_error(ErrorKind::kNotFound, "cannot read config {}", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_blob_entry_list(ss.str());
}

// The state a supervisor keeps for a successor: the bound entries as JSON
// ({"blobs":[...]}, the singleton --config format) plus the device fd.
std::string saved_state(const BlobRegistry& registry) {
  nlohmann::json blobs = nlohmann::json::array();
  for (const auto& e : registry.list()) blobs.push_back(e.json);
  return nlohmann::json{{"blobs", blobs}}.dump();
}

int run_daemon(const Args& a) {
  const std::string dir = a.get("fscache");
  const int takeover_fd = std::stoi(a.get("takeover-fd", "-1"));
  if (dir.empty() && takeover_fd < 0) return kExitUsage;
  const unsigned threads = unsigned(std::stoul(a.get("fscache-threads", "4")));
  const int ready_fd = std::stoi(a.get("ready-fd", "-1"));
  const int delay_ms = std::stoi(a.get("read-delay-ms", "0"));

  // Signals are taken by sigwait in this thread only; block them before any
  // worker exists so the workers inherit the mask.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  DataBlobFactory factory = default_data_blob_factory();
  if (delay_ms > 0) {
    factory = [inner = factory, delay_ms, ready_fd](const BlobEntry& e, std::shared_ptr<const rafs::Bootstrap> b,
                                                    const rafs::BlobInfo& bi) -> Result<std::shared_ptr<ObjectSource>> {
      NYDUS_ASSIGN_OR_RETURN(auto src, inner(e, std::move(b), bi));
      return std::shared_ptr<ObjectSource>(
          std::make_shared<DelayedSource>(std::move(src), std::chrono::milliseconds(delay_ms), ready_fd));
    };
  }
  BlobRegistry registry(factory);
  auto entries = load_entries(a.get("config"));
  if (!entries.ok()) {
    spdlog::error("daemon: {}", entries.error().message());
    return kExitSetup;
  }

  std::unique_ptr<FscacheService> service;
  if (takeover_fd >= 0) {
    // Failover: the predecessor is gone; its device fd came from the supervisor.
    std::vector<Error> failed;
    auto restored = restore_session(UniqueFd(takeover_fd), *entries, &registry, threads, true, &failed);
    if (!restored.ok() || !failed.empty()) {
      spdlog::error("daemon: takeover failed: {}", restored.ok() ? failed.front().message() : restored.error().message());
      return kExitSetup;
    }
    service = std::move(restored).value();
  } else {
    for (const auto& e : *entries) {
      if (Status st = registry.bind(e); !st.ok()) {
        spdlog::error("daemon: {}", st.error().message());
        return kExitSetup;
      }
    }
    auto device = CachefilesDevice::open_and_bind(dir, a.get("fscache-tag"));
    if (!device.ok()) {
      spdlog::error("daemon: {}", device.error().message());
      return kExitSetup;
    }
    auto created = FscacheService::create(std::move(device).value(), &registry, threads);
    if (!created.ok() || !(*created)->start().ok()) {
      spdlog::error("daemon: cannot start the service");
      return kExitSetup;
    }
    service = std::move(created).value();
  }

  // Hand a dup of the device fd and the entries to the supervisor, which
  // keeps the cache alive across our death (fscache-facts.md §7.1).
  if (std::string sup = a.get("supervisor"); !sup.empty()) {
    auto dup = service->device().dup_fd();
    const std::string state = saved_state(registry);
    Status st = dup.ok() ? connect_and_send_message(
                               sup, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(state.data()), state.size()),
                               std::vector<int>{dup->get()})
                         : Status(dup.error());
    if (!st.ok()) {
      spdlog::error("daemon: saving to the supervisor {}: {}", sup, st.error().message());
      return kExitSetup;
    }
  }
  if (ready_fd >= 0) (void)write_line(ready_fd, "ready");

  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    if (sig == SIGUSR1) {
      if (ready_fd >= 0) {
        (void)write_line(ready_fd, json_counters(service->handler().metrics(), service->handler().object_count()));
      }
      continue;
    }
    break;
  }
  service->stop();
  const std::string counters = json_counters(service->handler().metrics(), service->handler().object_count());
  spdlog::info("daemon: exiting; counters {}", counters);
  return 0;
}

// ---------------------------------------------------------------------------
// tree comparison
// ---------------------------------------------------------------------------
std::map<std::string, std::string> list_xattrs(const std::string& path) {
  std::map<std::string, std::string> out;
  ssize_t n = ::llistxattr(path.c_str(), nullptr, 0);
  if (n <= 0) return out;
  std::string names(size_t(n), '\0');
  n = ::llistxattr(path.c_str(), names.data(), names.size());
  if (n <= 0) return out;
  names.resize(size_t(n));
  for (size_t pos = 0; pos < names.size();) {
    std::string name = names.c_str() + pos;
    pos += name.size() + 1;
    ssize_t v = ::lgetxattr(path.c_str(), name.c_str(), nullptr, 0);
    std::string value(v > 0 ? size_t(v) : 0, '\0');
    if (v > 0) v = ::lgetxattr(path.c_str(), name.c_str(), value.data(), value.size());
    out[name] = v >= 0 ? value.substr(0, size_t(v)) : "<error>";
  }
  return out;
}

std::vector<std::string> list_dir(const std::string& path) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(path, ec)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// Compares contents; empty when equal.
std::string compare_content(const std::string& expected, const std::string& actual) {
  UniqueFd e(::open(expected.c_str(), O_RDONLY | O_CLOEXEC));
  UniqueFd a(::open(actual.c_str(), O_RDONLY | O_CLOEXEC));
  if (!e) return fmt::format("cannot open source: {}", std::strerror(errno));
  if (!a) return fmt::format("cannot open in the mount: {}", std::strerror(errno));
  std::vector<char> be(1 << 20), ba(1 << 20);
  uint64_t off = 0;
  for (;;) {
    ssize_t ne = ::read(e.get(), be.data(), be.size());
    if (ne < 0) return fmt::format("read source at {}: {}", off, std::strerror(errno));
    size_t got = 0;
    while (got < size_t(ne)) {
      ssize_t na = ::read(a.get(), ba.data() + got, size_t(ne) - got);
      if (na < 0) return fmt::format("read mount at {}: {}", off + got, std::strerror(errno));
      if (na == 0) return fmt::format("mount file ends at {}", off + got);
      got += size_t(na);
    }
    if (ne == 0) {
      ssize_t extra = ::read(a.get(), ba.data(), 1);
      return extra > 0 ? fmt::format("mount file longer than {}", off) : "";
    }
    if (std::memcmp(be.data(), ba.data(), size_t(ne)) != 0) {
      size_t i = 0;
      while (be[i] == ba[i]) ++i;
      return fmt::format("content differs at byte {}", off + i);
    }
    off += uint64_t(ne);
  }
}

struct CompareResult {
  std::vector<std::string> diffs;
  uint64_t files = 0;
  uint64_t bytes = 0;
  uint64_t entries = 0;
};

CompareResult compare_trees(const std::string& expected, const std::string& actual, unsigned readers) {
  CompareResult res;
  std::mutex mu;
  auto report = [&](const std::string& rel, const std::string& what) {
    std::lock_guard lock(mu);
    if (res.diffs.size() < kMaxDiffs) res.diffs.push_back("/" + rel + ": " + what);
  };
  std::map<ino_t, ino_t> links, back;
  std::vector<std::pair<std::string, uint64_t>> regular;  // rel path, size
  std::function<void(const std::string&)> visit = [&](const std::string& rel) {
    const std::string e = rel.empty() ? expected : expected + "/" + rel;
    const std::string a = rel.empty() ? actual : actual + "/" + rel;
    res.entries++;
    struct stat se, sa;
    if (::lstat(e.c_str(), &se) != 0) return report(rel, "missing in the source");
    if (::lstat(a.c_str(), &sa) != 0) return report(rel, fmt::format("missing in the mount: {}", std::strerror(errno)));
    auto cmp = [&](const char* field, uint64_t x, uint64_t y) {
      if (x != y) report(rel, fmt::format("{} {:#o}/{} (source) != {:#o}/{} (mount)", field, x, x, y, y));
    };
    cmp("mode", se.st_mode, sa.st_mode);
    cmp("uid", se.st_uid, sa.st_uid);
    cmp("gid", se.st_gid, sa.st_gid);
    cmp("mtime", uint64_t(se.st_mtim.tv_sec), uint64_t(sa.st_mtim.tv_sec));
    cmp("mtime_nsec", uint64_t(se.st_mtim.tv_nsec), uint64_t(sa.st_mtim.tv_nsec));
    cmp("nlink", se.st_nlink, sa.st_nlink);
    if (!S_ISDIR(se.st_mode)) cmp("size", uint64_t(se.st_size), uint64_t(sa.st_size));
    if (S_ISCHR(se.st_mode) || S_ISBLK(se.st_mode)) cmp("rdev", se.st_rdev, sa.st_rdev);
    if (list_xattrs(e) != list_xattrs(a)) report(rel, "xattrs differ");
    if ((se.st_mode & S_IFMT) != (sa.st_mode & S_IFMT)) return;
    if (!S_ISDIR(se.st_mode)) {
      auto [it, added] = links.emplace(se.st_ino, sa.st_ino);
      auto [bit, badded] = back.emplace(sa.st_ino, se.st_ino);
      if (it->second != sa.st_ino || bit->second != se.st_ino) report(rel, "hard-link structure differs");
    }
    if (S_ISLNK(se.st_mode)) {
      std::error_code ec1, ec2;
      if (fs::read_symlink(e, ec1) != fs::read_symlink(a, ec2) || ec1 || ec2) report(rel, "symlink target differs");
    }
    if (S_ISREG(se.st_mode)) regular.emplace_back(rel, uint64_t(se.st_size));
    if (!S_ISDIR(se.st_mode)) return;
    auto ne = list_dir(e), na = list_dir(a);
    if (ne != na) {
      std::set<std::string> sn(ne.begin(), ne.end()), sm(na.begin(), na.end());
      for (const auto& n : ne)
        if (!sm.count(n)) report(rel.empty() ? n : rel + "/" + n, "missing in the mount");
      for (const auto& n : na)
        if (!sn.count(n)) report(rel.empty() ? n : rel + "/" + n, "unexpected in the mount");
    }
    for (const auto& n : ne) {
      if (std::find(na.begin(), na.end(), n) != na.end()) visit(rel.empty() ? n : rel + "/" + n);
    }
  };
  visit("");

  // Contents, by `readers` threads at once (concurrent READs).
  std::atomic<size_t> next{0};
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < std::max(1u, readers); ++t) {
    pool.emplace_back([&] {
      for (size_t i; (i = next.fetch_add(1)) < regular.size();) {
        const auto& [rel, size] = regular[i];
        std::string why = compare_content(expected + "/" + rel, actual + "/" + rel);
        if (!why.empty()) report(rel, why);
      }
    });
  }
  for (auto& t : pool) t.join();
  res.files = regular.size();
  for (const auto& r : regular) res.bytes += r.second;
  return res;
}

// ---------------------------------------------------------------------------
// check
// ---------------------------------------------------------------------------
struct CheckSpec {
  std::string fsid;
  std::string domain;
  std::string source;
  std::string mount;
  unsigned readers = 4;
  bool expect_fail = false;
  bool remount = false;
  bool keep = false;
  bool failover = false;
  bool upgrade = false;
};

std::string mount_options(const CheckSpec& c) {
  return c.domain.empty() ? fmt::format("fsid={}", c.fsid) : fmt::format("fsid={},domain_id={}", c.fsid, c.domain);
}

// Mounts, compares, optionally leaves it mounted. True when as expected.
bool mount_and_compare(const CheckSpec& c, bool unmount) {
  std::error_code ec;
  fs::create_directories(c.mount, ec);
  const std::string opts = mount_options(c);
  const auto t0 = std::chrono::steady_clock::now();
  int rc = ::mount("none", c.mount.c_str(), "erofs", MS_RDONLY, opts.c_str());
  int err = errno;
  const double mount_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (c.expect_fail) {
    if (rc == 0) {
      std::printf("FAIL check %s: the mount succeeded but was expected to fail\n", opts.c_str());
      ::umount2(c.mount.c_str(), 0);
      return false;
    }
    std::printf("ok   check %s: mount failed as expected (%s)\n", opts.c_str(), std::strerror(err));
    return true;
  }
  if (rc != 0) {
    std::printf("FAIL check %s: mount at %s: %s\n", opts.c_str(), c.mount.c_str(), std::strerror(err));
    return false;
  }
  const auto t1 = std::chrono::steady_clock::now();
  CompareResult r = compare_trees(c.source, c.mount, c.readers);
  const double cmp_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  bool ok = r.diffs.empty();
  if (unmount && ::umount2(c.mount.c_str(), 0) != 0) {
    std::printf("FAIL check %s: umount: %s\n", opts.c_str(), std::strerror(errno));
    ok = false;
  }
  std::printf("%s check %s: %lu entries, %lu files, %lu bytes compared with %s (mount %.2fs, compare %.2fs, %u "
              "readers)\n",
              r.diffs.empty() ? "ok  " : "FAIL", opts.c_str(), (unsigned long)r.entries, (unsigned long)r.files,
              (unsigned long)r.bytes, c.source.c_str(), mount_s, cmp_s, c.readers);
  for (const auto& d : r.diffs) std::printf("     %s\n", d.c_str());
  std::fflush(stdout);
  return ok;
}

int run_check(const Args& a) {
  CheckSpec c;
  c.fsid = a.get("fsid");
  c.domain = a.get("domain");
  c.source = a.get("source");
  c.mount = a.get("mount");
  c.readers = unsigned(std::stoul(a.get("readers", "4")));
  c.expect_fail = a.flags.count("expect-fail") != 0;
  if (c.fsid.empty() || c.mount.empty() || (c.source.empty() && !c.expect_fail)) return kExitUsage;
  return mount_and_compare(c, true) ? 0 : kExitCheckFailed;
}

std::optional<CheckSpec> parse_spec(const std::string& spec) {
  CheckSpec c;
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    auto eq = item.find('=');
    std::string k = item.substr(0, eq), v = eq == std::string::npos ? "" : item.substr(eq + 1);
    if (k == "fsid") c.fsid = v;
    else if (k == "domain") c.domain = v;
    else if (k == "source") c.source = v;
    else if (k == "mount") c.mount = v;
    else if (k == "readers") c.readers = unsigned(std::stoul(v));
    else if (k == "remount") c.remount = true;
    else if (k == "keep") c.keep = true;
    else if (k == "fail") c.expect_fail = true;
    else if (k == "failover") c.failover = true;
    else if (k == "upgrade") c.upgrade = true;
    else return std::nullopt;
  }
  if (c.fsid.empty() || c.mount.empty() || (c.source.empty() && !c.expect_fail)) return std::nullopt;
  return c;
}

// ---------------------------------------------------------------------------
// session
// ---------------------------------------------------------------------------
class DaemonLink {
 public:
  DaemonLink(Process p, UniqueFd pipe) : proc_(std::move(p)), pipe_(std::move(pipe)) {}
  // The next line from the daemon, within `timeout`; an error if it exits.
  Result<std::string> next_line(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (auto nl = buf_.find('\n'); nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return line;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return make_error(ErrorKind::kTimeout, "the daemon did not answer within {}ms", timeout.count());
      pollfd fds[2] = {{pipe_.get(), POLLIN, 0}, {proc_.pidfd(), POLLIN, 0}};
      int n = ::poll(fds, 2, int(left.count()));
      if (n < 0 && errno == EINTR) continue;
      if (fds[0].revents & (POLLIN | POLLHUP)) {
        char tmp[4096];
        ssize_t r = ::read(pipe_.get(), tmp, sizeof(tmp));
        if (r > 0) {
          buf_.append(tmp, size_t(r));
          continue;
        }
        if (r == 0) return make_error(ErrorKind::kInternal, "the daemon closed its pipe (exited?)");
      }
      if (fds[1].revents & POLLIN) {
        auto st = proc_.try_wait();
        return make_error(ErrorKind::kInternal, "the daemon exited (status {})",
                          st.ok() && *st ? **st : -1000);
      }
    }
  }
  Process& process() { return proc_; }

 private:
  Process proc_;
  UniqueFd pipe_;
  std::string buf_;
};

// The counters (one JSON line per SIGUSR1); "inflight" lines of a delayed
// daemon in between are skipped.
Result<nlohmann::json> daemon_counters(DaemonLink& d) {
  NYDUS_TRY(d.process().kill(SIGUSR1));
  for (;;) {
    NYDUS_ASSIGN_OR_RETURN(std::string line, d.next_line(kDaemonStatsTimeout));
    if (line == "inflight") continue;
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded()) return make_error(ErrorKind::kCorrupt, "daemon counters: bad line \"{}\"", line);
    return j;
  }
}

// The session plays the supervisor: it listens on a socket, receives each
// daemon's saved state and device fd, and keeps the fd, so a daemon can be
// killed and a successor can take over (fscache-facts.md §7).
class Session {
 public:
  Session(const Args& a, std::string self) : args_(a), self_(std::move(self)) {}

  Status listen() {
    sup_path_ = args_.get("supervisor", "/run/fscache-driver-supervisor.sock");
    ::unlink(sup_path_.c_str());
    NYDUS_ASSIGN_OR_RETURN(listen_fd_, listen_unix(sup_path_));
    return ok_status();
  }

  // Starts a daemon: fresh (binds the cache dir) or taking over the held
  // device fd with the saved state. Waits for "ready", then takes the
  // state and fd it saved.
  Status start_daemon(bool takeover, int read_delay_ms) {
    read_delay_ms_ = read_delay_ms;
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return Error::from_errno(errno, "pipe");
    UniqueFd rd(p[0]), wr(p[1]);
    SpawnOptions so;
    so.argv = {args_.get("daemon", self_), "daemon", "--fscache-threads", args_.get("fscache-threads", "4"),
               "--ready-fd", "3", "--supervisor", sup_path_};
    so.fds = {{wr.get(), 3}};
    if (takeover) {
      const std::string state_path = sup_path_ + ".state.json";
      std::ofstream(state_path) << saved_state_;
      so.argv.insert(so.argv.end(), {"--takeover-fd", "4", "--config", state_path});
      so.fds.push_back({held_device_.get(), 4});
    } else {
      so.argv.insert(so.argv.end(), {"--fscache", args_.get("fscache")});
      if (auto t = args_.get("fscache-tag"); !t.empty()) so.argv.insert(so.argv.end(), {"--fscache-tag", t});
      if (auto c = args_.get("config"); !c.empty()) so.argv.insert(so.argv.end(), {"--config", c});
    }
    if (read_delay_ms > 0) so.argv.insert(so.argv.end(), {"--read-delay-ms", std::to_string(read_delay_ms)});
    so.parent_death_signal = SIGKILL;
    NYDUS_ASSIGN_OR_RETURN(Process proc, Process::spawn(so));
    wr.reset();
    daemon_ = std::make_unique<DaemonLink>(std::move(proc), std::move(rd));
    // A successor may serve redelivered READs (and announce them) before
    // it says ready.
    std::string ready = "inflight";
    while (ready == "inflight") {
      NYDUS_ASSIGN_OR_RETURN(ready, daemon_->next_line(kDaemonReadyTimeout));
    }
    if (ready != "ready") return make_error(ErrorKind::kInternal, "daemon said \"{}\" instead of ready", ready);
    NYDUS_ASSIGN_OR_RETURN(UniqueFd conn, accept_unix(listen_fd_.get(), kDaemonReadyTimeout));
    NYDUS_ASSIGN_OR_RETURN(ReceivedMessage msg, receive_message(conn.get(), kDaemonReadyTimeout));
    if (msg.fds.size() != 1) return make_error(ErrorKind::kCorrupt, "daemon saved {} fds, expected 1", msg.fds.size());
    held_device_ = std::move(msg.fds[0]);
    saved_state_.assign(msg.bytes.begin(), msg.bytes.end());
    std::printf("ok   session: daemon %d %s (state %zu bytes + device fd saved)\n", daemon_->process().pid(),
                takeover ? "took over the cachefiles session" : "bound the cache dir", saved_state_.size());
    std::fflush(stdout);
    return ok_status();
  }

  DaemonLink& daemon() { return *daemon_; }

  // While READs are in flight, ends the daemon: SIGKILL (crash failover) or
  // SIGTERM (hot upgrade: it stops between requests, completes the ones it
  // holds and exits 0). Then starts a successor on the held device fd and
  // requires every reader to finish with correct data.
  bool failover_check(const CheckSpec& c, bool upgrade) {
    const char* what = upgrade ? "upgrade" : "failover";
    // Consume lines the daemon wrote earlier ("inflight" of older READs):
    // everything before the answer to this query.
    (void)daemon_counters(*daemon_);
    std::error_code ec;
    fs::create_directories(c.mount, ec);
    const std::string opts = mount_options(c);
    if (::mount("none", c.mount.c_str(), "erofs", MS_RDONLY, opts.c_str()) != 0) {
      std::printf("FAIL %s %s: mount: %s\n", what, opts.c_str(), std::strerror(errno));
      return false;
    }
    CompareResult result;
    std::thread readers([&] { result = compare_trees(c.source, c.mount, c.readers); });
    // A delayed daemon announces each data READ before serving it.
    bool inflight = false;
    for (;;) {
      auto line = daemon_->next_line(kDaemonReadyTimeout);
      if (!line.ok()) break;
      if (*line == "inflight") {
        inflight = true;
        break;
      }
    }
    const pid_t old_pid = daemon_->process().pid();
    (void)daemon_->process().kill(upgrade ? SIGTERM : SIGKILL);
    auto st = daemon_->process().wait(kDaemonExitTimeout);
    const bool ended_right = st.ok() && *st == (upgrade ? 0 : -SIGKILL);
    std::printf("%s %s %s: daemon %d ended (%s, status %d) with a READ in flight\n",
                inflight && ended_right ? "ok  " : "FAIL", what, opts.c_str(), old_pid, upgrade ? "SIGTERM" : "SIGKILL",
                st.ok() ? *st : -1000);
    std::fflush(stdout);
    const auto t0 = std::chrono::steady_clock::now();
    Status started = start_daemon(/*takeover=*/true, read_delay_ms_);
    if (!started.ok()) std::printf("FAIL %s: successor: %s\n", what, started.error().message().c_str());
    readers.join();
    const double gap = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    bool ok = inflight && ended_right && started.ok() && result.diffs.empty();
    std::printf("%s %s %s: readers finished %.2fs after the signal: %lu files, %lu bytes compared\n",
                result.diffs.empty() ? "ok  " : "FAIL", what, opts.c_str(), gap, (unsigned long)result.files,
                (unsigned long)result.bytes);
    for (const auto& d : result.diffs) std::printf("     %s\n", d.c_str());
    if (::umount2(c.mount.c_str(), 0) != 0) {
      std::printf("FAIL %s %s: umount: %s\n", what, opts.c_str(), std::strerror(errno));
      ok = false;
    }
    if (started.ok()) {
      auto counters = daemon_counters(*daemon_);
      if (counters.ok()) {
        std::printf("     successor counters: %s\n", counters->dump().c_str());
        ok = ok && (*counters)["reads"].get<uint64_t>() > 0;
      }
    }
    std::fflush(stdout);
    return ok;
  }

 private:
  const Args& args_;
  std::string self_;
  std::string sup_path_;
  UniqueFd listen_fd_;
  UniqueFd held_device_;
  std::string saved_state_;
  std::unique_ptr<DaemonLink> daemon_;
  int read_delay_ms_ = 0;
};

int run_session(const Args& a, const std::string& self) {
  const std::string dir = a.get("fscache");
  auto specs_it = a.opts.find("check");
  if (dir.empty() || specs_it == a.opts.end()) return kExitUsage;
  std::vector<CheckSpec> specs;
  for (const auto& s : specs_it->second) {
    auto c = parse_spec(s);
    if (!c) {
      std::fprintf(stderr, "bad --check spec: %s\n", s.c_str());
      return kExitUsage;
    }
    specs.push_back(*c);
  }

  Session session(a, self);
  if (Status st = session.listen(); !st.ok()) {
    std::printf("FAIL session: %s\n", st.error().message().c_str());
    return kExitSetup;
  }
  if (Status st = session.start_daemon(false, std::stoi(a.get("read-delay-ms", "0"))); !st.ok()) {
    std::printf("FAIL session: daemon not ready: %s\n", st.error().message().c_str());
    return kExitSetup;
  }

  bool ok = true;
  std::vector<std::string> kept;
  for (const auto& c : specs) {
    if (c.failover || c.upgrade) {
      ok = session.failover_check(c, c.upgrade) && ok;
      continue;
    }
    if (!mount_and_compare(c, !c.keep && !c.remount)) {
      ok = false;
      continue;
    }
    if (c.keep) kept.push_back(c.mount);
    if (!c.remount || c.expect_fail) continue;
    // Unmount, mount again: the kernel's cache file has every byte now, so
    // the daemon must see OPENs but no READ (fscache-facts.md §2.7).
    if (::umount2(c.mount.c_str(), 0) != 0) {
      std::printf("FAIL remount %s: umount: %s\n", c.fsid.c_str(), std::strerror(errno));
      ok = false;
      continue;
    }
    auto before = daemon_counters(session.daemon());
    bool again = mount_and_compare(c, true);
    auto after = daemon_counters(session.daemon());
    if (!before.ok() || !after.ok()) {
      std::printf("FAIL remount %s: daemon counters unavailable\n", c.fsid.c_str());
      ok = false;
      continue;
    }
    const auto reads = (*after)["reads"].get<uint64_t>() - (*before)["reads"].get<uint64_t>();
    const auto opens = (*after)["opens"].get<uint64_t>() - (*before)["opens"].get<uint64_t>();
    std::printf("%s remount %s: %lu OPEN(s), %lu READ(s) on the second mount\n", reads == 0 && again ? "ok  " : "FAIL",
                c.fsid.c_str(), (unsigned long)opens, (unsigned long)reads);
    ok = ok && again && reads == 0 && opens > 0;
  }
  for (auto it = kept.rbegin(); it != kept.rend(); ++it) {
    if (::umount2(it->c_str(), 0) != 0) {
      std::printf("FAIL umount %s: %s\n", it->c_str(), std::strerror(errno));
      ok = false;
    }
  }

  auto counters = daemon_counters(session.daemon());
  if (counters.ok()) {
    std::printf("     daemon counters: %s\n", counters->dump().c_str());
    for (const char* k : {"read_errors", "read_unknown_object", "malformed"}) {
      if ((*counters)[k].get<uint64_t>() != 0) {
        std::printf("FAIL session: daemon counter %s is not 0\n", k);
        ok = false;
      }
    }
  } else {
    std::printf("FAIL session: %s\n", counters.error().message().c_str());
    ok = false;
  }
  (void)session.daemon().process().kill(SIGTERM);
  auto status = session.daemon().process().wait(kDaemonExitTimeout);
  if (!status.ok() || *status != 0) {
    std::printf("FAIL session: daemon exit status %d\n", status.ok() ? *status : -1000);
    ok = false;
  } else {
    std::printf("ok   session: daemon stopped and exited 0\n");
  }
  std::fflush(stdout);
  return ok ? 0 : kExitCheckFailed;
}

int usage() {
  std::fprintf(stderr,
               "usage: fscache_driver daemon --fscache DIR [--fscache-tag T] [--fscache-threads N] [--config F] "
               "[--ready-fd FD]\n"
               "       fscache_driver check --fsid ID [--domain D] --source SRC --mount MNT [--readers N] "
               "[--expect-fail]\n"
               "       fscache_driver session --fscache DIR [--fscache-tag T] [--fscache-threads N] --config F "
               "[--daemon PATH] --check SPEC...\n");
  return kExitUsage;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  const std::string cmd = argv[1];
  const char* level = std::getenv("NYDUS_LOG_LEVEL");
  (void)init_logging(fmt::format("fscache_driver {}", cmd), parse_log_level(level ? level : "info").ok()
                                                                  ? *parse_log_level(level ? level : "info")
                                                                  : spdlog::level::info);
  auto args = parse_args(argc, argv, 2, {"expect-fail"});
  if (!args) return usage();
  try {
    if (cmd == "daemon") return run_daemon(*args);
    if (cmd == "check") return run_check(*args);
    if (cmd == "session") {
      std::error_code ec;
      const std::string self = fs::read_symlink("/proc/self/exe", ec).string();
      return run_session(*args, ec ? std::string(argv[0]) : self);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fscache_driver: %s\n", e.what());
    return kExitSetup;
  }
  return usage();
}
