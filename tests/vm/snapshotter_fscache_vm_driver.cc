// snapshotter_fscache_vm_driver: runs inside the fscache test VM (as root,
// see vm_harness.h) and drives the REAL containerd-nydus-grpc in fscache mode
// the way containerd does, with the kernel's EROFS over fscache and overlayfs
// as the clients:
//
//   snapshotter_fscache_vm_driver SCENARIO.json
//
//   {"snapshotter": "<containerd-nydus-grpc>", "nydusd": "<nydusd>",
//    "nydusd_upgrade": "<a copy of nydusd>",
//    "root": "/run/cache/snap",           on ext4 (each run's cachefiles dir is <root>/<run>/cache/fscache)
//    "blobs": "<dir of the images' blobs>",
//    "read_delay_ms": N,                   NYDUS_TEST_FSCACHE_READ_DELAY_MS of the snapshotter (nydusd inherits it)
//    "readers": 4,                         byte-verifying reader threads per rootfs
//    "images": [{"name", "boot", "source"}, ...],   at least two
//    "runs": ["main", "standby", "readopt", "restart"]}   optional: which runs, in order (default all)
//
// Each run is a fresh snapshotter on a fresh root <root>/<run> (a fresh
// cachefiles dir and cache: the first reads need READs again); the previous
// run's snapshotter and nydusd were stopped by pid. Every run starts with
// the phases start, pull and prepare and ends with remove and stop; each
// phase and run is timed; every check prints "ok   ..." or "FAIL ...".
//
//   start     the snapshotter as our child, config: fs_driver = "fscache",
//             the run's recover_policy (and hot_standby), [system] enabled,
//             the nydusd config template with the localfs backend on `blobs`.
//   pull      per image, as containerd's unpacker: Prepare of the data layer
//             (nydus-blob label: committed at once, AlreadyExists), Prepare of
//             the meta layer, image/image.boot written into its upper dir,
//             Commit.
//   prepare   per image, a rootfs snapshot over the meta layer: an overlay
//             whose lowest lowerdir is <root>/snapshots/<id>/mnt, an EROFS
//             mount "fsid=..." made by the snapshotter; the overlay is mounted.
//             One daemon (system.sock GET /api/v1/daemons: fs_driver fscache,
//             RUNNING), a `nydusd singleton --fscache <root>/cache/fscache
//             --id .. --supervisor ..`, one blob entry per image in its GET
//             /api/v2/blobs.
//   remove    overlays unmounted, the snapshots removed, Cleanup: the EROFS
//             mounts are gone from /proc/self/mountinfo and the daemon's GET
//             /api/v2/blobs lists nothing.
//   stop      SIGTERM to the snapshotter (exit status 0); then every nydusd
//             it started is killed by pid (only after /proc/<pid>/cmdline
//             showed it is one of this root's).
//
// main (recover_policy failover):
//   failover  readers of the first image's rootfs (a fresh cache: their
//             first pass needs READs); once nydusd serves a READ, kill -9;
//             the snapshotter's successor (`nydusd singleton --upgrade`, same
//             --id and --supervisor) must show up in GET /api/v1/daemons with
//             a new pid, RUNNING and recovery_count + 1.
//   upgrade   readers of the second image's rootfs start (its data was never
//             read: READs again); once one is in flight, PUT
//             /api/v1/nydusd/upgrade {"nydusd_path": a copy of nydusd}: 200,
//             a new pid running the copy.
//   verify    every reader goes on until it has made two more full passes;
//             ZERO errors (every byte of every file compared with the source
//             tree, each file's page cache dropped after it was checked);
//             the rootfs trees compared with their sources (attributes too).
// standby (failover, hot_standby = true):
//   standby   the standby shows up (<root>/socket/<daemon id>/standby.pid: a
//             live `nydusd singleton --upgrade` in state INIT on that file's
//             api socket); readers of the second image; kill -9 of nydusd
//             with a READ in flight: the new serving pid is the standby's;
//             then a new standby (another pid) shows up; the readers make one
//             more full pass: ZERO errors.
// readopt (failover):
//   readopt   readers of the second image run; kill -9 of the SNAPSHOTTER
//             (a READ in flight) and a restart on the same root and config:
//             it re-adopts the live nydusd (same pid, RUNNING, the same
//             bindings and EROFS mounts) and has it save its state and
//             /dev/cachefiles fd again (nydusd's "saves" + 1); the readers
//             make one more full pass: ZERO errors; then they stop (their
//             data is cached: no more READs).
//   failover  as in main, after the re-adoption: readers of the first image
//             (READs); kill -9 of nydusd; a successor takes over; the readers
//             make one more full pass: ZERO errors.
// restart (recover_policy restart; the snapshotter runs with nydusd's
// NYDUS_TEST_FSCACHE_OPEN_DELAY_FILE hook, the file written only here):
//   restart   readers of the first image's rootfs; kill -9 of nydusd with a
//             READ in flight: those readers fail by nature (the old mounts
//             die with the old /dev/cachefiles fd; their errors are only
//             counted) and are stopped. The fresh nydusd the snapshotter
//             starts answers OPENs 5 s late: once its GET /api/v1/daemon
//             counts one (a re-mount's mount(2) waits for it, under the
//             daemon's operation mutex), it is killed too and the delay
//             lifted. Within 30 s a third `nydusd singleton` (new pid, no
//             --upgrade, same --id) serves, and the snapshotter's log shows
//             it failed the waiting re-mount; every instance mountpoint is
//             an EROFS mount again with a NEW fsid, and the new daemon's GET
//             /api/v2/blobs lists exactly those. A snapshotter stuck in that
//             mount(2) never gets there: the check fails, bounded.
//   new       per image, a NEW container (Prepare c2-<image>, mounted fresh):
//             readers make a full pass, ZERO errors; the tree compared.
//   remove    both generations of containers go, then the images.
//
// A failed switch leaves readers blocked in the kernel (a READ nobody
// completes waits, killably): the driver then reports, kills what it started
// and ends with _Exit instead of joining them.
//
// Exit status: 0 all good, 1 a check failed, 2 usage, 3 setup.
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "common/http.h"
#include "common/mount.h"
#include "common/process.h"
#include "common/unique_fd.h"
#include "common/unix_socket.h"
#include "tests/support/snapshots_grpc_client.h"
#include "tests/support/tree_compare.h"
#include "tests/vm/vm_driver_support.h"

namespace fs = std::filesystem;
using namespace nydus;
using nydus::snapshotter::Labels;
using nydus::snapshotter::Mount;
using nydus::snapshotter::testing::GrpcClient;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

using namespace nydus::testing::vm;

namespace {

// TCG emulation is slow: generous bounds, never hit when things work.
constexpr std::chrono::seconds kStartDeadline{60};
constexpr std::chrono::seconds kSwitchDeadline{60};
constexpr std::chrono::seconds kInFlightDeadline{60};
constexpr std::chrono::seconds kPassDeadline{90};
constexpr std::chrono::seconds kExitDeadline{30};
constexpr std::chrono::seconds kApiTimeout{60};
constexpr std::chrono::seconds kUpgradeTimeout{120};
constexpr std::chrono::milliseconds kPoll{20};
// restart: how long the OPENs of the restarted nydusd wait (its test hook),
// and how soon after that nydusd's kill in the re-mount a third must serve
// (a snapshotter stuck in the re-mount never gets there).
constexpr int kOpenDelayMs = 5000;
constexpr std::chrono::seconds kRemountDeadline{30};
// One request of a poll that must not hang with the snapshotter.
constexpr std::chrono::seconds kPollRequestTimeout{2};

// Where things go in the VM (tmpfs /run; the root is on the ext4 disk).
const std::string kGrpcSocket = "/run/snap-grpc.sock";
const std::string kSystemSocket = "/run/snap-system.sock";
const std::string kWork = "/run/tmp/snap";  // <kWork>/<run>/: the run's config and logs

bool g_ok = true;

void result(bool ok, const std::string& line) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", line.c_str());
  std::fflush(stdout);
  if (!ok) g_ok = false;
}

void note(const std::string& line) {
  std::printf("     %s\n", line.c_str());
  std::fflush(stdout);
}

double secs(Clock::time_point since) { return std::chrono::duration<double>(Clock::now() - since).count(); }

