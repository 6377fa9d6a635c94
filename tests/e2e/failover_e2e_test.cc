// The headline, end to end: a container run by a real containerd through our
// snapshotter reads and byte-verifies its nydus image in a loop while nydusd
// is killed with SIGKILL, hot-upgraded over system.sock, crash-loops, or the
// snapshotter itself is killed; the container must see zero errors (policy
// failover) or exactly the documented behaviour (policies restart, none).
//
// Load: inside the container, `sha256sum -c` over every data file of the
// image (4 MiB of pseudo-random bytes among them) as fast as a 10 ms pause
// allows; every failure is appended to /out/errors (a bind mount). On the
// host, a direct reader thread compares every byte of the same file on the
// RAFS mount with the expected bytes and evicts the file's page cache after
// each pass (POSIX_FADV_DONTNEED), so that both readers keep sending FUSE
// requests to whichever nydusd serves at that moment.
//
// Each case runs its own containerd and snapshotter (tests/e2e/e2e_support.h),
// stops what it started by pid, and aborts a FUSE connection through fusectl
// if a reader is still stuck at teardown. LABEL e2e.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <random>
#include <thread>

#include <catch2/catch.hpp>

#include "common/fd_passing.h"
#include "common/http.h"
#include "tests/e2e/e2e_support.h"

using namespace nydus::e2e;

namespace {

constexpr size_t kBigFileSize = 4u << 20;
constexpr auto kRoundsTimeout = 60s;
constexpr auto kRecordTimeout = 30s;
constexpr auto kReaderStopTimeout = 10s;

std::string pseudo_random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string out(n, '\0');
  for (auto& c : out) c = static_cast<char>(rng() & 0xff);
  return out;
}

// Aborts every FUSE connection mounted below `root` (test teardown only: a
// reader stuck on a connection nobody serves any more).
void abort_fuse_below(const std::string& root) {
  std::ifstream in("/proc/self/mountinfo");
  for (std::string line; std::getline(in, line);) {
    std::istringstream f(line);
    std::string id, parent, devno, r, mp;
    f >> id >> parent >> devno >> r >> mp;
    if (mp.rfind(root, 0) != 0 || line.find(" - fuse") == std::string::npos) continue;
    auto colon = devno.find(':');
    unsigned long conn = (std::stoul(devno.substr(0, colon)) << 20) | std::stoul(devno.substr(colon + 1));
    std::ofstream("/sys/fs/fuse/connections/" + std::to_string(conn) + "/abort") << "1";
  }
}

// Reads `path` again and again, compares every byte with `expected`, evicts
// the page cache after each pass; records errors and the longest read.
class DirectReader {
 public:
  DirectReader(std::string path, const std::string& expected) : path_(std::move(path)), expected_(expected) {
    done_ = std::async(std::launch::async, [this] { run(); });
  }
  ~DirectReader() { stop(); }

  // Returns false when the reader did not finish (stuck on the mount).
  bool stop() {
    stop_ = true;
    if (!done_.valid()) return true;
    if (done_.wait_for(kReaderStopTimeout) != std::future_status::ready) return false;
    done_.get();
    return true;
  }
  long passes() const { return passes_; }
  long errors() const { return errors_; }
  double max_ms() const { return max_ms_; }
  std::string first_error() {
    std::lock_guard<std::mutex> lock(mu_);
    return first_error_;
  }

