// fscache_vm_driver: runs inside the fscache test VM (as root, see
// vm_harness.h) and drives the REAL `nydusd singleton --fscache` the way a
// supervisor (nydus-snapshotter) does, with the kernel's EROFS over fscache
// as the client:
//
//   fscache_vm_driver SCENARIO.json
//
//   {"nydusd": "<path of nydusd>", "log_dir": "<where daemon logs go>",
//    "sessions": [{
//      "name": "...", "cache_dir": "/run/cache/x", "tag": "t", "threads": 4,
//      "read_delay_ms": 0,                 the daemons' NYDUS_TEST_FSCACHE_READ_DELAY_MS
//      "config_blobs": [entry...],         preloaded with `--config {"blobs":[...]}`
//      "steps": [step...]}]}
//
// A session starts a TestSupervisor (the supervisor socket: it keeps the
// state bytes and the /dev/cachefiles fd every daemon saves), then nydusd with
// --id/--supervisor, waits for RUNNING and for its first save. Steps, in order:
//
//   {"api": METHOD, "target": T, "body": B, "status": S}
//       an API call to the current daemon and the status it must answer (4xx
//       must carry {"code","message"}); "saves": n additionally requires the
//       supervisor to have received n more saves (bind/unbind re-save).
//   {"check": {"fsid", "domain", "source", "mount", "readers", flags...}}
//       mount(2) EROFS "fsid=F[,domain_id=D]" and compare the whole tree with
//       SOURCE through tests/support/tree_compare (every byte, attributes,
//       hard links) with N concurrent readers, then unmount. Flags:
//         fail      the mount must fail (unknown or unbound fsid)
//         keep      stay mounted until the session ends (later checks run
//                   beside it)
//         remount   unmount and mount again: the kernel's cache file must
//                   serve it all (OPENs but no READ reach the daemon)
//       "switches": ["failover"|"upgrade", ...]  daemon switches made one
//                   after the other while the SAME readers run, each once a
//                   READ is in flight:
//         failover  kill -9 the daemon; a successor `nydusd singleton
//                   --upgrade` takes over from the supervisor (takeover,
//                   start: it writes `restore`)
//         upgrade   hot upgrade: the successor takes over while the old
//                   daemon serves, then the old one is told to exit (it
//                   finishes the READs in hand), exits 0, and the successor
//                   starts
//                   Every reader must finish byte-exact, without an error.
//
// At the end of a session kept mounts are unmounted, the daemon's counters
// must show no READ errors, no READ for an unknown object and no malformed
// message, and SIGTERM must end it with status 0.
//
// Output: one line per result, "ok   ..." or "FAIL ..."; daemon log tails on
// failure. Exit status: 0 all good, 1 a check failed, 2 usage, 3 setup.
#include <errno.h>
#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/http.h"
#include "common/process.h"
#include "common/unix_socket.h"
#include "tests/support/test_supervisor.h"
#include "tests/support/tree_compare.h"
#include "tests/vm/vm_driver_support.h"

namespace fs = std::filesystem;
using namespace nydus;
using nlohmann::json;

using namespace nydus::testing::vm;

namespace {

// TCG emulation is slow: generous bounds, never hit when things work.
constexpr std::chrono::seconds kStateDeadline{60};
constexpr std::chrono::seconds kExitDeadline{60};
constexpr std::chrono::seconds kInFlightDeadline{60};
constexpr std::chrono::seconds kApiTimeout{60};
constexpr std::chrono::milliseconds kPoll{20};

bool g_ok = true;

void result(bool ok, const std::string& line) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", line.c_str());
  std::fflush(stdout);
  if (!ok) g_ok = false;
}

// One nydusd process and its control API.
class Nydusd {
 public:
  static Result<std::unique_ptr<Nydusd>> start(const std::string& binary, std::vector<std::string> args,
                                               const std::string& apisock, const std::string& log,
                                               std::vector<std::pair<std::string, std::string>> env) {
    SpawnOptions so;
    so.argv = {binary, "singleton"};
    so.argv.insert(so.argv.end(), args.begin(), args.end());
    so.argv.insert(so.argv.end(), {"--apisock", apisock, "--log-level", "info"});
    so.stdout_redirect = Redirect::append_to(log);
    so.stderr_redirect = Redirect::append_to(log);
    so.parent_death_signal = SIGKILL;
    so.env = std::move(env);
    NYDUS_ASSIGN_OR_RETURN(Process p, Process::spawn(so));
    return std::unique_ptr<Nydusd>(new Nydusd(std::move(p), apisock, log));
  }