std::vector<std::string> proc_cmdline(pid_t pid) {
  std::string raw = read_text(fmt::format("/proc/{}/cmdline", pid));
  std::vector<std::string> args;
  size_t start = 0;
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == '\0') {
      args.push_back(raw.substr(start, i - start));
      start = i + 1;
    }
  }
  return args;
}

// The value after `flag` in a command line, "" when absent.
std::string flag_value(const std::vector<std::string>& args, const std::string& flag) {
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == flag) return args[i + 1];
  }
  return "";
}

bool has_arg(const std::vector<std::string>& args, const std::string& arg) {
  return std::find(args.begin(), args.end(), arg) != args.end();
}

// The first line of `text` that contains `needle`; "" when none does.
std::string line_with(const std::string& text, const std::string& needle) {
  const size_t at = text.find(needle);
  if (at == std::string::npos) return "";
  const size_t begin = text.rfind('\n', at);
  const size_t start = begin == std::string::npos ? 0 : begin + 1;
  return text.substr(start, text.find('\n', at) - start);
}

bool alive(pid_t pid) {
  // A zombie counts as gone (its parent, the snapshotter, reaps it).
  std::string stat = read_text(fmt::format("/proc/{}/stat", pid));
  if (stat.empty()) return false;
  auto close = stat.rfind(')');
  return close == std::string::npos || close + 2 >= stat.size() || stat[close + 2] != 'Z';
}

// ---------------------------------------------------------------------------
// The files of a source tree, read once (the readers compare with memory,
// not with the 9p source again).

struct ExpectedFile {
  std::string rel;
  std::string bytes;
};

std::vector<ExpectedFile> load_expected(const fs::path& source) {
  std::vector<ExpectedFile> files;
  for (auto it = fs::recursive_directory_iterator(source); it != fs::recursive_directory_iterator(); ++it) {
    if (it->is_symlink() || !it->is_regular_file()) continue;
    files.push_back({it->path().lexically_relative(source).string(), read_text(it->path().string())});
  }
  std::sort(files.begin(), files.end(), [](const auto& a, const auto& b) { return a.rel < b.rel; });
  return files;
}

// N threads reading every file of a rootfs in a loop, each starting at a
// different file, comparing every byte, dropping the file's page cache after
// checking it (so later passes go through overlayfs and EROFS to the cache
// file again).
class Readers {
 public:
  Readers(std::string name, fs::path rootfs, const std::vector<ExpectedFile>& files, unsigned n)
      : name_(std::move(name)), rootfs_(std::move(rootfs)), files_(files), stats_(n) {}
  ~Readers() { stop_and_join(); }

  void start() {
    for (unsigned i = 0; i < stats_.size(); ++i) threads_.emplace_back([this, i] { run(i); });
  }
  void stop_and_join() {
    stop_ = true;
    for (auto& t : threads_) t.join();
    threads_.clear();
  }
  // Stops and joins them; false (nothing joined) when one is still inside a
  // read after `deadline`: blocked in the kernel, the caller must not join.
  bool stop_within(std::chrono::seconds deadline) {
    stop_ = true;
    for (const auto end = Clock::now() + deadline; finished_.load() < threads_.size();) {
      if (Clock::now() >= end) return false;
      std::this_thread::sleep_for(kPoll);  // bounded by the deadline
    }
    stop_and_join();
    return true;
  }

  std::vector<uint64_t> passes() const {
    std::vector<uint64_t> out;
    for (const auto& s : stats_) out.push_back(s.passes.load());
    return out;
  }
  // Whether every reader has completed `more` passes beyond `base`.
  bool made_passes(const std::vector<uint64_t>& base, uint64_t more) const {
    for (size_t i = 0; i < stats_.size(); ++i) {
      if (stats_[i].passes.load() < base[i] + more) return false;
    }
    return true;
  }
  // Waits until every reader has completed `more` passes beyond `base`.
  bool wait_passes(const std::vector<uint64_t>& base, uint64_t more, std::chrono::seconds deadline) {
    const auto end = Clock::now() + deadline;
    while (Clock::now() < end) {
      if (made_passes(base, more)) return true;
      if (errors() > 0) return false;
      std::this_thread::sleep_for(kPoll);  // bounded by the deadline
    }
    return false;
  }

  uint64_t errors() const {
    uint64_t n = 0;
    for (const auto& s : stats_) n += s.errors.load();
    return n;
  }
  std::string summary() const {
    uint64_t files = 0, bytes = 0, max_ms = 0;
    std::vector<uint64_t> passes;
    for (const auto& s : stats_) {
      files += s.files.load();
      bytes += s.bytes.load();
      max_ms = std::max<uint64_t>(max_ms, s.max_file_ms.load());
      passes.push_back(s.passes.load());
    }
    return fmt::format("{}: {} readers, {} files ({:.1f} MiB) verified, passes per reader [{}], {} errors, "
                       "slowest file {} ms",
                       name_, stats_.size(), files, double(bytes) / (1 << 20), fmt::join(passes, ","), errors(),
                       max_ms);
  }
  std::vector<std::string> error_messages() {
    std::lock_guard lock(mu_);
    return messages_;
  }
  const std::string& name() const { return name_; }

 private:
  struct Stats {
    std::atomic<uint64_t> files{0}, bytes{0}, passes{0}, errors{0}, max_file_ms{0};
  };

  void fail(unsigned i, const std::string& what) {
    stats_[i].errors.fetch_add(1);
    {
      std::lock_guard lock(mu_);
      if (messages_.size() < 20) messages_.push_back(fmt::format("{} reader {}: {}", name_, i, what));
    }
    // A failing mount fails at once: do not spin the VM's only CPU.
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }

  void run(unsigned i) {
    std::vector<char> buf(1 << 20);
    const size_t n = files_.size();
    size_t next = i * n / stats_.size();
    while (!stop_) {
      for (size_t k = 0; k < n && !stop_; ++k) {
        const ExpectedFile& f = files_[(next + k) % n];
        const auto t0 = Clock::now();
        check_file(i, f, buf);
        const auto ms = uint64_t(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count());
        uint64_t prev = stats_[i].max_file_ms.load();
        while (ms > prev && !stats_[i].max_file_ms.compare_exchange_weak(prev, ms)) {
        }
        stats_[i].files.fetch_add(1);
        if (k + 1 == n) stats_[i].passes.fetch_add(1);
      }
      next = (next + 1) % n;
    }
    finished_.fetch_add(1);
  }

  void check_file(unsigned i, const ExpectedFile& f, std::vector<char>& buf) {
    const std::string path = (rootfs_ / f.rel).string();
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return fail(i, fmt::format("open {}: {}", f.rel, std::strerror(errno)));
    uint64_t off = 0;
    for (;;) {
      ssize_t got = ::read(fd.get(), buf.data(), buf.size());
      if (got < 0) {
        if (errno == EINTR) continue;
        return fail(i, fmt::format("read {} at {}: {}", f.rel, off, std::strerror(errno)));
      }
      if (got == 0) break;
      if (off + uint64_t(got) > f.bytes.size()) {
        return fail(i, fmt::format("{}: more than {} bytes", f.rel, f.bytes.size()));
      }
      if (std::memcmp(buf.data(), f.bytes.data() + off, size_t(got)) != 0) {
        size_t at = 0;
        while (buf[at] == f.bytes[off + at]) ++at;
        return fail(i, fmt::format("{}: bytes differ at offset {}", f.rel, off + at));
      }
      off += uint64_t(got);
      stats_[i].bytes.fetch_add(uint64_t(got));
    }
    if (off != f.bytes.size()) return fail(i, fmt::format("{}: {} bytes, want {}", f.rel, off, f.bytes.size()));
    (void)::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED);
  }

  const std::string name_;
  const fs::path rootfs_;
  const std::vector<ExpectedFile>& files_;
  std::vector<Stats> stats_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stop_{false};
  std::atomic<size_t> finished_{0};  // threads that returned
  std::mutex mu_;
  std::vector<std::string> messages_;  // guarded by mu_
};

// ---------------------------------------------------------------------------

// A container's rootfs: a snapshot over an image's meta layer, its overlay
// mounted by the driver.
struct Container {
  std::string key;        // the snapshot key: c-<image>, c2-<image>
  std::string rootfs;     // where the driver mounts the overlay
  std::string erofs_mnt;  // the overlay's lowest lowerdir (the snapshotter's EROFS mount)
  bool mounted = false;
  std::unique_ptr<Readers> readers;
};