 private:
  void fail(const std::string& what) {
    ++errors_;
    std::lock_guard<std::mutex> lock(mu_);
    if (first_error_.empty()) first_error_ = what;
  }
  void run() {
    nydus::UniqueFd fd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return fail("open " + path_ + ": " + std::strerror(errno));
    std::string buf(128 * 1024, '\0');
    while (!stop_) {
      for (size_t off = 0; off < expected_.size() && !stop_;) {
        auto t0 = std::chrono::steady_clock::now();
        ssize_t n = ::pread(fd.get(), buf.data(), buf.size(), static_cast<off_t>(off));
        double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        max_ms_ = std::max<double>(max_ms_, ms);
        if (n <= 0) {
          fail(fmt::format("pread at {}: {}", off, n < 0 ? std::strerror(errno) : "EOF"));
          break;
        }
        if (std::memcmp(buf.data(), expected_.data() + off,
                        std::min<size_t>(static_cast<size_t>(n), expected_.size() - off)) != 0) {
          fail(fmt::format("wrong bytes at {}", off));
        }
        off += static_cast<size_t>(n);
      }
      ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED);
      ++passes_;
      std::this_thread::sleep_for(5ms);
    }
  }

  std::string path_;
  const std::string& expected_;
  std::atomic<bool> stop_{false};
  std::atomic<long> passes_{0};
  std::atomic<long> errors_{0};
  std::atomic<double> max_ms_{0};
  std::mutex mu_;
  std::string first_error_;
  std::future<void> done_;
};

// A stack with a dedicated nydusd serving one image, and a container that
// verifies the image's bytes in a loop.
struct Fixture {
  Stack s;
  Layer layer;
  std::string big = pseudo_random_bytes(kBigFileSize, 20261204);
  std::unique_ptr<ReaderOut> out;
  std::unique_ptr<DirectReader> direct;

  std::string mode;

  explicit Fixture(const std::string& daemon_toml, const std::string& daemon_mode = "dedicated")
      : mode(daemon_mode) {
    layer.files["data/big.bin"] = big;
    configure_nydus(s, daemon_mode);
    s.config_toml = "version = 1\n[daemon]\n" + daemon_toml + "\n[system]\nenable = true\naddress = \"" +
                    s.system_sock.string() + "\"\n";
    start_with_nydus_image(s, layer);

    out = std::make_unique<ReaderOut>(s.dir / "out");
    std::ofstream expected(out->path / "expected");
    for (const auto& [name, content] : layer.files) expected << sha256_hex(content) << "  /" << name << "\n";
  }

  ~Fixture() {
    bool stopped = !direct || direct->stop();
    if (!stopped) {
      abort_fuse_below(s.dir.path().string());
      direct->stop();
    }
    // Whatever the outcome, readers in the container must not keep the
    // teardown waiting on a connection nobody serves.
    if (s.containerd && s.containerd->running()) s.ctr({"tasks", "kill", "-s", "SIGKILL", "reader"}, 5s);
  }

  void run_reader() {
    std::string loop =
        "i=0; while true; do "
        "if /bin/sha256sum -c /out/expected > /out/last 2>&1; then i=$((i+1)); echo $i > /out/count; "
        "else echo \"ERR after round $i\" >> /out/errors; /bin/cat /out/last >> /out/errors; fi; "
        "/bin/busybox usleep 10000; done";
    run_reader_container(s, out->path, loop);
    INFO(s.snapshotter_log());
    require_rounds(3);
  }

  void start_direct_reader() {
    auto instances = s.instance_records();
    REQUIRE(instances.size() == 1);
    direct = std::make_unique<DirectReader>(instances[0].mountpoint + "/data/big.bin", big);
  }

  // The common start of a case: the verifying container, the direct reader
  // (unless `with_direct_reader` is false), and the daemon's record once it
  // is RUNNING.
  DaemonRecord start_readers(bool with_direct_reader = true) {
    run_reader();
    if (with_direct_reader) start_direct_reader();
    return wait_record([](const DaemonRecord& r) { return r.state == "RUNNING"; });
  }

  long count() { return out->count(); }
  std::string errors() { return out->errors(); }

  // Waits until the container completed `target` rounds (inotify on /out;
  // the deadline only turns a hang into a failure).
  bool wait_rounds(long target) { return out->wait_rounds(target, kRoundsTimeout); }
  void require_rounds(long target) {
    INFO(errors());
    REQUIRE(wait_rounds(target));
  }