  // Waits for the API to report `state`; an error (with the log tail) if the
  // process exits or the deadline passes.
  Status wait_state(const std::string& state) {
    const auto deadline = std::chrono::steady_clock::now() + kStateDeadline;
    std::string last;
    while (std::chrono::steady_clock::now() < deadline) {
      if (process_.exited()) {
        return make_error(ErrorKind::kInternal, "nydusd {} exited ({}) before {}:\n{}", process_.pid(),
                          process_.exit_status().value_or(-1000), state, tail(read_text(log_), 30));
      }
      if (connect_unix(apisock_, std::chrono::milliseconds(200)).ok()) {
        auto r = client_.request("GET", "/api/v1/daemon", {}, std::chrono::seconds(10));
        if (r.ok() && r->status == 200) {
          last = json::parse(r->body, nullptr, false).value("state", "");
          if (last == state) return ok_status();
        }
      }
      std::this_thread::sleep_for(kPoll);  // bounded by the deadline
    }
    return make_error(ErrorKind::kTimeout, "nydusd {} did not reach {} (last {}):\n{}", process_.pid(), state, last,
                      tail(read_text(log_), 30));
  }

  Result<HttpResponse> call(const std::string& method, const std::string& target, const std::string& body = {}) {
    return client_.request(method, target, body, kApiTimeout);
  }

  Result<json> info() {
    NYDUS_ASSIGN_OR_RETURN(HttpResponse r, call("GET", "/api/v1/daemon"));
    if (r.status != 200) return make_error(ErrorKind::kInternal, "GET /api/v1/daemon: {} {}", r.status, r.body);
    auto j = json::parse(r.body, nullptr, false);
    if (j.is_discarded()) return make_error(ErrorKind::kCorrupt, "GET /api/v1/daemon: not JSON: {}", r.body);
    return j;
  }

  // The fscache counters (GET /api/v1/daemon "fscache.metrics").
  Result<json> metrics() {
    NYDUS_ASSIGN_OR_RETURN(json j, info());
    const json& m = j["fscache"]["metrics"];
    if (!m.is_object()) return make_error(ErrorKind::kCorrupt, "no fscache metrics in {}", j.dump());
    return m;
  }

  Process& process() { return process_; }
  std::string log_tail(size_t lines = 40) const { return tail(read_text(log_), lines); }

 private:
  Nydusd(Process p, std::string apisock, std::string log)
      : process_(std::move(p)), apisock_(std::move(apisock)), log_(std::move(log)), client_(apisock_) {}
  Process process_;
  std::string apisock_;
  std::string log_;
  HttpClient client_;
};

struct Check {
  std::string fsid, domain, source, mount;
  unsigned readers = 4;
  bool fail = false, keep = false, remount = false;
  std::vector<std::string> switches;  // "failover" | "upgrade", in order

  std::string options() const {
    return domain.empty() ? fmt::format("fsid={}", fsid) : fmt::format("fsid={},domain_id={}", fsid, domain);
  }
};

Check parse_check(const json& j) {
  Check c;
  c.fsid = j.value("fsid", "");
  c.domain = j.value("domain", "");
  c.source = j.value("source", "");
  c.mount = j.value("mount", "");
  c.readers = j.value("readers", 4u);
  c.fail = j.value("fail", false);
  c.keep = j.value("keep", false);
  c.remount = j.value("remount", false);
  for (const auto& sw : j.value("switches", json::array())) c.switches.push_back(sw.get<std::string>());
  return c;
}

int mount_erofs(const Check& c) {
  std::error_code ec;
  fs::create_directories(c.mount, ec);
  return ::mount("none", c.mount.c_str(), "erofs", MS_RDONLY, c.options().c_str()) == 0 ? 0 : errno;
}