struct Image {
  std::string name, boot, source;
  std::vector<ExpectedFile> files;
  std::vector<std::unique_ptr<Container>> containers;  // of the current run, in Prepare order
  Container& first() { return *containers.front(); }
};

// A snapshotter run on the root <root>/<name>.
struct RunSpec {
  std::string name;
  std::string recover_policy;
  bool hot_standby = false;
};

const std::vector<RunSpec> kRuns = {{"main", "failover", false},
                                    {"standby", "failover", true},
                                    {"readopt", "failover", false},
                                    {"restart", "restart", false}};

class Driver {
 public:
  explicit Driver(const json& s)
      : snapshotter_bin_(s.value("snapshotter", "")),
        nydusd_bin_(s.value("nydusd", "")),
        nydusd_upgrade_bin_(s.value("nydusd_upgrade", "")),
        base_root_(s.value("root", "")),
        blobs_(s.value("blobs", "")),
        read_delay_ms_(s.value("read_delay_ms", 0)),
        readers_(s.value("readers", 4u)) {
    for (const auto& i : s.value("images", json::array())) {
      auto img = std::make_unique<Image>();
      img->name = i.value("name", "");
      img->boot = i.value("boot", "");
      img->source = i.value("source", "");
      images_.push_back(std::move(img));
    }
    for (const auto& r : s.value("runs", json::array())) run_names_.push_back(r.get<std::string>());
    if (run_names_.empty()) {
      for (const auto& r : kRuns) run_names_.push_back(r.name);
    }
  }

  int run() {
    if (images_.size() < 2 || base_root_.empty() || snapshotter_bin_.empty() || nydusd_bin_.empty() ||
        nydusd_upgrade_bin_.empty()) {
      std::printf("FAIL scenario: needs snapshotter, nydusd, nydusd_upgrade, root and two images\n");
      return kExitUsage;
    }
    std::vector<const RunSpec*> runs;
    for (const auto& name : run_names_) {
      auto it = std::find_if(kRuns.begin(), kRuns.end(), [&](const RunSpec& r) { return r.name == name; });
      if (it == kRuns.end()) {
        std::printf("FAIL scenario: unknown run \"%s\"\n", name.c_str());
        return kExitUsage;
      }
      runs.push_back(&*it);
    }
    for (const auto& img : images_) {
      img->files = load_expected(img->source);
      if (img->files.empty()) {
        std::printf("FAIL %s: no files in %s\n", img->name.c_str(), img->source.c_str());
        return kExitSetup;
      }
    }
    int rc = 0;
    std::vector<std::string> timings;
    for (const RunSpec* spec : runs) {
      const auto t0 = Clock::now();
      const int r = run_one(*spec);
      timings.push_back(fmt::format("{} {:.2f}s{}", spec->name, secs(t0), r == 0 ? "" : " FAILED"));
      std::printf("==== run %-8s %6.2fs %s\n", spec->name.c_str(), secs(t0), r == 0 ? "ok" : "FAILED");
      if (rc == 0) rc = r;
    }
    std::printf("snapshotter fscache driver: %s (runs: %s)\n", rc == 0 ? "PASSED" : "FAILED",
                fmt::format("{}", fmt::join(timings, ", ")).c_str());
    std::fflush(stdout);
    return rc;
  }

 private:
  // One snapshotter run, from a fresh root to the stop of what it started.
  int run_one(const RunSpec& spec) {
    begin(spec);
    std::printf("==== run %s: root %s, recover_policy %s%s\n", spec.name.c_str(), root_.c_str(),
                spec.recover_policy.c_str(), spec.hot_standby ? ", hot_standby" : "");
    std::fflush(stdout);
    if (!phase("start", [&] { return start(); })) return finish(kExitSetup);
    if (!phase("pull", [&] { return pull_all(); })) return finish(kExitCheckFailed);
    if (!phase("prepare", [&] { return prepare_all(); })) return finish(kExitCheckFailed);
    // From here on a failed check does not stop the run (a failed switch
    // does, see fatal()): the later phases still say what they see.
    bool ok = true;
    if (spec.name == "main") {
      ok = phase("failover", [&] { return failover("the failover"); }) && ok;
      ok = phase("upgrade", [&] { return upgrade(); }) && ok;
      ok = phase("verify", [&] { return verify(); }) && ok;
    } else if (spec.name == "standby") {
      ok = phase("standby", [&] { return standby(); }) && ok;
    } else if (spec.name == "readopt") {
      ok = phase("readopt", [&] { return readopt(); }) && ok;
      ok = phase("failover", [&] { return failover("the failover after the re-adoption"); }) && ok;
    } else if (spec.name == "restart") {
      ok = phase("restart", [&] { return restart(); }) && ok;
      ok = phase("new", [&] { return new_containers(); }) && ok;
    }
    ok = phase("remove", [&] { return remove_all(); }) && ok;
    return finish(ok ? 0 : kExitCheckFailed);
  }

  void begin(const RunSpec& spec) {
    run_ = spec;
    root_ = base_root_ + "/" + spec.name;
    work_ = kWork + "/" + spec.name;
    log_dir_ = work_ + "/logs";
    // nydusd's OPEN-delay hook, armed by restart() through this file.
    open_delay_file_ = spec.name == "restart" ? work_ + "/open-delay-ms" : "";
    snapshotter_.reset();
    client_.reset();
    nydusd_pids_.clear();
    first_id_.clear();
    first_supervisor_.clear();
    snapshotter_status_ = -1000;
    fates_ = "none";
    for (auto& img : images_) img->containers.clear();
    g_ok = true;
  }

  template <typename F>
  bool phase(const char* name, F&& body) {
    const auto t0 = Clock::now();
    const bool was_ok = g_ok;
    g_ok = true;
    const bool ok = body() && g_ok;
    g_ok = was_ok && ok;
    std::printf("---- phase %-8s %6.2fs %s\n", name, secs(t0), ok ? "ok" : "FAILED");
    std::fflush(stdout);
    return ok;
  }

  // ---- the snapshotter ----------------------------------------------------

  // Starts the snapshotter on the run's root (again, after a kill -9: same
  // root and config) and waits until it serves both sockets.
  bool start() {
    std::error_code ec;
    fs::create_directories(log_dir_, ec);
    fs::create_directories(root_, ec);
    // The v1 fusedev template the integration tests use; the snapshotter
    // turns it into each instance's fscache BlobCacheEntry.
    const std::string tmpl = work_ + "/nydusd-config.json";
    std::ofstream(tmpl) << json{{"device",
                                 {{"backend", {{"type", "localfs"}, {"config", {{"dir", blobs_}}}}},
                                  {"cache", {{"type", "blobcache"}, {"config", {{"work_dir", "/replaced"}}}}}}},
                                {"mode", "direct"},
                                {"digest_validate", true}}
                                .dump(2);
    config_ = work_ + "/config.toml";
    std::ofstream(config_) << "version = 1\n"
                           << "root = \"" << root_ << "\"\n"
                           << "address = \"" << kGrpcSocket << "\"\n"
                           << "[daemon]\n"
                           << "fs_driver = \"fscache\"\n"
                           << "recover_policy = \"" << run_.recover_policy << "\"\n"
                           << "hot_standby = " << (run_.hot_standby ? "true" : "false") << "\n"
                           << "nydusd_path = \"" << nydusd_bin_ << "\"\n"
                           << "nydusd_config = \"" << tmpl << "\"\n"
                           << "threads_number = 4\n"
                           << "[system]\nenable = true\naddress = \"" << kSystemSocket << "\"\n"
                           << "[log]\nlevel = \"info\"\ndir = \"" << log_dir_ << "\"\n";
    SpawnOptions so;
    so.argv = {snapshotter_bin_, "--config", config_};
    so.stdout_redirect = Redirect::append_to(log_dir_ + "/snapshotter.stdout.log");
    so.stderr_redirect = Redirect::append_to(log_dir_ + "/snapshotter.stdout.log");
    so.parent_death_signal = SIGKILL;
    if (read_delay_ms_ > 0) so.env.emplace_back("NYDUS_TEST_FSCACHE_READ_DELAY_MS", std::to_string(read_delay_ms_));
    if (!open_delay_file_.empty()) so.env.emplace_back("NYDUS_TEST_FSCACHE_OPEN_DELAY_FILE", open_delay_file_);
    auto p = Process::spawn(so);
    if (!p.ok()) {
      result(false, fmt::format("spawn {}: {}", snapshotter_bin_, p.error().message()));
      return false;
    }
    snapshotter_ = std::make_unique<Process>(std::move(*p));
    const auto t0 = Clock::now();
    bool up = false;
    while (Clock::now() - t0 < kStartDeadline && !snapshotter_->exited()) {
      if (connect_unix(kGrpcSocket, std::chrono::milliseconds(200)).ok() &&
          connect_unix(kSystemSocket, std::chrono::milliseconds(200)).ok()) {
        up = true;
        break;
      }
      std::this_thread::sleep_for(kPoll);  // bounded by the deadline
    }
    result(up, fmt::format("containerd-nydus-grpc {} serves {} and {} ({:.2f}s; fs_driver fscache, {}{}, "
                           "read delay {} ms)",
                           snapshotter_->pid(), kGrpcSocket, kSystemSocket, secs(t0), run_.recover_policy,
                           run_.hot_standby ? ", hot standby" : "", read_delay_ms_));
    if (!up) return false;
    client_ = std::make_unique<GrpcClient>(kGrpcSocket);
    return true;
  }