  DaemonRecord daemon() {
    auto records = s.daemon_records();
    REQUIRE(records.size() == 1);
    return records[0];
  }

  // Waits until the daemon record satisfies `pred` (the snapshotter writes
  // it; polled at 20 ms under a deadline, the database has no event).
  template <typename Pred>
  DaemonRecord wait_record(Pred pred) {
    auto deadline = std::chrono::steady_clock::now() + kRecordTimeout;
    while (true) {
      auto records = s.daemon_records();
      if (records.size() == 1 && pred(records[0])) return records[0];
      if (std::chrono::steady_clock::now() > deadline) {
        INFO(s.snapshotter_log());
        FAIL("the daemon record did not reach the expected state");
      }
      std::this_thread::sleep_for(20ms);
    }
  }

  // The record of the daemon that replaced `d` (another pid), once RUNNING.
  DaemonRecord wait_replaced(const DaemonRecord& d) {
    return wait_record([&](const DaemonRecord& r) { return r.pid != d.pid && r.state == "RUNNING"; });
  }

  // Kills the nydusd of `d` with SIGKILL, waits for its successor's RUNNING
  // record, runs `check` on it, then requires 10 more rounds of the
  // container. Returns the successor's record.
  template <typename Check>
  DaemonRecord fail_over(const DaemonRecord& d, Check check) {
    long rounds = count();
    kill9(static_cast<pid_t>(d.pid));
    auto after = wait_replaced(d);
    check(after);
    require_rounds(rounds + 10);
    return after;
  }

  nlohmann::json system_get(const std::string& path) {
    nydus::HttpClient http(s.system_sock.string());
    auto r = http.request_json("GET", path);
    INFO(path);
    REQUIRE(r.ok());
    return *r;
  }

  // The system API's view of the one daemon.
  nlohmann::json daemon_view() {
    auto views = system_get("/api/v1/daemons");
    REQUIRE(views.is_array());
    REQUIRE(views.size() == 1);
    return views[0];
  }

  nydus::HttpResponse upgrade(const std::string& binary) {
    nydus::HttpClient http(s.system_sock.string());
    auto r = http.request("PUT", "/api/v1/nydusd/upgrade", json{{"nydusd_path", binary}}.dump(), 60s);
    REQUIRE(r.ok());
    return *r;
  }

  // Kills nydusd with SIGKILL and waits for the process to be gone.
  void kill9(pid_t pid) {
    auto p = nydus::Process::adopt(pid);
    REQUIRE(p.ok());
    p->detach();
    REQUIRE(p->kill(SIGKILL).ok());
    REQUIRE(p->wait(10s).ok());
  }

  void check_zero_errors() {
    CHECK(errors().empty());
    if (direct) {
      INFO(direct->first_error());
      CHECK(direct->errors() == 0);
      CHECK(direct->passes() > 0);
    }
  }

  // With no daemon to serve it, the container's reads must fail: waits (under
  // the rounds deadline) until it wrote an error.
  void check_reader_fails() {
    for (auto deadline = std::chrono::steady_clock::now() + kRoundsTimeout;
         errors().empty() && std::chrono::steady_clock::now() < deadline;) {
      std::this_thread::sleep_for(20ms);
    }
    CHECK_FALSE(errors().empty());
  }

  // containerd's channel to a restarted snapshotter reconnects with its own
  // back-off (not observable from here): until it has, calls report
  // "unavailable" and its GC would skip our snapshots. Retried under a deadline.
  void wait_containerd_reconnected() {
    auto ls = list_snapshots_after_restart(s, /*retry_any_failure=*/true, 100ms);
    INFO(ls.output);
    REQUIRE(ls.exited_ok());
  }