// A mount that is unmounted when the scope ends unless kept (a failing check
// must not leave a mount that wedges the session's end).
class ScopedMount {
 public:
  explicit ScopedMount(std::string path) : path_(std::move(path)) {}
  ~ScopedMount() {
    if (!path_.empty()) (void)::umount2(path_.c_str(), MNT_DETACH);
  }
  // Unmounts now; false (with errno) when that fails.
  bool umount() {
    std::string p = std::move(path_);
    path_.clear();
    return ::umount2(p.c_str(), 0) == 0;
  }
  void release() { path_.clear(); }

 private:
  std::string path_;
};

std::string summary(const testing::TreeCompareResult& r) {
  return fmt::format("{} entries, {} files, {} bytes compared", r.entries, r.files, r.bytes);
}

void print_diffs(const testing::TreeCompareResult& r) {
  for (const auto& d : r.diffs) std::printf("     %s\n", d.c_str());
  std::fflush(stdout);
}

class Session {
 public:
  Session(const json& scenario, const json& session, int index)
      : nydusd_bin_(scenario.value("nydusd", "")),
        log_dir_(scenario.value("log_dir", "/run/tmp")),
        s_(session),
        name_(session.value("name", fmt::format("session{}", index))),
        supervisor_(fmt::format("/run/fscache-sup-{}.sock", index)) {}

  int run() {
    if (Status st = setup(); !st.ok()) {
      result(false, fmt::format("{}: setup: {}", name_, st.error().message()));
      return kExitSetup;
    }
    for (const auto& step : s_.value("steps", json::array())) {
      if (step.contains("api")) {
        api_step(step);
      } else if (step.contains("check")) {
        Check c = parse_check(step["check"]);
        if (!c.switches.empty()) {
          switch_check(c);
        } else {
          check(c);
        }
      } else {
        result(false, fmt::format("{}: unknown step {}", name_, step.dump()));
      }
      if (!daemon_) break;  // lost the daemon: nothing further can run
    }
    finish();
    return 0;
  }

 private:
  std::vector<std::pair<std::string, std::string>> env() const {
    int delay = s_.value("read_delay_ms", 0);
    if (delay <= 0) return {};
    return {{"NYDUS_TEST_FSCACHE_READ_DELAY_MS", std::to_string(delay)}};
  }

  Result<std::unique_ptr<Nydusd>> spawn(bool upgrade) {
    ++generation_;
    std::vector<std::string> args = {"--fscache", s_.value("cache_dir", ""), "--fscache-threads",
                                     std::to_string(s_.value("threads", 4)), "--id", "fsc-" + name_,
                                     "--supervisor", supervisor_.path()};
    if (auto tag = s_.value("tag", ""); !tag.empty()) args.insert(args.end(), {"--fscache-tag", tag});
    if (upgrade) {
      args.push_back("--upgrade");
    } else if (s_.contains("config_blobs")) {
      const std::string config = fmt::format("/run/tmp/{}-blobs.json", name_);
      std::ofstream(config) << json{{"blobs", s_["config_blobs"]}}.dump();
      args.insert(args.end(), {"--config", config});
    }
    const std::string apisock = fmt::format("/run/nydusd-{}-{}.sock", name_, generation_);
    const std::string log = fmt::format("{}/nydusd-{}-{}.log", log_dir_, name_, generation_);
    return Nydusd::start(nydusd_bin_, std::move(args), apisock, log, env());
  }

  Status setup() {
    fs::create_directories("/run/tmp");
    NYDUS_TRY(supervisor_.start());
    NYDUS_ASSIGN_OR_RETURN(daemon_, spawn(false));
    NYDUS_TRY(daemon_->wait_state("RUNNING"));
    // It saves the session (state + a dup of /dev/cachefiles) as soon as it
    // serves: from then on the supervisor holds the cache alive.
    if (!supervisor_.wait_saves(1, kStateDeadline)) {
      return make_error(ErrorKind::kTimeout, "nydusd did not save to the supervisor: {}", supervisor_.last_error());
    }
    result(supervisor_.has_fd(),
           fmt::format("{}: nydusd {} RUNNING, bound {}, saved its state and the /dev/cachefiles fd", name_,
                       daemon_->process().pid(), s_.value("cache_dir", "")));
    return ok_status();
  }