  // ---- containerd's side ----------------------------------------------------

  bool pull(Image& img) {
    const std::string data = img.name + "-data";
    auto lazy = client_->prepare("extract-" + data, "",
                                 {{"containerd.io/snapshot.ref", data}, {"containerd.io/snapshot/nydus-blob", "true"}});
    result(!lazy.ok() && lazy.error().kind() == ErrorKind::kAlreadyExists,
           fmt::format("{}: data layer committed without unpack ({})", img.name,
                       lazy.ok() ? "Prepare succeeded" : lazy.error().message()));
    auto mounts = client_->prepare("extract-" + img.name, data,
                                   {{"containerd.io/snapshot.ref", img.name},
                                    {"containerd.io/snapshot/nydus-bootstrap", "true"}});
    if (!mounts.ok() || mounts->empty()) {
      result(false, fmt::format("{}: Prepare of the meta layer: {}", img.name,
                                mounts.ok() ? "no mounts" : mounts.error().message()));
      return false;
    }
    // An unpack gets native mounts; the layer's only file goes into its upper dir.
    std::string upper = mounts->at(0).type == "bind" ? mounts->at(0).source : "";
    for (const auto& o : mounts->at(0).options) {
      if (o.rfind("upperdir=", 0) == 0) upper = o.substr(9);
    }
    std::error_code ec;
    fs::create_directories(fs::path(upper) / "image", ec);
    fs::copy_file(img.boot, fs::path(upper) / "image/image.boot", ec);
    if (upper.empty() || ec) {
      result(false, fmt::format("{}: writing image/image.boot into '{}': {}", img.name, upper, ec.message()));
      return false;
    }
    Status st = client_->commit(img.name, "extract-" + img.name);
    result(st.ok(), fmt::format("{}: meta layer committed{}", img.name, st.ok() ? "" : ": " + st.error().message()));
    return st.ok();
  }

  bool pull_all() {
    for (auto& img : images_) {
      if (!pull(*img)) return false;
    }
    return true;
  }

  std::optional<MountInfo> mount_at(const std::string& path) {
    auto infos = read_mountinfo();
    if (!infos.ok()) return std::nullopt;
    for (const auto& m : *infos) {
      if (m.mount_point == path) return m;
    }
    return std::nullopt;
  }

  // The fsid= of the EROFS mount at `path`; "" when there is none.
  std::string erofs_fsid(const std::string& path) {
    auto info = mount_at(path);
    if (!info || info->fs_type != "erofs") return "";
    static const std::regex fsid("(^|,)fsid=([^,]+)");
    std::smatch m;
    for (const std::string* options : {&info->super_options, &info->mount_options}) {
      if (std::regex_search(*options, m, fsid)) return m[2].str();
    }
    return "";
  }

  // Prepare of a container snapshot `key` over the image's meta layer; the
  // overlay it returns is mounted at `rootfs`.
  bool prepare(Image& img, const std::string& key, const std::string& rootfs) {
    img.containers.push_back(std::make_unique<Container>());
    Container& c = *img.containers.back();
    c.key = key;
    c.rootfs = rootfs;
    const auto t0 = Clock::now();
    auto mounts = client_->prepare(key, img.name);
    if (!mounts.ok()) {
      result(false, fmt::format("{}: Prepare of the rootfs {}: {}", img.name, key, mounts.error().message()));
      return false;
    }
    const double prepare_s = secs(t0);
    if (mounts->size() != 1 || mounts->at(0).type != "overlay") {
      result(false, fmt::format("{}: rootfs mounts: want one overlay, got {} (first: {})", img.name, mounts->size(),
                                mounts->empty() ? "-" : mounts->at(0).type));
      return false;
    }
    const Mount& m = mounts->at(0);
    std::string lower;
    for (const auto& o : m.options) {
      if (o.rfind("lowerdir=", 0) == 0) lower = o.substr(9);
    }
    // The lowest layer (last in lowerdir) is the image's EROFS mount.
    c.erofs_mnt = lower.substr(lower.rfind(':') == std::string::npos ? 0 : lower.rfind(':') + 1);
    const std::regex shape(std::regex_replace(root_, std::regex(R"([.^$|()\[\]{}*+?\\])"), R"(\$&)") +
                           R"(/snapshots/[^/]+/mnt)");
    auto info = mount_at(c.erofs_mnt);
    const bool erofs = !erofs_fsid(c.erofs_mnt).empty();
    result(std::regex_match(c.erofs_mnt, shape) && erofs,
           fmt::format("{}: Prepare {} ({:.2f}s): overlay over {} ({} {})", img.name, key, prepare_s, c.erofs_mnt,
                       info ? info->fs_type : "not mounted", info ? info->super_options : ""));
    if (!erofs) return false;
    std::error_code ec;
    fs::create_directories(c.rootfs, ec);
    const std::string data = fmt::format("{}", fmt::join(m.options, ","));
    if (::mount(m.source.c_str(), c.rootfs.c_str(), m.type.c_str(), 0, data.c_str()) != 0) {
      result(false, fmt::format("{}: mount overlay {} at {}: {}", img.name, data, c.rootfs, std::strerror(errno)));
      return false;
    }
    c.mounted = true;
    return true;
  }

  // ---- the daemon, through system.sock and its own API --------------------

  Result<json> daemons(std::chrono::milliseconds timeout = kApiTimeout) {
    HttpClient c(kSystemSocket);
    NYDUS_ASSIGN_OR_RETURN(HttpResponse r, c.request("GET", "/api/v1/daemons", {}, timeout));
    auto j = json::parse(r.body, nullptr, false);
    if (r.status != 200 || !j.is_array()) {
      return make_error(ErrorKind::kInternal, "GET /api/v1/daemons: {} {}", r.status, r.body);
    }
    return j;
  }

  // The one daemon; an error when there is not exactly one.
  Result<json> the_daemon(std::chrono::milliseconds timeout = kApiTimeout) {
    NYDUS_ASSIGN_OR_RETURN(json list, daemons(timeout));
    if (list.size() != 1) return make_error(ErrorKind::kInternal, "want one daemon, system.sock lists {}", list.dump());
    return list[0];
  }

  Result<json> daemon_api(const std::string& method, const std::string& target) {
    NYDUS_ASSIGN_OR_RETURN(json d, the_daemon());
    HttpClient c(d.value("api_socket", ""));
    NYDUS_ASSIGN_OR_RETURN(HttpResponse r, c.request(method, target, {}, kApiTimeout));
    auto j = json::parse(r.body, nullptr, false);
    if (r.status != 200 || j.is_discarded()) {
      return make_error(ErrorKind::kInternal, "{} {}: {} {}", method, target, r.status, r.body);
    }
    return j;
  }

  Result<json> fscache_metrics() {
    NYDUS_ASSIGN_OR_RETURN(json info, daemon_api("GET", "/api/v1/daemon"));
    const json& m = info["fscache"]["metrics"];
    if (!m.is_object()) return make_error(ErrorKind::kCorrupt, "no fscache metrics in {}", info.dump());
    return m;
  }