  // Orderly end: container gone, image removed, its nydusd stopped.
  void tear_down() {
    if (direct) {
      REQUIRE(direct->stop());
      direct.reset();
    }
    remove_reader_container(s);
    auto rm = s.ctr({"images", "rm", "--sync", kNydusImage});
    INFO(rm.output);
    CHECK(rm.exited_ok());
    CHECK(s.instance_records().empty());
    // A shared daemon stays while the snapshotter runs (the reference's
    // retain); a dedicated one goes with its instance.
    if (mode == "dedicated") CHECK(s.daemon_records().empty());
  }
};

pid_t read_standby_pid(const DaemonRecord& d) {
  std::ifstream in(fs::path(d.api_socket).parent_path() / "standby.pid");
  pid_t pid = 0;
  in >> pid;
  return pid;
}

}  // namespace

TEST_CASE("e2e failover: kill -9 of nydusd under a verifying container is invisible") {
  if (skip_without_e2e_tools()) return;
  Fixture f("recover_policy = \"failover\"");
  auto before = f.start_readers();
  CHECK(fs::exists(before.supervisor_path));
  CHECK((fs::status(before.supervisor_path).permissions() & fs::perms::all) == fs::perms(0600));

  // A forged client on the supervisor socket: neither a takeover (it would
  // get the FUSE fd) nor a save (it would plant a state) is accepted.
  auto stolen = nydus::connect_and_receive_message(before.supervisor_path, 5s);
  if (stolen.ok()) {
    CHECK(stolen->fds.empty());
    CHECK(stolen->bytes.empty());
  }
  {
    nydus::UniqueFd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    std::string junk = "forged state";
    int fds[] = {devnull.get()};
    (void)nydus::connect_and_send_message(before.supervisor_path,
                                          {reinterpret_cast<const uint8_t*>(junk.data()), junk.size()}, fds, 5s);
  }

  for (int round = 0; round < 2; ++round) {
    auto d = f.daemon();
    auto t0 = std::chrono::steady_clock::now();
    f.fail_over(d, [&](const DaemonRecord& after) {
      double recovered_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      WARN("failover " << round << ": pid " << d.pid << " -> " << after.pid << " recorded after " << recovered_ms
                       << " ms");
    });
  }
  f.check_zero_errors();
  WARN("direct reader: " << f.direct->passes() << " passes, longest read " << f.direct->max_ms() << " ms");
  std::string log = f.s.snapshotter_log();
  CHECK(log.find("refused a connection from pid " + std::to_string(::getpid())) != std::string::npos);

  auto view = f.daemon_view();
  CHECK(view["recovery_count"] == 2);
  CHECK(view["state"] == "RUNNING");
  CHECK(view["last_failover_ms"].is_number());
  f.tear_down();
}

TEST_CASE("e2e failover: kill -9 with a hot standby is taken over by the standby") {
  if (skip_without_e2e_tools()) return;
  Fixture f("recover_policy = \"failover\"\nhot_standby = true");
  auto d = f.start_readers();
  // Twice: after a takeover by the standby a new standby must be prepared,
  // or the second crash would be a cold failover.
  for (int kill = 0; kill < 2; ++kill) {
    INFO("kill " << kill);
    pid_t standby = 0;
    for (auto deadline = std::chrono::steady_clock::now() + kRecordTimeout;
         ((standby = read_standby_pid(d)) == 0 || standby == static_cast<pid_t>(d.pid)) &&
         std::chrono::steady_clock::now() < deadline;) {
      std::this_thread::sleep_for(20ms);
    }
    REQUIRE(standby > 0);
    REQUIRE(standby != static_cast<pid_t>(d.pid));
    // No process start: the standby took over.
    d = f.fail_over(d, [&](const DaemonRecord& after) { CHECK(after.pid == standby); });
    f.check_zero_errors();
  }
  WARN("hot standby failover took " << f.daemon_view()["last_failover_ms"] << " ms; direct reader longest read "
                                    << f.direct->max_ms() << " ms");
  f.tear_down();
}