  void api_step(const json& step) {
    const std::string method = step.value("api", ""), target = step.value("target", "");
    const std::string body = step.contains("body") ? (step["body"].is_string() ? step["body"].get<std::string>()
                                                                                : step["body"].dump())
                                                   : std::string();
    const int want = step.value("status", 204);
    const uint64_t saves_before = supervisor_.saves();
    auto r = daemon_->call(method, target, body);
    if (!r.ok()) {
      result(false, fmt::format("{}: {} {}: {}", name_, method, target, r.error().message()));
      return;
    }
    bool ok = r->status == want;
    std::string note;
    if (r->status >= 400) {
      auto j = json::parse(r->body, nullptr, false);
      ok = ok && j.is_object() && j.contains("code") && j.contains("message");
      note = " " + r->body;
    }
    if (step.contains("saves")) {
      const uint64_t n = step["saves"].get<uint64_t>();
      ok = ok && supervisor_.wait_saves(saves_before + n, kStateDeadline);
      note += fmt::format(" (supervisor saves {} -> {})", saves_before, supervisor_.saves());
    }
    if (step.contains("blobs")) {  // GET: how many entries it lists
      auto j = json::parse(r->body, nullptr, false);
      ok = ok && j.is_object() && j["blobs"].is_array() && j["blobs"].size() == step["blobs"].get<size_t>();
      note = fmt::format(" {} entries", j.is_object() && j["blobs"].is_array() ? j["blobs"].size() : 0);
    }
    const std::string shown = body.size() > 60 ? body.substr(0, 60) + "..." : body;
    result(ok, fmt::format("{}: {} {} {} -> {} (want {}){}", name_, method, target, shown, r->status, want, note));
  }

  void check(const Check& c) {
    const auto t0 = std::chrono::steady_clock::now();
    int err = mount_erofs(c);
    const double mount_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (c.fail) {
      if (err == 0) ::umount2(c.mount.c_str(), MNT_DETACH);
      result(err != 0, fmt::format("{}: mount {} must fail: {}", name_, c.options(),
                                   err ? std::strerror(err) : "it succeeded"));
      return;
    }
    if (err != 0) return result(false, fmt::format("{}: mount {}: {}", name_, c.options(), std::strerror(err)));
    ScopedMount guard(c.mount);
    testing::TreeCompareOptions o;
    o.readers = c.readers;
    const auto t1 = std::chrono::steady_clock::now();
    auto r = testing::diff_trees(c.source, c.mount, o);
    const double cmp_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    result(r.equal(), fmt::format("{}: {}: {} with {} (mount {:.2f}s, compare {:.2f}s, {} readers)", name_,
                                  c.options(), summary(r), c.source, mount_s, cmp_s, c.readers));
    print_diffs(r);
    if (c.keep) {
      guard.release();
      kept_.push_back(c.mount);
      return;
    }
    if (!guard.umount()) return result(false, fmt::format("{}: umount {}: {}", name_, c.mount, std::strerror(errno)));
    if (!c.remount) return;
    // The kernel's cache file holds every byte now: a second mount is served
    // from it, the daemon only answers the OPENs (fscache-facts.md §2.7).
    auto before = daemon_->metrics();
    int err2 = mount_erofs(c);
    if (err2 != 0) return result(false, fmt::format("{}: remount {}: {}", name_, c.options(), std::strerror(err2)));
    ScopedMount guard2(c.mount);
    auto r2 = testing::diff_trees(c.source, c.mount, o);
    auto after = daemon_->metrics();
    if (!before.ok() || !after.ok()) return result(false, fmt::format("{}: remount: no daemon counters", name_));
    const auto reads = (*after)["reads"].get<uint64_t>() - (*before)["reads"].get<uint64_t>();
    const auto opens = (*after)["opens"].get<uint64_t>() - (*before)["opens"].get<uint64_t>();
    result(r2.equal() && reads == 0 && opens > 0,
           fmt::format("{}: remount {}: {}; {} OPEN(s), {} READ(s) reached nydusd", name_, c.options(), summary(r2),
                       opens, reads));
    print_diffs(r2);
    if (!guard2.umount()) result(false, fmt::format("{}: umount {}: {}", name_, c.mount, std::strerror(errno)));
  }