  // The ids of the daemon's bindings (GET /api/v2/blobs).
  Result<std::set<std::string>> blob_ids() {
    NYDUS_ASSIGN_OR_RETURN(json j, daemon_api("GET", "/api/v2/blobs"));
    if (!j["blobs"].is_array()) return make_error(ErrorKind::kCorrupt, "GET /api/v2/blobs: {}", j.dump());
    std::set<std::string> ids;
    for (const auto& b : j["blobs"]) ids.insert(b.value("id", ""));
    return ids;
  }

  // The fsid of each image's EROFS mount, in image order.
  std::vector<std::string> image_fsids() {
    std::vector<std::string> out;
    for (auto& img : images_) out.push_back(erofs_fsid(img->first().erofs_mnt));
    return out;
  }

  // Waits until the daemon serves a READ (the read-delay hook makes each
  // one last); on timeout, says what the daemon and the readers did.
  bool wait_read_in_flight(const Readers& readers) {
    const auto t0 = Clock::now();
    std::string last;
    while (Clock::now() - t0 < kInFlightDeadline) {
      auto m = fscache_metrics();
      if (m.ok() && (*m).value("reads_in_flight", uint64_t(0)) > 0) {
        note(fmt::format("a READ is in flight {:.2f}s after the readers started", secs(t0)));
        return true;
      }
      last = m.ok() ? m->dump() : m.error().message();
      std::this_thread::sleep_for(kPoll);  // bounded by the deadline
    }
    note(fmt::format("no READ in flight within {}s: nydusd counters {}; {}", kInFlightDeadline.count(), last,
                     readers.summary()));
    return false;
  }

  void remember(const json& d) {
    const int pid = d.value("pid", 0);
    if (pid > 0) nydusd_pids_.insert(pid);
  }

  bool prepare_all() {
    for (auto& img : images_) {
      if (!prepare(*img, "c-" + img->name, "/run/rootfs-" + img->name)) return false;
    }
    auto d = the_daemon();
    if (!d.ok()) {
      result(false, d.error().message());
      return false;
    }
    remember(*d);
    const int pid = d->value("pid", 0);
    const auto cmd = proc_cmdline(pid);
    const std::string fscache_dir = (fs::path(root_) / "cache" / "fscache").string();
    first_id_ = flag_value(cmd, "--id");
    first_supervisor_ = flag_value(cmd, "--supervisor");
    result(d->value("fs_driver", "") == "fscache" && d->value("state", "") == "RUNNING" && pid > 0,
           fmt::format("system.sock: one daemon {}", d->dump()));
    result(has_arg(cmd, "singleton") && flag_value(cmd, "--fscache") == fscache_dir && !first_id_.empty() &&
               !first_supervisor_.empty() && !has_arg(cmd, "--upgrade"),
           fmt::format("nydusd {}: {}", pid, fmt::join(cmd, " ")));
    auto ids = blob_ids();
    const auto fsids = image_fsids();
    result(ids.ok() && *ids == std::set<std::string>(fsids.begin(), fsids.end()),
           fmt::format("nydusd GET /api/v2/blobs: [{}], the EROFS mounts' fsids [{}] (one per image){}",
                       ids.ok() ? fmt::format("{}", fmt::join(*ids, ",")) : "", fmt::join(fsids, ","),
                       ids.ok() ? "" : ": " + ids.error().message()));
    return g_ok;
  }

  // ---- readers and switches -----------------------------------------------------

  Readers& start_readers(Image& img, Container& c) {
    c.readers = std::make_unique<Readers>(c.key, c.rootfs, img.files, readers_);
    c.readers->start();
    return *c.readers;
  }

  // Stops a container's readers and reports them: zero errors, unless
  // `dead_mount` (readers of a mount that died by nature, whose errors are
  // only counted). Readers blocked in the kernel are fatal.
  void stop_readers(Container& c, bool dead_mount = false) {
    if (!c.readers) return;
    if (!c.readers->stop_within(kExitDeadline)) fatal(fmt::format("{} readers do not return", c.key));
    if (dead_mount) {
      note(fmt::format("readers of the dead mount (their errors are expected): {}", c.readers->summary()));
    } else {
      result(c.readers->errors() == 0, fmt::format("readers {}", c.readers->summary()));
    }
    const auto messages = c.readers->error_messages();
    for (size_t i = 0; i < messages.size() && (!dead_mount || i < 3); ++i) note(messages[i]);
    c.readers.reset();
  }

  struct Killed {
    int old_pid = 0;
    int remount_pid = 0;  // restart: the restarted nydusd killed in its re-mount
    json now;             // the daemon's view once it serves again
  };

  // kill -9 of the serving nydusd once `readers` have a READ in flight
  // (with `in_remount`, also of the nydusd the snapshotter restarts, see
  // kill_in_remount); then the snapshotter's recovery must show up in GET
  // /api/v1/daemons: a pid none of the killed, RUNNING, recovery_count + 1.
  // No recovery is fatal (readers may be blocked for good); so is a system
  // API that stops answering (each poll is bounded).
  Killed kill_nydusd(const Readers& readers, const std::string& successor, bool in_remount = false) {
    auto before = the_daemon();
    if (!before.ok()) {
      result(false, before.error().message());
      fatal("kill -9 of nydusd");
    }
    Killed k;
    k.old_pid = before->value("pid", 0);
    const uint64_t count_before = before->value("recovery_count", uint64_t(0));
    const bool in_flight = wait_read_in_flight(readers);
    if (!owned(k.old_pid)) {
      result(false, fmt::format("nydusd {} is not this test's", k.old_pid));
      fatal("kill -9 of nydusd");
    }
    const auto t0 = Clock::now();
    ::kill(k.old_pid, SIGKILL);
    if (in_remount) k.remount_pid = kill_in_remount(k.old_pid);
    const auto t1 = Clock::now();
    const auto deadline = in_remount ? kRemountDeadline : kSwitchDeadline;
    bool switched = false;
    while (Clock::now() - t1 < deadline) {
      auto d = the_daemon(kPollRequestTimeout);
      if (d.ok()) {
        k.now = *d;
        const int pid = k.now.value("pid", 0);
        if (pid > 0 && pid != k.old_pid && pid != k.remount_pid && k.now.value("state", "") == "RUNNING" &&
            k.now.value("recovery_count", uint64_t(0)) > count_before) {
          switched = true;
          break;
        }
      }
      std::this_thread::sleep_for(kPoll);  // bounded by the deadline
    }
    remember(k.now);
    result(in_flight && switched,
           fmt::format("kill -9 of nydusd {} with a READ in flight{}{}: {} {:.2f}s later{}: pid {} {}, "
                       "recovery_count {} -> {}, last_failover_ms {}",
                       k.old_pid, in_flight ? "" : " (NO READ WAS IN FLIGHT)",
                       in_remount ? fmt::format(", then of the restarted {} in its re-mount", k.remount_pid) : "",
                       switched ? successor + " serves" : "NOTHING SERVES", secs(t0),
                       in_remount ? fmt::format(" ({:.2f}s after the second kill)", secs(t1)) : "",
                       k.now.value("pid", 0), k.now.value("state", "?"), count_before,
                       k.now.value("recovery_count", uint64_t(0)), k.now["last_failover_ms"].dump()));
    if (!switched) fatal("recovery after kill -9");
    return k;
  }