TEST_CASE("e2e upgrade: hot upgrade over system.sock under a verifying container is invisible") {
  if (skip_without_e2e_tools()) return;
  Fixture f("recover_policy = \"failover\"");
  auto d = f.start_readers();

  // Not an executable file: 400, nothing touched.
  auto bad = f.upgrade((f.s.dir / "out/expected").string());
  CHECK(bad.status == 400);
  // An executable that cannot serve: the old daemon keeps serving and the
  // response says which step failed.
  auto failing = f.upgrade("/bin/false");
  INFO(failing.body);
  CHECK(failing.status == 500);
  auto failed = json::parse(failing.body);
  REQUIRE(failed["daemons"].size() == 1);
  CHECK(failed["daemons"][0]["ok"] == false);
  CHECK_FALSE(failed["daemons"][0]["error"].get<std::string>().empty());
  CHECK(f.daemon().pid == d.pid);

  // The new binary: a copy of nydusd at another path.
  fs::path next = f.s.dir / "nydusd-next";
  fs::copy_file(std::string(NYDUS_BIN_DIR) + "/nydusd", next);
  fs::permissions(next, fs::perms(0755));
  for (int round = 0; round < 2; ++round) {
    long rounds = f.count();
    auto before = f.daemon();
    auto r = f.upgrade(next.string());
    INFO(r.body);
    REQUIRE(r.status == 200);
    auto body = json::parse(r.body);
    REQUIRE(body["daemons"].size() == 1);
    CHECK(body["daemons"][0]["ok"] == true);
    CHECK(body["daemons"][0]["old_pid"] == before.pid);
    WARN("upgrade " << round << ": switch took " << body["daemons"][0]["switch_ms"] << " ms");
    auto after = f.daemon();
    CHECK(after.pid != before.pid);
    CHECK(after.binary_path == next.string());
    CHECK(after.state == "RUNNING");
    f.require_rounds(rounds + 10);
  }
  f.check_zero_errors();
  // After the upgrade, a crash fails over to the new binary as well.
  f.fail_over(f.daemon(), [&](const DaemonRecord& after) { CHECK(after.binary_path == next.string()); });
  f.check_zero_errors();
  auto view = f.daemon_view();
  CHECK(view["binary_path"] == next.string());
  CHECK(view["last_upgrade_ms"].is_number());
  auto records = f.system_get("/api/v1/daemons/records");
  REQUIRE(records.is_array());
  CHECK(records.size() == 1);
  f.tear_down();
}

TEST_CASE("e2e failover: kill -9 of the snapshotter then kill -9 of nydusd is invisible") {
  if (skip_without_e2e_tools()) return;
  Fixture f("recover_policy = \"failover\"");
  auto d = f.start_readers();
  f.s.kill9_snapshotter();
  long rounds = f.count();
  f.s.start_snapshotter();  // re-adopts the daemon and asks it for a fresh save
  REQUIRE(f.wait_rounds(rounds + 5));
  CHECK(f.daemon().pid == d.pid);
  // The re-adopted daemon's state was fetched again: a crash still fails over.
  std::string log;
  for (auto deadline = std::chrono::steady_clock::now() + kRecordTimeout;
       std::chrono::steady_clock::now() < deadline; std::this_thread::sleep_for(20ms)) {
    log = f.s.snapshotter_log();
    if (log.find("re-adopted nydusd " + d.id) != std::string::npos) break;
  }
  f.fail_over(d, [&](const DaemonRecord& after) { CHECK(after.id == d.id); });
  f.check_zero_errors();
  f.wait_containerd_reconnected();
  f.tear_down();
}

TEST_CASE("e2e policy none: a killed nydusd stays dead and its readers fail") {
  if (skip_without_e2e_tools()) return;
  Fixture f("recover_policy = \"none\"");
  auto d = f.start_readers(/*with_direct_reader=*/false);
  f.kill9(static_cast<pid_t>(d.pid));
  auto after = f.wait_record([](const DaemonRecord& r) { return r.state == "DIED"; });
  CHECK(after.pid == d.pid);  // nobody was started
  // As documented: the connection is let go, the mount stays, reads fail.
  f.check_reader_fails();
  auto view = f.daemon_view();
  CHECK(view["state"] == "DIED");
  CHECK(view["recovery_count"] == 0);
  f.tear_down();
}