  // Waits until the daemon is serving a READ (the read-delay hook makes each
  // one last); false on timeout.
  bool wait_read_in_flight(Nydusd& d) {
    const auto deadline = std::chrono::steady_clock::now() + kInFlightDeadline;
    while (std::chrono::steady_clock::now() < deadline) {
      auto m = d.metrics();
      if (m.ok() && (*m)["reads_in_flight"].get<uint64_t>() > 0) return true;
      std::this_thread::sleep_for(kPoll);  // bounded by the deadline
    }
    return false;
  }

  // Crash failovers (kill -9) and hot upgrades under one set of
  // byte-verifying readers.
  void switch_check(const Check& c) {
    int err = mount_erofs(c);
    if (err != 0) return result(false, fmt::format("{}: switch mount {}: {}", name_, c.options(), std::strerror(err)));
    ScopedMount guard(c.mount);
    testing::TreeCompareOptions o;
    o.readers = c.readers;
    testing::TreeCompareResult r;
    const auto t0 = std::chrono::steady_clock::now();
    std::thread readers([&] { r = testing::diff_trees(c.source, c.mount, o); });
    for (const auto& sw : c.switches) {
      if (sw != "failover" && sw != "upgrade") {
        result(false, fmt::format("{}: unknown switch {}", name_, sw));
        std::_Exit(kExitUsage);  // the readers may block: do not join them
      }
      switch_daemon(c, sw == "upgrade");
    }
    readers.join();
    const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    result(r.equal(), fmt::format("{}: {} through {} switch(es): readers finished in {:.2f}s without an error: {}",
                                  name_, c.options(), c.switches.size(), total, summary(r)));
    print_diffs(r);
    if (!guard.umount()) result(false, fmt::format("{}: umount {}: {}", name_, c.mount, std::strerror(errno)));
    auto m = daemon_->metrics();
    if (!m.ok()) return result(false, fmt::format("{}: counters: {}", name_, m.error().message()));
    result((*m)["read_errors"].get<uint64_t>() == 0 && (*m)["read_unknown_object"].get<uint64_t>() == 0,
           fmt::format("{}: last successor's counters {}", name_, m->dump()));
  }

  // One switch while the readers run: waits for a READ in flight, then
  // kills (failover) or upgrades the daemon and lets a successor take over.
  void switch_daemon(const Check& c, bool upgrade) {
    const char* what = upgrade ? "hot upgrade" : "failover";
    const bool in_flight = wait_read_in_flight(*daemon_);
    const pid_t old_pid = daemon_->process().pid();
    const auto t0 = std::chrono::steady_clock::now();
    std::unique_ptr<Nydusd> old = std::move(daemon_);
    int old_status = -1000;
    // A failed switch leaves the readers blocked in the kernel (a READ
    // nobody completes waits forever, killably): report and end the whole
    // driver, which kills them, instead of joining them.
    auto fail_step = [&](const std::string& step, const Error& e) {
      result(false, fmt::format("{}: {}: {}: {}", name_, what, step, e.message()));
      std::printf("     old daemon log:\n%s\n", old->log_tail().c_str());
      std::fflush(stdout);
      std::_Exit(kExitCheckFailed);
    };
    if (!upgrade) {
      // The crash: every anon fd of the daemon closes; the READ it held is
      // still pending in the kernel and the readers block until a successor
      // writes `restore`.
      (void)old->process().kill(SIGKILL);
      auto s = old->process().wait(kExitDeadline);
      old_status = s.ok() ? *s : -1000;
    }
    const uint64_t serves = supervisor_.serves();
    auto next = spawn(/*upgrade=*/true);
    if (!next.ok()) return fail_step("spawn the successor", next.error());
    std::unique_ptr<Nydusd> successor = std::move(*next);
    if (Status st = successor->wait_state("INIT"); !st.ok()) return fail_step("successor INIT", st.error());
    supervisor_.serve_next();
    auto take = successor->call("PUT", "/api/v1/daemon/fuse/takeover");
    if (!take.ok() || take->status != 204) {
      return fail_step("takeover", take.ok() ? Error(ErrorKind::kInternal, fmt::format("{} {}\n{}", take->status,
                                                                                      take->body, successor->log_tail()))
                                             : take.error());
    }
    if (Status st = successor->wait_state("READY"); !st.ok()) return fail_step("successor READY", st.error());
    const bool served = supervisor_.wait_serves(serves + 1, kStateDeadline);
    if (upgrade) {
      // The old daemon stops between requests (the READs in hand are
      // completed), exits 0 and leaves the cache to the successor, which
      // starts (and writes `restore`) only after that.
      auto ex = old->call("PUT", "/api/v1/daemon/exit");
      if (!ex.ok() || ex->status != 204) {
        return fail_step("exit the old daemon", ex.ok() ? Error(ErrorKind::kInternal, ex->body) : ex.error());
      }
      auto s = old->process().wait(kExitDeadline);
      old_status = s.ok() ? *s : -1000;
    }
    auto start = successor->call("PUT", "/api/v1/daemon/start");
    if (!start.ok() || start->status != 204) {
      return fail_step("start", start.ok() ? Error(ErrorKind::kInternal, fmt::format("{} {}\n{}", start->status,
                                                                                    start->body, successor->log_tail()))
                                           : start.error());
    }
    daemon_ = std::move(successor);
    const double gap = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const bool ended_right = upgrade ? old_status == 0 : old_status == -SIGKILL;
    result(in_flight && ended_right && served,
           fmt::format("{}: {} {}: nydusd {} {} with a READ in flight{}; successor {} took over from the supervisor "
                       "and serves {:.2f}s later",
                       name_, what, c.options(), old_pid, upgrade ? "exited" : "was killed (SIGKILL)",
                       ended_right ? "" : fmt::format(" (status {})", old_status), daemon_->process().pid(), gap));
    if (!in_flight || !ended_right) std::printf("     old daemon log:\n%s\n", old->log_tail().c_str());
  }