  // The restart run: the nydusd the snapshotter starts after the kill of
  // `old_pid` answers OPENs only after kOpenDelayMs (the test hook's file,
  // written by restart()), so once its fscache counters show an OPEN, a
  // re-mount's mount(2) waits for it: kill -9 then, and lift the delay. Its
  // pid; fatal when no such nydusd shows up.
  int kill_in_remount(int old_pid) {
    const auto t0 = Clock::now();
    std::string last = "nothing yet";
    while (Clock::now() - t0 < kSwitchDeadline) {
      auto d = the_daemon(kPollRequestTimeout);
      const int pid = d.ok() ? d->value("pid", 0) : 0;
      if (pid > 0 && pid != old_pid) {
        HttpClient c(d->value("api_socket", ""));
        auto r = c.request("GET", "/api/v1/daemon", {}, kPollRequestTimeout);
        auto j = r.ok() ? json::parse(r->body, nullptr, false) : json();
        const json metrics = j.is_object() ? j.value(json::json_pointer("/fscache/metrics"), json()) : json();
        last = fmt::format("nydusd {}: {}", pid, r.ok() ? metrics.dump() : r.error().message());
        if (metrics.is_object() && metrics.value("opens", uint64_t(0)) > 0) {
          if (!owned(pid)) {
            result(false, fmt::format("nydusd {} is not this test's", pid));
            fatal("kill -9 of the restarted nydusd");
          }
          nydusd_pids_.insert(pid);
          ::kill(pid, SIGKILL);
          std::error_code ec;
          fs::remove(open_delay_file_, ec);
          result(true, fmt::format("kill -9 of the restarted nydusd {} ({:.2f}s after the first kill) while the "
                                   "re-mount waits for its answer to an OPEN: {}",
                                   pid, secs(t0), metrics.dump()));
          return pid;
        }
      }
      std::this_thread::sleep_for(kPoll);  // bounded by the deadline
    }
    result(false, fmt::format("no restarted nydusd got an OPEN within {}s; last seen: {}", kSwitchDeadline.count(),
                              last));
    fatal("kill -9 of the restarted nydusd");
  }

  // The serving nydusd after a recovery: the same --id and --supervisor,
  // --upgrade when it took the state over (not after a restart), the killed
  // ones gone.
  void check_successor(const Killed& k, bool took_over) {
    const int pid = k.now.value("pid", 0);
    const auto cmd = proc_cmdline(pid);
    result(has_arg(cmd, "singleton") && has_arg(cmd, "--upgrade") == took_over &&
               flag_value(cmd, "--id") == first_id_ && flag_value(cmd, "--supervisor") == first_supervisor_ &&
               !alive(k.old_pid) && !(k.remount_pid > 0 && alive(k.remount_pid)),
           fmt::format("{} {}: {}", took_over ? "successor" : "restarted nydusd", pid, fmt::join(cmd, " ")));
  }

  // After a failover: the readers go on for one more full pass each, with
  // zero errors; the READs the dead daemon held were delivered again
  // (`restore`) and served by the successor, with the rest of the pass.
  bool readers_go_on(Readers& readers, const std::string& after) {
    const auto base = readers.passes();
    const auto t0 = Clock::now();
    const bool passes = readers.wait_passes(base, 1, kPassDeadline);
    auto m = fscache_metrics();
    result(m.ok() && (*m).value("reads", uint64_t(0)) > 0 && (*m).value("read_errors", uint64_t(1)) == 0 &&
               (*m).value("read_unknown_object", uint64_t(1)) == 0,
           fmt::format("the successor served READs: {}", m.ok() ? m->dump() : m.error().message()));
    result(passes && readers.errors() == 0,
           fmt::format("{} readers went on after {} ({:.2f}s to a full pass each): {}", readers.name(), after,
                       secs(t0), readers.summary()));
    for (const auto& e : readers.error_messages()) note(e);
    if (!passes) fatal(after + ": readers");
    return true;
  }

  // ---- main ---------------------------------------------------------------------

  // Readers of the first image (READs: its data was never read); kill -9 of
  // nydusd; they go on through the failover. (They keep reading: verify or
  // remove stops them.)
  bool failover(const std::string& what) {
    Image& a = *images_[0];
    Readers& readers = start_readers(a, a.first());
    const Killed k = kill_nydusd(readers, "the successor");
    check_successor(k, true);
    return readers_go_on(readers, what);
  }

  bool upgrade() {
    Image& b = *images_[1];
    Readers& readers = start_readers(b, b.first());
    auto before = the_daemon();
    if (!before.ok()) return result(false, before.error().message()), false;
    const int old_pid = before->value("pid", 0);
    // A copy of nydusd (made on the host): the upgrade must run the new binary.
    const std::string copy = nydusd_upgrade_bin_;
    const bool in_flight = wait_read_in_flight(readers);
    const auto t0 = Clock::now();
    HttpClient c(kSystemSocket);
    auto r = c.request("PUT", "/api/v1/nydusd/upgrade", json{{"nydusd_path", copy}}.dump(), kUpgradeTimeout);
    const double upgrade_s = secs(t0);
    if (!r.ok()) {
      result(false, fmt::format("PUT /api/v1/nydusd/upgrade: {}", r.error().message()));
      return fatal("upgrade");
    }
    auto body = json::parse(r->body, nullptr, false);
    int new_pid = 0;
    if (body.is_object() && body["daemons"].is_array() && body["daemons"].size() == 1) {
      new_pid = body["daemons"][0].value("new_pid", 0);
    }
    result(r->status == 200 && in_flight && new_pid > 0 && new_pid != old_pid,
           fmt::format("PUT /api/v1/nydusd/upgrade with a READ in flight{} -> {} in {:.2f}s: {}",
                       in_flight ? "" : " (NO READ WAS IN FLIGHT)", r->status, upgrade_s, r->body));
    if (r->status != 200) return false;  // a refused or rolled-back upgrade: the old daemon serves on
    auto d = the_daemon();
    if (d.ok()) remember(*d);
    std::error_code lec;
    const std::string exe = fs::read_symlink(fmt::format("/proc/{}/exe", new_pid), lec).string();
    result(d.ok() && d->value("pid", 0) == new_pid && d->value("state", "") == "RUNNING" &&
               d->value("binary_path", "") == copy && !(*d)["last_upgrade_ms"].is_null() && exe == copy &&
               !alive(old_pid),
           fmt::format("after the upgrade: nydusd {} runs {}; old {} gone: {}", new_pid, exe, old_pid,
                       d.ok() ? d->dump() : d.error().message()));
    return true;
  }

  bool verify() {
    // Every reader (both rootfs) makes two more full passes after the last
    // switch; then they stop, with zero errors.
    const auto t0 = Clock::now();
    bool passes = true;
    for (auto& img : images_) {
      Readers* r = img->first().readers.get();
      if (r) passes = r->wait_passes(r->passes(), 2, kPassDeadline) && passes;
    }
    const double wait_s = secs(t0);
    if (!passes) return fatal("verify readers");
    for (auto& img : images_) stop_readers(img->first());
    note(fmt::format("two more passes per reader after the upgrade took {:.2f}s", wait_s));
    auto m = fscache_metrics();
    result(m.ok() && (*m).value("read_errors", uint64_t(1)) == 0 && (*m).value("read_unknown_object", uint64_t(1)) == 0,
           fmt::format("the upgraded nydusd's counters: {}", m.ok() ? m->dump() : m.error().message()));
    for (auto& img : images_) compare_tree(*img, img->first());
    return g_ok;
  }

  // The whole tree, attributes included, through the container's overlay.
  void compare_tree(const Image& img, const Container& c) {
    testing::TreeCompareOptions o;
    o.nlink_dirs = false;  // the overlay's root is its upper dir
    o.root_times = false;
    o.readers = 2;
    const auto t0 = Clock::now();
    auto r = testing::diff_trees(img.source, c.rootfs, o);
    result(r.equal(), fmt::format("{}: {} compared with {}: {} entries, {} files, {} bytes ({:.2f}s)", img.name,
                                  c.rootfs, img.source, r.entries, r.files, r.bytes, secs(t0)));
    for (const auto& diff : r.diffs) note(diff);
  }

  // ---- standby ------------------------------------------------------------------

  // Waits until <root>/socket/<id>/standby.pid names a live standby other
  // than `other`: a `nydusd singleton --upgrade` with the daemon's --id and
  // --supervisor on the api socket the file names, answering there in
  // state INIT. Its pid; 0 (and a failed check) on timeout.
  pid_t wait_standby(const std::string& id, pid_t other) {
    const std::string file = fmt::format("{}/socket/{}/standby.pid", root_, id);
    const auto t0 = Clock::now();
    std::string last = "no " + file;
    while (Clock::now() - t0 < kStartDeadline) {
      std::istringstream in(read_text(file));
      pid_t pid = 0;
      std::string api;
      if (in >> pid >> api && pid > 0 && pid != other && alive(pid)) {
        const auto cmd = proc_cmdline(pid);
        HttpClient c(api);
        auto r = c.request("GET", "/api/v1/daemon", {}, kApiTimeout);
        auto j = r.ok() ? json::parse(r->body, nullptr, false) : json();
        const std::string state = j.is_object() ? j.value("state", "") : "";
        last = fmt::format("pid {} on {} in state '{}': {}", pid, api, state, fmt::join(cmd, " "));
        if (has_arg(cmd, "singleton") && has_arg(cmd, "--upgrade") && flag_value(cmd, "--apisock") == api &&
            flag_value(cmd, "--id") == id && flag_value(cmd, "--supervisor") == first_supervisor_ &&
            state == "INIT") {
          nydusd_pids_.insert(pid);
          result(true, fmt::format("{} standby ({:.2f}s): {}", other ? "a new" : "the", secs(t0), last));
          return pid;
        }
      }
      std::this_thread::sleep_for(kPoll);  // bounded by the deadline
    }
    result(false, fmt::format("no {}standby within {}s; last seen: {}", other ? "new " : "", kStartDeadline.count(),
                              last));
    return 0;
  }