TEST_CASE("e2e policy restart: a killed nydusd is replaced and new containers work") {
  if (skip_without_e2e_tools()) return;
  Fixture f("recover_policy = \"restart\"");
  auto d = f.start_readers(/*with_direct_reader=*/false);
  f.kill9(static_cast<pid_t>(d.pid));
  auto after = f.wait_replaced(d);
  CHECK(after.id == d.id);
  // As documented: the running container's overlay sits on the old
  // connection, which a restart cannot save, so its reads fail...
  f.check_reader_fails();
  // ...while a new container gets the new mount and reads every byte.
  f.s.containers.push_back("fresh");
  auto run = f.s.ctr({"run", "--rm", "--snapshotter", "nydus", "--mount",
                      "type=bind,src=" + f.out->path.string() + ",dst=/out,options=rbind:ro", kNydusImage, "fresh",
                      "/bin/sha256sum", "-c", "/out/expected"});
  INFO(run.output);
  CHECK(run.exited_ok());
  f.s.containers.pop_back();
  CHECK(f.daemon_view()["recovery_count"] == 1);
  f.tear_down();
}

TEST_CASE("e2e crash loop: back-off then FAILED with readers waiting then an upgrade recovers") {
  if (skip_without_e2e_tools()) return;
  Fixture f("recover_policy = \"failover\"\ncrash_loop_limit = 3\nrecover_backoff_ms = 100");
  f.start_readers();
  // Fault injection: a "binary" that runs nydusd and kills it with SIGKILL
  // 1.5 s after every start (the kill targets the same pid: exec).
  std::string nydusd = std::string(NYDUS_BIN_DIR) + "/nydusd";
  fs::path crashy = f.s.dir / "nydusd-crashy";
  std::ofstream(crashy) << "#!/bin/sh\n"
                        << "case \" $* \" in *\" --version \"*) exec " << nydusd << " \"$@\";; esac\n"
                        << "( sleep 1.5; kill -9 $$ ) &\n"
                        << "exec " << nydusd << " \"$@\"\n";
  fs::permissions(crashy, fs::perms(0755));
  auto r = f.upgrade(crashy.string());
  INFO(r.body);
  REQUIRE(r.status == 200);
  // Each death is failed over (with a growing back-off) until the limit.
  auto failed = f.wait_record([](const DaemonRecord& rec) { return rec.state == "FAILED"; });
  CHECK(failed.binary_path == crashy.string());
  std::string log = f.s.snapshotter_log();
  CHECK(log.find("after a back-off of") != std::string::npos);
  // FAILED: the fd stays held, readers wait instead of failing.
  CHECK(f.errors().empty());
  long rounds = f.count();
  auto fixed = f.upgrade(nydusd);
  INFO(fixed.body);
  REQUIRE(fixed.status == 200);
  auto after = f.wait_record([](const DaemonRecord& rec) { return rec.state == "RUNNING"; });
  CHECK(after.binary_path == nydusd);
  f.require_rounds(rounds + 10);
  f.check_zero_errors();
  WARN("crash loop: longest direct read " << f.direct->max_ms() << " ms (readers waited through FAILED)");
  f.tear_down();
}

TEST_CASE("e2e failover: kill -9 of a shared nydusd is invisible to its instance") {
  if (skip_without_e2e_tools()) return;
  // Shared mode: the image is attached with POST /api/v1/mount after the
  // daemon started, so only the save after that mount carries it.
  Fixture f("recover_policy = \"failover\"", "shared");
  auto d = f.start_readers();
  CHECK(d.daemon_mode == "shared");
  f.fail_over(d, [&](const DaemonRecord& after) { CHECK(after.id == d.id); });
  f.check_zero_errors();
  f.tear_down();
}