  void finish() {
    for (auto it = kept_.rbegin(); it != kept_.rend(); ++it) {
      if (::umount2(it->c_str(), 0) != 0) {
        result(false, fmt::format("{}: umount {}: {}", name_, *it, std::strerror(errno)));
        ::umount2(it->c_str(), MNT_DETACH);
      }
    }
    if (!daemon_) return;
    auto m = daemon_->metrics();
    if (m.ok()) {
      bool clean = true;
      for (const char* k : {"read_errors", "read_unknown_object", "malformed"}) {
        clean = clean && (*m)[k].get<uint64_t>() == 0;
      }
      result(clean, fmt::format("{}: daemon counters {}", name_, m->dump()));
    } else {
      result(false, fmt::format("{}: daemon counters: {}", name_, m.error().message()));
    }
    (void)daemon_->process().kill(SIGTERM);
    auto status = daemon_->process().wait(kExitDeadline);
    result(status.ok() && *status == 0,
           fmt::format("{}: SIGTERM: nydusd exited with status {}", name_, status.ok() ? *status : -1000));
    if (!g_ok) std::printf("     last daemon log:\n%s\n", daemon_->log_tail().c_str());
    std::fflush(stdout);
  }

  const std::string nydusd_bin_;
  const std::string log_dir_;
  const json& s_;
  const std::string name_;
  testing::TestSupervisor supervisor_;
  std::unique_ptr<Nydusd> daemon_;
  std::vector<std::string> kept_;
  int generation_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fscache_vm_driver SCENARIO.json\n");
    return kExitUsage;
  }
  ::signal(SIGPIPE, SIG_IGN);
  auto scenario = json::parse(read_text(argv[1]), nullptr, false);
  if (scenario.is_discarded() || !scenario.is_object() || !scenario.contains("sessions")) {
    std::fprintf(stderr, "fscache_vm_driver: %s is not a scenario\n", argv[1]);
    return kExitUsage;
  }
  try {
    int index = 0;
    for (const auto& s : scenario["sessions"]) {
      // Each session binds /dev/cachefiles anew; it is exclusive, so the
      // previous session (daemon and supervisor) must be gone first.
      Session session(scenario, s, index++);
      if (int rc = session.run(); rc != 0) return rc;
    }
  } catch (const std::exception& e) {
    std::printf("FAIL driver: %s\n", e.what());
    return kExitSetup;
  }
  return g_ok ? 0 : kExitCheckFailed;
}