  bool standby() {
    auto d = the_daemon();
    if (!d.ok()) return result(false, d.error().message()), false;
    const std::string id = d->value("id", "");
    const pid_t first = wait_standby(id, 0);
    if (first == 0) return false;
    Image& b = *images_[1];  // the smaller one: a shorter first pass
    Readers& readers = start_readers(b, b.first());
    const Killed k = kill_nydusd(readers, "the standby");
    const int pid = k.now.value("pid", 0);
    result(pid == first, fmt::format("the serving pid {} is the standby's ({}); last_failover_ms {}", pid, first,
                                     k.now["last_failover_ms"].dump()));
    check_successor(k, true);
    const pid_t second = wait_standby(id, first);
    result(second != 0 && second != pid, fmt::format("the new standby {} is another process than the serving {}",
                                                     second, pid));
    readers_go_on(readers, "the failover to the standby");
    stop_readers(b.first());
    return g_ok;
  }

  // ---- readopt ------------------------------------------------------------------

  bool readopt() {
    Image& b = *images_[1];
    Readers& readers = start_readers(b, b.first());
    auto before = the_daemon();
    auto ids_before = blob_ids();
    auto info_before = daemon_api("GET", "/api/v1/daemon");
    if (!before.ok() || !ids_before.ok() || !info_before.ok()) {
      result(false, !before.ok()        ? before.error().message()
                    : !ids_before.ok() ? ids_before.error().message()
                                       : info_before.error().message());
      return false;
    }
    const int pid = before->value("pid", 0);
    const uint64_t saves_before = info_before->value("saves", uint64_t(0));
    const auto fsids = image_fsids();
    const bool in_flight = wait_read_in_flight(readers);
    const pid_t old = snapshotter_->pid();
    const auto t0 = Clock::now();
    (void)snapshotter_->kill(SIGKILL);
    auto status = snapshotter_->wait(kExitDeadline);
    client_.reset();
    snapshotter_.reset();
    result(status.ok() && *status == -SIGKILL,
           fmt::format("kill -9 of containerd-nydus-grpc {}{}: status {}", old,
                       in_flight ? " with a READ in flight" : " (no READ was in flight)",
                       status.ok() ? std::to_string(*status) : status.error().message()));
    if (!start()) return false;
    const double restart_s = secs(t0);
    auto d = the_daemon();
    result(d.ok() && d->value("pid", 0) == pid && d->value("state", "") == "RUNNING" && alive(pid),
           fmt::format("the new snapshotter re-adopted nydusd {} ({:.2f}s after the kill): {}", pid, restart_s,
                       d.ok() ? d->dump() : d.error().message()));
    // Re-adopted, nydusd was asked for a fresh save: the new supervisor
    // holds its state and /dev/cachefiles fd (what a failover takes over).
    auto info = daemon_api("GET", "/api/v1/daemon");
    const uint64_t saves = info.ok() ? info->value("saves", uint64_t(0)) : 0;
    result(saves > saves_before, fmt::format("nydusd {} saved its state and /dev/cachefiles fd to the new "
                                             "snapshotter: saves {} -> {}{}",
                                             pid, saves_before, saves, info.ok() ? "" : ": " + info.error().message()));
    auto ids = blob_ids();
    result(ids.ok() && *ids == *ids_before && image_fsids() == fsids,
           fmt::format("the same bindings [{}] and EROFS mounts (fsids [{}]){}",
                       ids.ok() ? fmt::format("{}", fmt::join(*ids, ",")) : "", fmt::join(image_fsids(), ","),
                       ids.ok() ? "" : ": " + ids.error().message()));
    const auto base = readers.passes();
    const bool passes = readers.wait_passes(base, 1, kPassDeadline);
    result(passes && readers.errors() == 0,
           fmt::format("{} readers went on through the snapshotter's kill and restart: {}", readers.name(),
                       readers.summary()));
    // Their data is cached now (no more READs): they would only take the
    // CPU from the next phase's.
    stop_readers(b.first());
    return g_ok;
  }

  // ---- restart ------------------------------------------------------------------

  bool restart() {
    const auto old_fsids = image_fsids();
    Image& a = *images_[0];
    // Only the nydusd started after the kill gets OPENs (mounted objects
    // stay open): it is the one the delay slows.
    std::ofstream(open_delay_file_) << kOpenDelayMs;
    Readers& readers = start_readers(a, a.first());
    const Killed k = kill_nydusd(readers, "a third nydusd", true);
    check_successor(k, false);
    // The kill landed in a mount(2) the snapshotter's restart made while it
    // held the daemon's operation mutex: it let go of the /dev/cachefiles fd.
    const std::string line = line_with(read_text(log_dir_ + "/nydus-snapshotter.log"),
                                       fmt::format("(pid {}) exited while mount(2)", k.remount_pid));
    result(!line.empty(), fmt::format("the snapshotter failed the re-mount that waited for the dead nydusd {}: {}",
                                      k.remount_pid, line.empty() ? "NO SUCH LOG LINE" : line));
    // The snapshotter mounts every instance again, under a new fsid.
    const auto t0 = Clock::now();
    std::vector<std::string> fsids;
    auto remounted = [&] {
      fsids = image_fsids();
      for (size_t i = 0; i < fsids.size(); ++i) {
        if (fsids[i].empty() || fsids[i] == old_fsids[i]) return false;
      }
      return true;
    };
    while (!remounted() && Clock::now() - t0 < kSwitchDeadline) {
      std::this_thread::sleep_for(kPoll);  // bounded by the deadline
    }
    for (size_t i = 0; i < images_.size(); ++i) {
      result(!fsids[i].empty() && fsids[i] != old_fsids[i],
             fmt::format("{}: {} is an EROFS mount again, fsid {} (was {})", images_[i]->name,
                         images_[i]->first().erofs_mnt, fsids[i].empty() ? "NONE" : fsids[i], old_fsids[i]));
    }
    // Readers of the old overlay fail by nature: stopped, not counted.
    stop_readers(a.first(), true);
    auto ids = blob_ids();
    result(ids.ok() && *ids == std::set<std::string>(fsids.begin(), fsids.end()),
           fmt::format("the restarted nydusd {} GET /api/v2/blobs: [{}]{}", k.now.value("pid", 0),
                       ids.ok() ? fmt::format("{}", fmt::join(*ids, ",")) : "",
                       ids.ok() ? "" : ": " + ids.error().message()));
    return g_ok;
  }

  // New containers over the same meta layers, mounted fresh, read every
  // byte through the restarted daemon.
  bool new_containers() {
    for (auto& img : images_) {
      if (!prepare(*img, "c2-" + img->name, "/run/rootfs2-" + img->name)) return false;
      Container& c = *img->containers.back();
      result(c.erofs_mnt == img->first().erofs_mnt, fmt::format("{}: {} sits on the instance mountpoint {}", img->name,
                                                                c.key, img->first().erofs_mnt));
      start_readers(*img, c);
    }
    // Each container's readers stop after their first full pass (then
    // cached, they would only take the CPU from the others').
    std::vector<Image*> reading;
    for (auto& img : images_) reading.push_back(img.get());
    const auto t0 = Clock::now();
    while (!reading.empty()) {
      for (auto it = reading.begin(); it != reading.end();) {
        Container& c = *(*it)->containers.back();
        const std::vector<uint64_t> fresh(readers_, 0);
        if (c.readers->errors() == 0 && !c.readers->made_passes(fresh, 1)) {
          ++it;
          continue;
        }
        stop_readers(c);
        compare_tree(**it, c);
        it = reading.erase(it);
      }
      if (!reading.empty() && Clock::now() - t0 > kPassDeadline) fatal("new containers' readers");
      std::this_thread::sleep_for(kPoll);  // bounded by the deadline
    }
    return g_ok;
  }

  // ---- teardown ---------------------------------------------------------------

  bool remove_all() {
    for (auto& img : images_) {
      for (auto& c : img->containers) stop_readers(*c);
    }
    if (!client_) return result(false, "remove: no snapshotter to talk to"), false;
    auto d = the_daemon();
    const std::string api_socket = d.ok() ? d->value("api_socket", "") : "";
    const int pid = d.ok() ? d->value("pid", 0) : 0;
    for (auto& img : images_) {
      for (auto& c : img->containers) {
        if (!c->mounted) continue;
        Status st = unmount(c->rootfs);
        c->mounted = !st.ok();
        result(st.ok(), fmt::format("{}: umount {}{}", c->key, c->rootfs, st.ok() ? "" : ": " + st.error().message()));
      }
    }
    const auto t0 = Clock::now();
    for (auto& img : images_) {
      std::vector<std::string> keys;
      for (const auto& c : img->containers) keys.push_back(c->key);
      keys.push_back(img->name);
      keys.push_back(img->name + "-data");
      for (const std::string& key : keys) {
        Status st = client_->remove(key);
        result(st.ok(), fmt::format("Remove {}{}", key, st.ok() ? "" : ": " + st.error().message()));
      }
    }
    Status st = client_->cleanup();
    result(st.ok(), fmt::format("Cleanup ({:.2f}s for the removals){}", secs(t0),
                                st.ok() ? "" : ": " + st.error().message()));
    for (auto& img : images_) {
      if (img->containers.empty()) continue;
      const std::string& mnt = img->first().erofs_mnt;
      auto info = mount_at(mnt);
      result(!info, fmt::format("{}: EROFS mount {} {}", img->name, mnt,
                                info ? "still mounted: " + info->fs_type + " " + info->super_options : "is gone"));
    }
    auto infos = read_mountinfo();
    size_t left = 0;
    if (infos.ok()) {
      for (const auto& m : *infos) {
        if (m.fs_type == "erofs") {
          ++left;
          note(fmt::format("erofs still mounted at {} ({})", m.mount_point, m.super_options));
        }
      }
    }
    result(infos.ok() && left == 0, fmt::format("/proc/self/mountinfo: {} erofs mounts left", left));
    // The instances are unbound from the daemon (or the daemon, serving
    // nothing, is gone).
    if (!api_socket.empty() && alive(pid)) {
      HttpClient c(api_socket);
      auto r = c.request("GET", "/api/v2/blobs", {}, kApiTimeout);
      auto j = r.ok() ? json::parse(r->body, nullptr, false) : json();
      const bool empty = r.ok() && r->status == 200 && j.is_object() && j["blobs"].is_array() && j["blobs"].empty();
      result(empty, fmt::format("nydusd {} GET /api/v2/blobs after the removals: {}", pid,
                                r.ok() ? r->body : r.error().message()));
    } else {
      auto list = daemons();
      result(list.ok() && list->empty(),
             fmt::format("nydusd {} is gone after the removals; system.sock lists {}", pid,
                         list.ok() ? list->dump() : list.error().message()));
    }
    return g_ok;
  }

  // Only a nydusd of this run's root is ever signalled.
  bool owned(pid_t pid) {
    if (pid <= 0) return false;
    for (const auto& a : proc_cmdline(pid)) {
      if (a.rfind(root_ + "/", 0) == 0) return true;
    }
    return false;
  }

  void print_logs() {
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(log_dir_, ec); it != fs::recursive_directory_iterator();
         it.increment(ec)) {
      if (ec) break;
      if (!it->is_regular_file()) continue;
      std::printf("     ---- %s (tail)\n%s\n", it->path().c_str(), tail(read_text(it->path().string()), 40).c_str());
    }
    std::fflush(stdout);
  }

  // A switch failed: readers may be blocked in the kernel for good. Report,
  // end what we started and exit without joining them.
  [[noreturn]] bool fatal(const std::string& what) {
    result(false, fmt::format("{}: cannot go on", what));
    for (auto& img : images_) {
      for (auto& c : img->containers) {
        if (!c->readers) continue;
        note(c->readers->summary());
        for (const auto& e : c->readers->error_messages()) note(e);
      }
    }
    print_logs();
    stop_everything();
    std::printf("snapshotter fscache driver: FAILED (run %s)\n", run_.name.c_str());
    std::fflush(stdout);
    std::_Exit(kExitCheckFailed);
  }

  void stop_everything() {
    client_.reset();
    for (auto& img : images_) {
      for (auto& c : img->containers) {
        if (c->mounted) (void)lazy_unmount(c->rootfs);
      }
    }
    if (snapshotter_) {
      (void)snapshotter_->kill(SIGTERM);
      auto s = snapshotter_->wait(kExitDeadline);
      if (!s.ok()) {
        (void)snapshotter_->kill(SIGKILL);
        s = snapshotter_->wait(kExitDeadline);
      }
      snapshotter_status_ = s.ok() ? *s : -1000;
      snapshotter_.reset();
    }
    // nydusd outlives the snapshotter by design (cleanup_on_close = false;
    // only an idle shared daemon is stopped): end the ones it started that
    // still run, by pid, and reap them (we are their subreaper).
    std::vector<std::string> fates;
    for (pid_t pid : nydusd_pids_) {
      if (!alive(pid)) {
        (void)::waitpid(pid, nullptr, WNOHANG);
        fates.push_back(fmt::format("{} gone", pid));
        continue;
      }
      if (!owned(pid)) {
        fates.push_back(fmt::format("{} left alone (not this root's)", pid));
        continue;
      }
      ::kill(pid, SIGKILL);
      fates.push_back(fmt::format("{} killed", pid));
      for (auto t0 = Clock::now(); alive(pid) && Clock::now() - t0 < kExitDeadline;) {
        (void)::waitpid(pid, nullptr, WNOHANG);
        std::this_thread::sleep_for(kPoll);  // bounded by the deadline
      }
      (void)::waitpid(pid, nullptr, WNOHANG);
    }
    if (!fates.empty()) fates_ = fmt::format("{}", fmt::join(fates, ", "));
    for (const auto& m : mounts_below(root_)) (void)lazy_unmount(m);
  }

  // The end of a run: its snapshotter and nydusd stopped.
  int finish(int rc) {
    if (rc != 0 || !g_ok) print_logs();
    const bool stopped = phase("stop", [&] {
      stop_everything();
      result(snapshotter_status_ == 0, fmt::format("SIGTERM: containerd-nydus-grpc exited with status {}; then the "
                                                   "nydusd it started: {}",
                                                   snapshotter_status_, fates_));
      return snapshotter_status_ == 0;
    });
    if (rc == 0 && (!stopped || !g_ok)) rc = kExitCheckFailed;
    return rc;
  }

  const std::string snapshotter_bin_, nydusd_bin_, nydusd_upgrade_bin_, base_root_, blobs_;
  const int read_delay_ms_;
  const unsigned readers_;
  std::vector<std::string> run_names_;
  std::vector<std::unique_ptr<Image>> images_;
  // The current run.
  RunSpec run_;
  std::string root_, work_, log_dir_, config_, open_delay_file_;
  std::unique_ptr<Process> snapshotter_;
  std::unique_ptr<GrpcClient> client_;
  std::set<pid_t> nydusd_pids_;
  std::string first_id_, first_supervisor_;
  int snapshotter_status_ = -1000;
  std::string fates_ = "none";
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: snapshotter_fscache_vm_driver SCENARIO.json\n");
    return kExitUsage;
  }
  ::signal(SIGPIPE, SIG_IGN);
  // nydusd is the snapshotter's child and outlives it: it is then ours to
  // reap, not init's.
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  auto scenario = json::parse(read_text(argv[1]), nullptr, false);
  if (scenario.is_discarded() || !scenario.is_object()) {
    std::fprintf(stderr, "snapshotter_fscache_vm_driver: %s is not a scenario\n", argv[1]);
    return kExitUsage;
  }
  try {
    Driver driver(scenario);
    return driver.run();
  } catch (const std::exception& e) {
    std::printf("FAIL driver: %s\n", e.what());
    return kExitSetup;
  }
}
