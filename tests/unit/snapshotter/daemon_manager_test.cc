// The nydusd daemon manager without nydusd: golden command lines, config
// template filling, records, the liveness monitor, and the manager's
// refcounting, persistence and recovery driven through fakes at its process
// boundaries (a launcher that starts `sleep` stand-ins, a control API client
// answering from memory). The stand-ins are real processes, so pidfds,
// adoption, SIGTERM and reaping are real; every one is killed by pid at the
// end of its test.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <fstream>
#include <map>
#include <mutex>
#include <set>

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include "common/file_write.h"
#include "common/unix_socket.h"
#include "nydusd/fscache/blob_entry.h"
#include "snapshotter/daemon_client.h"
#include "snapshotter/daemon_command.h"
#include "snapshotter/daemon_config.h"
#include "snapshotter/daemon_launcher.h"
#include "snapshotter/daemon_manager.h"
#include "snapshotter/nydus_mounter.h"
#include "snapshotter/store.h"
#include "tests/support/temp_dir.h"

using namespace nydus;
using namespace nydus::snapshotter;
using nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

template <typename T>
T must(Result<T> r) {
  if (!r.ok()) FAIL(r.error().message());
  return std::move(r).value();
}
void must(const Status& s) {
  if (!s.ok()) FAIL(s.error().message());
}

std::string joined(const std::vector<std::string>& v) { return fmt::format("{}", fmt::join(v, " ")); }

// ---------------------------------------------------------------------------
// Fakes at the process boundary

// What a fake nydusd "is": shared between the launcher (its process) and the
// clients (its API), keyed by api socket.
struct FakeWorld {
  std::mutex mu;
  std::map<std::string, std::string> state;                 // api socket -> reported state
  std::map<std::string, std::vector<std::string>> calls;    // api socket -> "POST /x bootstrap", "DELETE /x"
  std::map<std::string, UniqueFd> watch_peers;              // api socket -> far end of the watch connection
  std::map<pid_t, std::vector<std::string>> cmdlines;       // what each spawned stand-in "runs"
  std::vector<pid_t> pids;
  int spawns = 0;
  bool fail_start = false;  // the next spawn exits at once

  std::vector<std::string> calls_of(const std::string& sock) {
    std::lock_guard<std::mutex> lock(mu);
    return calls[sock];
  }
};

class FakeClient final : public DaemonClient {
 public:
  FakeClient(FakeWorld& world, std::string sock) : world_(world), sock_(std::move(sock)) {}
  const std::string& api_socket() const override { return sock_; }
  Result<DaemonInfo> get_info(std::chrono::milliseconds) override {
    std::lock_guard<std::mutex> lock(world_.mu);
    auto it = world_.state.find(sock_);
    if (it == world_.state.end()) return make_error(ErrorKind::kNotReady, "{} refuses", sock_);
    return DaemonInfo{"", it->second, json::object()};
  }
  Status mount(const std::string& vpath, const std::string& bootstrap, const std::string& config) override {
    std::lock_guard<std::mutex> lock(world_.mu);
    CHECK(json::parse(config)["device"]["id"] == vpath);
    world_.calls[sock_].push_back("POST " + vpath + " " + bootstrap);
    return ok_status();
  }
  Status umount(const std::string& vpath) override {
    std::lock_guard<std::mutex> lock(world_.mu);
    world_.calls[sock_].push_back("DELETE " + vpath);
    return ok_status();
  }
  Status bind_blob(const json& entry) override {
    std::lock_guard<std::mutex> lock(world_.mu);
    world_.calls[sock_].push_back("PUT blobs " + entry.value("id", ""));
    return ok_status();
  }
  Status unbind_blob(const std::string& domain_id, const std::string& blob_id) override {
    std::lock_guard<std::mutex> lock(world_.mu);
    world_.calls[sock_].push_back("DELETE blobs " + domain_id + "/" + blob_id);
    return ok_status();
  }
  Status start() override { return ok_status(); }
  Status exit() override { return ok_status(); }
  Status send_fd() override { return ok_status(); }
  Status takeover() override { return ok_status(); }
  Result<UniqueFd> connect_watch() override {
    auto pair = must(unix_socketpair());
    std::lock_guard<std::mutex> lock(world_.mu);
    world_.watch_peers[sock_] = std::move(pair.second);
    return std::move(pair.first);
  }

 private:
  FakeWorld& world_;
  std::string sock_;
};

class FakeClients final : public DaemonClientFactory {
 public:
  explicit FakeClients(FakeWorld& world) : world_(world) {}
  std::unique_ptr<DaemonClient> make(const std::string& sock) override {
    return std::make_unique<FakeClient>(world_, sock);
  }

 private:
  FakeWorld& world_;
};

std::string arg_after(const std::vector<std::string>& args, const std::string& flag) {
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == flag) return args[i + 1];
  }
  return {};
}

// Starts `sleep` for every daemon; the daemon "serves" (RUNNING) at once
// unless told to fail. Kills every stand-in by pid at the end.
class FakeLauncher final : public DaemonLauncher {
 public:
  explicit FakeLauncher(FakeWorld& world) : world_(world) {}
  ~FakeLauncher() override {
    for (pid_t pid : world_.pids) ::kill(pid, SIGKILL);
  }
  Result<Process> spawn(const std::string& binary, const std::vector<std::string>& args,
                        const std::string& output_file) override {
    SpawnOptions o;
    bool fail = false;
    {
      std::lock_guard<std::mutex> lock(world_.mu);
      fail = std::exchange(world_.fail_start, false);
      ++world_.spawns;
    }
    if (fail) {
      o.argv = {"/bin/sh", "-c", "echo 'fake nydusd: cannot mount' >&2; exit 3"};
    } else {
      o.argv = {"/bin/sleep", "1000"};
    }
    if (!output_file.empty()) o.stderr_redirect = Redirect::append_to(output_file);
    NYDUS_ASSIGN_OR_RETURN(Process p, Process::spawn(o));
    p.detach();
    std::lock_guard<std::mutex> lock(world_.mu);
    std::vector<std::string> cmd{binary};
    cmd.insert(cmd.end(), args.begin(), args.end());
    world_.cmdlines[p.pid()] = cmd;
    world_.pids.push_back(p.pid());
    if (!fail) world_.state[arg_after(args, "--apisock")] = "RUNNING";
    last_args = args;
    return p;
  }
  Result<Process> adopt(pid_t pid) override {
    NYDUS_ASSIGN_OR_RETURN(Process p, Process::adopt(pid));
    p.detach();
    return p;
  }
  Result<std::vector<std::string>> cmdline(pid_t pid) override {
    std::lock_guard<std::mutex> lock(world_.mu);
    auto it = world_.cmdlines.find(pid);
    if (it != world_.cmdlines.end()) return it->second;
    return read_proc_cmdline(pid);
  }
  Result<BinaryVersion> version(const std::string& binary) override {
    if (broken.count(binary)) return make_error(ErrorKind::kNotFound, "{}: no such file", binary);
    return BinaryVersion{"v9.9.9", "abc123"};
  }

  std::vector<std::string> last_args;
  std::set<std::string> broken;  // binaries whose --version fails

 private:
  FakeWorld& world_;
};

// Records deaths for the test.
class DeathRecorder final : public DaemonDeathHandler {
 public:
  void on_daemon_death(Daemon& d) override {
    std::lock_guard<std::mutex> lock(mu);
    dead.push_back(d.id());
    cv.notify_all();
  }
  bool wait_for(size_t n) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, 10s, [&] { return dead.size() >= n; });
  }
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> dead;
};

bool process_alive(pid_t pid) { return ::kill(pid, 0) == 0; }

// Waits (bounded) until a process has exited: its pidfd becomes readable
// (whoever reaps it, the manager or nobody yet).
bool wait_gone(pid_t pid) {
  auto p = Process::adopt(pid);
  if (!p.ok()) return true;
  p->detach();
  pollfd pfd{p->pidfd(), POLLIN, 0};
  return ::poll(&pfd, 1, 10000) == 1;
}

struct ManagerFixture {
  testing::TempDir dir{"nydus-dm"};
  std::string root = (dir / "root").string();
  FakeWorld world;
  FakeLauncher launcher{world};
  FakeClients clients{world};
  std::unique_ptr<MetaStore> store;

  ManagerFixture() {
    fs::create_directories(root + "/snapshots");
    store = must(MetaStore::open(root + "/snapshotter.db"));
  }

  DaemonManagerOptions options(DaemonMode mode) {
    DaemonManagerOptions o;
    o.root = root;
    o.nydusd_path = "/usr/bin/nydusd";
    o.mode = mode;
    o.config_template = json::parse(R"({"device":{"backend":{"type":"localfs","config":{"dir":"/blobs"}},
        "cache":{"type":"blobcache","config":{"work_dir":"/x"}}},"mode":"direct","digest_validate":false})");
    o.cache_dir = root + "/cache";
    o.log_dir = root + "/logs";
    o.launch.thread_num = 4;
    o.start_timeout = 5s;
    return o;
  }

  std::unique_ptr<DaemonManager> open(DaemonMode mode) {
    return must(DaemonManager::open(options(mode), *store, launcher, clients));
  }

  RafsMountRequest request(const std::string& snapshot) {
    fs::create_directories(root + "/snapshots/" + snapshot + "/fs/image");
    std::string boot = root + "/snapshots/" + snapshot + "/fs/image/image.boot";
    std::ofstream(boot) << "boot";
    return RafsMountRequest{snapshot, boot, "image-" + snapshot};
  }

  std::vector<DaemonRecord> daemon_records() {
    auto tx = must(store->begin(Transaction::Mode::kRead));
    return must(store->list_daemons(tx));
  }
  std::vector<InstanceRecord> instance_records() {
    auto tx = must(store->begin(Transaction::Mode::kRead));
    return must(store->list_instances(tx));
  }
};

}  // namespace

// ---------------------------------------------------------------------------
// Command lines

TEST_CASE("daemon_args: the reference's golden string and field order") {
  DaemonCommand c;
  c.mode = "singleton";
  c.fscache_dir = "fs_cache_dir";
  c.fscache_threads = 4;
  c.upgrade = true;
  c.apisock = "/dummy/apisock";
  CHECK(joined(daemon_args(c)) == "singleton --fscache fs_cache_dir --fscache-threads 4 --upgrade --apisock /dummy/apisock");
}

TEST_CASE("dedicated and shared fusedev command lines") {
  DaemonPaths p = daemon_paths("/r", "/r/logs", "cl2m8ru7k0b0rrs0q1f0");
  CHECK(p.api_socket == "/r/socket/cl2m8ru7k0b0rrs0q1f0/api.sock");
  CHECK(p.config_file == "/r/config/cl2m8ru7k0b0rrs0q1f0/config.json");
  CHECK(p.log_file == "/r/logs/cl2m8ru7k0b0rrs0q1f0/nydusd.log");
  DaemonLaunchSettings s;
  s.thread_num = 4;
  s.log_level = "info";
  auto dedicated = dedicated_fuse_command(p, "cl2m8ru7k0b0rrs0q1f0", "/r/snapshots/7/fs/image/image.boot",
                                          "/r/snapshots/7/mnt", s);
  CHECK(joined(daemon_args(dedicated)) ==
        "fuse --thread-num 4 --config /r/config/cl2m8ru7k0b0rrs0q1f0/config.json "
        "--bootstrap /r/snapshots/7/fs/image/image.boot --mountpoint /r/snapshots/7/mnt "
        "--apisock /r/socket/cl2m8ru7k0b0rrs0q1f0/api.sock --log-level info "
        "--log-file /r/logs/cl2m8ru7k0b0rrs0q1f0/nydusd.log --failover-policy resend");
  auto shared = shared_fuse_command(p, "cl2m8ru7k0b0rrs0q1f0", "/r/mnt", s);
  CHECK(joined(daemon_args(shared)) ==
        "fuse --thread-num 4 --mountpoint /r/mnt --apisock /r/socket/cl2m8ru7k0b0rrs0q1f0/api.sock "
        "--log-level info --log-file /r/logs/cl2m8ru7k0b0rrs0q1f0/nydusd.log --failover-policy resend");

  // With a supervisor (recover_policy=failover), --id comes with it, in the
  // reference's positions; log_to_stdout drops --log-file; "flush" reaches
  // nydusd as "resend" (our nydusd has no flush).
  s.supervisor = "/r/supervisor/cl2m8ru7k0b0rrs0q1f0.sock";
  s.log_to_stdout = true;
  s.thread_num = 0;
  s.failover_policy = FailoverPolicy::kFlush;
  s.upgrade = true;
  auto failover = dedicated_fuse_command(p, "cl2m8ru7k0b0rrs0q1f0", "/b", "/m", s);
  CHECK(joined(daemon_args(failover)) ==
        "fuse --upgrade --id cl2m8ru7k0b0rrs0q1f0 --config /r/config/cl2m8ru7k0b0rrs0q1f0/config.json "
        "--bootstrap /b --mountpoint /m --apisock /r/socket/cl2m8ru7k0b0rrs0q1f0/api.sock --log-level info "
        "--supervisor /r/supervisor/cl2m8ru7k0b0rrs0q1f0.sock --failover-policy resend");
}

TEST_CASE("fscache singleton command lines") {
  DaemonPaths p = daemon_paths("/r", "/r/logs", "cl2m8ru7k0b0rrs0q1f0");
  DaemonLaunchSettings s;
  s.thread_num = 4;
  s.supervisor = "/r/supervisor/cl2m8ru7k0b0rrs0q1f0.sock";
  CHECK(joined(daemon_args(fscache_singleton_command(p, "cl2m8ru7k0b0rrs0q1f0", "/r/cache/fscache", s))) ==
        "singleton --fscache /r/cache/fscache --fscache-threads 4 --id cl2m8ru7k0b0rrs0q1f0 "
        "--apisock /r/socket/cl2m8ru7k0b0rrs0q1f0/api.sock --log-level info "
        "--supervisor /r/supervisor/cl2m8ru7k0b0rrs0q1f0.sock --log-file /r/logs/cl2m8ru7k0b0rrs0q1f0/nydusd.log");
  // A successor takes the cache dir from the saved state.
  s.upgrade = true;
  p.api_socket = "/r/socket/cl2m8ru7k0b0rrs0q1f0/api1.sock";
  CHECK(joined(daemon_args(fscache_singleton_command(p, "cl2m8ru7k0b0rrs0q1f0", "/r/cache/fscache", s))) ==
        "singleton --upgrade --id cl2m8ru7k0b0rrs0q1f0 --apisock /r/socket/cl2m8ru7k0b0rrs0q1f0/api1.sock "
        "--log-level info --supervisor /r/supervisor/cl2m8ru7k0b0rrs0q1f0.sock "
        "--log-file /r/logs/cl2m8ru7k0b0rrs0q1f0/nydusd.log");
}

TEST_CASE("the fscache binding carries the template's backend and is one nydusd accepts") {
  auto v1 = must(parse_nydusd_config_template(
      R"({"device":{"backend":{"type":"localfs","config":{"dir":"/blobs"}},
          "cache":{"type":"blobcache","config":{"work_dir":"/ignored"}}},"digest_validate":true})",
      "test"));
  json e = fscache_blob_entry(v1, "cl2m8ru7k0b0rrs0q1f0", "/r/snapshots/7/fs/image/image.boot", "/r/cache");
  CHECK(e["type"] == "bootstrap");
  CHECK(e["id"] == "cl2m8ru7k0b0rrs0q1f0");
  CHECK(e["config_v2"]["backend"] == json::parse(R"({"type":"localfs","localfs":{"dir":"/blobs"}})"));
  CHECK(e["config_v2"]["cache"]["type"] == "fscache");
  CHECK(e["config_v2"]["metadata_path"] == "/r/snapshots/7/fs/image/image.boot");
  // The contract with nydusd: its own parser takes the entry as sent.
  auto parsed = nydus::fscache::parse_blob_entry(e.dump());
  REQUIRE(parsed.ok());
  CHECK(parsed->id == "cl2m8ru7k0b0rrs0q1f0");
  CHECK(parsed->effective_domain() == "cl2m8ru7k0b0rrs0q1f0");  // the kernel's "erofs,<fsid>" volume
  CHECK(parsed->metadata_path == "/r/snapshots/7/fs/image/image.boot");
  CHECK(parsed->cache_mode == nydus::fscache::CacheMode::kFscache);
  CHECK(parsed->work_dir == "/r/cache");
  CHECK(parsed->storage.validate);

  auto v2 = must(parse_nydusd_config_template(
      R"({"version":2,"backend":{"type":"localfs","localfs":{"dir":"/b2"}},"cache":{"type":"filecache"}})", "t"));
  json e2 = fscache_blob_entry(v2, "x", "/boot", "/c");
  CHECK(e2["config_v2"]["backend"]["localfs"]["dir"] == "/b2");
  auto parsed2 = nydus::fscache::parse_blob_entry(e2.dump());
  REQUIRE(parsed2.ok());
  CHECK_FALSE(parsed2->storage.validate);
}

TEST_CASE("daemon ids are unique 20-character xids") {
  std::set<std::string> ids;
  for (int i = 0; i < 1000; ++i) {
    std::string id = new_daemon_id();
    REQUIRE(id.size() == kDaemonIdLength);
    for (char c : id) CHECK(((c >= '0' && c <= '9') || (c >= 'a' && c <= 'v')));
    ids.insert(id);
  }
  CHECK(ids.size() == 1000);
}

TEST_CASE("nydusd --version output and the pid identity check") {
  auto v = must(parse_version_output("Version:    v0.1.0\nGit Commit: 0123abc\nBuild Time: now\n"));
  CHECK(v.version == "v0.1.0");
  CHECK(v.git_commit == "0123abc");
  CHECK(v.display() == "v0.1.0 0123abc");
  CHECK(parse_version_output("nonsense").error().kind() == ErrorKind::kCorrupt);

  std::vector<std::string> cmd{"/usr/bin/nydusd", "fuse", "--mountpoint", "/m", "--apisock", "/r/socket/x/api.sock"};
  CHECK(cmdline_serves_api_socket(cmd, "/r/socket/x/api.sock"));
  CHECK_FALSE(cmdline_serves_api_socket(cmd, "/r/socket/y/api.sock"));
  CHECK_FALSE(cmdline_serves_api_socket({"/bin/sleep", "1000"}, "/r/socket/x/api.sock"));
  CHECK(cmdline_serves_api_socket({"nydusd", "-A", "/s"}, "/s"));
  // Our own command line, read from /proc.
  auto self = must(read_proc_cmdline(::getpid()));
  CHECK_FALSE(self.empty());
}

// ---------------------------------------------------------------------------
// Config

TEST_CASE("the config template is filled per instance and written atomically") {
  auto tmpl = must(parse_nydusd_config_template(
      R"({"device":{"backend":{"type":"localfs","config":{"dir":"/blobs"}},
          "cache":{"type":"blobcache","config":{"work_dir":"/ignored","compressed":false}}},
          "mode":"direct","digest_validate":false,"fs_prefetch":{"enable":false}})",
      "test"));
  json c = instance_config(tmpl, "42", "/root/cache");
  CHECK(c["device"]["id"] == "/42");
  CHECK(c["device"]["cache"]["config"]["work_dir"] == "/root/cache");
  CHECK(c["device"]["cache"]["config"]["compressed"] == false);
  CHECK(c["device"]["backend"]["config"]["dir"] == "/blobs");
  CHECK(c["mode"] == "direct");
  CHECK(tmpl["device"]["cache"]["config"]["work_dir"] == "/ignored");  // a copy

  // No cache section: blobcache is added.
  auto bare = must(parse_nydusd_config_template(R"({"device":{"backend":{"type":"localfs","config":{"dir":"/b"}}}})", "t"));
  CHECK(instance_config(bare, "1", "/c")["device"]["cache"] == json::parse(R"({"type":"blobcache","config":{"work_dir":"/c"}})"));
  // v2
  auto v2 = must(parse_nydusd_config_template(R"({"version":2,"backend":{"type":"localfs","localfs":{"dir":"/b"}},
                                                  "cache":{"type":"filecache"}})", "t"));
  json c2 = instance_config(v2, "9", "/c");
  CHECK(c2["id"] == "/9");
  CHECK(c2["cache"]["filecache"]["work_dir"] == "/c");

  CHECK(parse_nydusd_config_template("{", "t").error().kind() == ErrorKind::kInvalidArgument);
  CHECK(parse_nydusd_config_template("[]", "t").error().kind() == ErrorKind::kInvalidArgument);
  CHECK(parse_nydusd_config_template(R"({"blobs":[]})", "t").error().kind() == ErrorKind::kInvalidArgument);

  // The packaged default is a valid template.
  auto packaged = must(load_nydusd_config_template(std::string(NYDUS_SOURCE_DIR) + "/packaging/nydusd-config.fusedev.json"));
  CHECK(packaged["device"]["backend"]["type"] == "localfs");

  testing::TempDir dir("nydus-cfg");
  std::string path = (dir / "config.json").string();
  must(nydus::write_file_atomic(path, c.dump(), 0600, nydus::Durability::kDurable));
  must(nydus::write_file_atomic(path, c.dump(2), 0600, nydus::Durability::kDurable));
  std::ifstream in(path);
  CHECK(json::parse(in) == c);
  int files = 0;
  for (auto& e : fs::directory_iterator(dir.path())) {
    (void)e;
    ++files;
  }
  CHECK(files == 1);  // no temporary file left behind
  CHECK((fs::status(path).permissions() & fs::perms::others_read) == fs::perms::none);
}

// ---------------------------------------------------------------------------
// Records

TEST_CASE("daemon and instance records round-trip through SQLite") {
  testing::TempDir dir("nydus-rec");
  auto store = must(MetaStore::open(dir / "db"));
  DaemonRecord d;
  d.id = new_daemon_id();
  d.pid = 4242;
  d.api_socket = "/r/socket/" + d.id + "/api.sock";
  d.mountpoint = "/r/snapshots/3/mnt";
  d.daemon_mode = "dedicated";
  d.fs_driver = "fusedev";
  d.binary_path = "/usr/bin/nydusd";
  d.version = "v0.1.0 abc";
  d.state = "RUNNING";
  d.config_path = "/r/config/" + d.id + "/config.json";
  d.log_file = "/r/logs/" + d.id + "/nydusd.log";
  InstanceRecord a{0, "3", d.id, "img", "/r/snapshots/3/mnt", "/r/snapshots/3/fs/image/image.boot", "{}"};
  InstanceRecord b{0, "5", d.id, "img2", "/r/mnt/5", "/boot5", "{}"};
  {
    auto tx = must(store->begin(Transaction::Mode::kWrite));
    must(store->insert_daemon(tx, d));
    must(store->insert_instance(tx, a));
    must(store->insert_instance(tx, b));
    must(tx.commit());
  }
  CHECK(b.seq > a.seq);
  store.reset();
  store = must(MetaStore::open(dir / "db"));
  auto tx = must(store->begin(Transaction::Mode::kRead));
  DaemonRecord got = must(store->get_daemon(tx, d.id));
  CHECK(got.pid == d.pid);
  CHECK(got.api_socket == d.api_socket);
  CHECK(got.mountpoint == d.mountpoint);
  CHECK(got.daemon_mode == d.daemon_mode);
  CHECK(got.binary_path == d.binary_path);
  CHECK(got.version == d.version);
  CHECK(got.state == d.state);
  CHECK(got.config_path == d.config_path);
  CHECK(got.log_file == d.log_file);
  auto insts = must(store->list_instances(tx));
  REQUIRE(insts.size() == 2);
  CHECK(insts[0].snapshot_id == "3");
  CHECK(insts[1].snapshot_id == "5");
  CHECK(insts[1].bootstrap == "/boot5");
}

// ---------------------------------------------------------------------------
// Liveness

TEST_CASE("the liveness monitor reports a process exit and an API hang-up once each") {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<LivenessEvent> events;
  auto monitor = must(LivenessMonitor::create([&](const LivenessEvent& e) {
    std::lock_guard<std::mutex> lock(mu);
    events.push_back(e);
    cv.notify_all();
  }));
  auto wait_events = [&](size_t n) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, 10s, [&] { return events.size() >= n; });
  };
  SpawnOptions o;
  o.argv = {"/bin/sleep", "1000"};
  o.parent_death_signal = SIGKILL;
  Process p = must(Process::spawn(o));
  auto [ours, theirs] = must(unix_socketpair());
  must(monitor->watch("d1", p.pidfd(), std::move(ours)));
  CHECK(monitor->watching("d1"));

  // The API side hangs up while the process lives: a hang-up event only.
  theirs.reset();
  REQUIRE(wait_events(1));
  CHECK(events[0].daemon_id == "d1");
  CHECK(events[0].kind == LivenessEvent::Kind::kApiHangup);
  CHECK(monitor->watching("d1"));

  must(p.kill(SIGKILL));
  REQUIRE(wait_events(2));
  CHECK(events[1].kind == LivenessEvent::Kind::kProcessExited);
  CHECK_FALSE(monitor->watching("d1"));

  // Unwatched daemons report nothing.
  Process q = must(Process::spawn(o));
  must(monitor->watch("d2", q.pidfd(), UniqueFd()));
  monitor->unwatch("d2");
  must(q.kill(SIGKILL));
  must(q.wait(5s));
  monitor->stop();
  CHECK(events.size() == 2);
}

// ---------------------------------------------------------------------------
// The manager with fakes

TEST_CASE("dedicated mode: one daemon per image with idempotent mounts and a stop on release") {
  ManagerFixture f;
  auto m = f.open(DaemonMode::kDedicated);
  std::string mp1 = must(m->mount(f.request("11")));
  CHECK(mp1 == f.root + "/snapshots/11/mnt");
  auto args = f.launcher.last_args;
  auto records = f.daemon_records();
  REQUIRE(records.size() == 1);
  const DaemonRecord& r = records[0];
  CHECK(joined(args) == fmt::format("fuse --thread-num 4 --config {0}/config/{1}/config.json --bootstrap "
                                    "{0}/snapshots/11/fs/image/image.boot --mountpoint {0}/snapshots/11/mnt "
                                    "--apisock {0}/socket/{1}/api.sock --log-level info --log-file "
                                    "{0}/logs/{1}/nydusd.log --failover-policy resend",
                                    f.root, r.id));
  CHECK(r.state == "RUNNING");
  CHECK(r.daemon_mode == "dedicated");
  CHECK(r.binary_path == "/usr/bin/nydusd");
  CHECK(r.version == "v9.9.9 abc123");
  CHECK(r.pid > 0);
  CHECK(r.mountpoint == mp1);
  json config = json::parse(std::ifstream(r.config_path));
  CHECK(config["device"]["id"] == "/11");
  CHECK(config["device"]["cache"]["config"]["work_dir"] == f.root + "/cache");

  // Again: the same mountpoint, no second daemon.
  CHECK(must(m->mount(f.request("11"))) == mp1);
  CHECK(f.world.spawns == 1);
  std::string mp2 = must(m->mount(f.request("12")));
  CHECK(f.world.spawns == 2);
  CHECK(m->daemons().size() == 2);
  for (const auto& d : m->daemons()) CHECK(d->refcount() == 1);
  CHECK(f.instance_records().size() == 2);

  // Releasing an image stops its daemon (SIGTERM, reaped) and drops both records.
  pid_t pid = static_cast<pid_t>(r.pid);
  CHECK(must(m->umount("11")));
  CHECK(wait_gone(pid));
  CHECK_FALSE(process_alive(pid));
  CHECK(f.daemon_records().size() == 1);
  CHECK(f.instance_records().size() == 1);
  CHECK_FALSE(fs::exists(f.root + "/config/" + r.id));
  CHECK_FALSE(fs::exists(f.root + "/socket/" + r.id));
  CHECK_FALSE(must(m->umount("11")));  // not an instance any more
  CHECK(m->has_instance("12"));
  m->close(false);
  // The other daemon survives the close.
  CHECK(f.daemon_records().size() == 1);
  CHECK(process_alive(static_cast<pid_t>(f.daemon_records()[0].pid)));
}

TEST_CASE("shared mode: one daemon with instances attached by the API and counted") {
  ManagerFixture f;
  auto m = f.open(DaemonMode::kShared);
  std::string mp1 = must(m->mount(f.request("21")));
  std::string mp2 = must(m->mount(f.request("22")));
  CHECK(mp1 == f.root + "/mnt/21");
  CHECK(mp2 == f.root + "/mnt/22");
  CHECK(f.world.spawns == 1);
  auto d = m->shared_daemon();
  REQUIRE(d);
  CHECK(d->refcount() == 2);
  DaemonRecord r = d->record();
  CHECK(joined(f.launcher.last_args) ==
        fmt::format("fuse --thread-num 4 --mountpoint {0}/mnt --apisock {0}/socket/{1}/api.sock --log-level info "
                    "--log-file {0}/logs/{1}/nydusd.log --failover-policy resend",
                    f.root, r.id));
  CHECK(f.world.calls_of(r.api_socket) ==
        std::vector<std::string>{"POST /21 " + f.root + "/snapshots/21/fs/image/image.boot",
                                 "POST /22 " + f.root + "/snapshots/22/fs/image/image.boot"});
  CHECK(fs::exists(f.root + "/config/" + r.id + "/21/config.json"));

  CHECK(must(m->umount("21")));
  CHECK(f.world.calls_of(r.api_socket).back() == "DELETE /21");
  CHECK(d->refcount() == 1);
  CHECK(process_alive(d->pid()));  // the shared daemon stays
  CHECK(f.instance_records().size() == 1);
  CHECK_FALSE(fs::exists(f.root + "/config/" + r.id + "/21"));
  CHECK(must(m->umount("22")));
  CHECK(d->refcount() == 0);
  CHECK(process_alive(d->pid()));
  // An idle shared daemon stops at close.
  pid_t pid = d->pid();
  m->close(false);
  CHECK(wait_gone(pid));
  CHECK(f.daemon_records().empty());
}

TEST_CASE("an upgraded binary outlives the manager while nydusd_path stays as configured") {
  ManagerFixture f;
  f.open(DaemonMode::kShared)->set_nydusd_binary("/opt/nydusd-new", "v9.9.9 abc123");
  {
    auto m = f.open(DaemonMode::kShared);
    CHECK(m->nydusd_path() == "/opt/nydusd-new");
    must(m->mount(f.request("41")));
    CHECK(m->shared_daemon()->record().binary_path == "/opt/nydusd-new");
    m->close(true);
  }
  // A recorded binary that no longer answers --version is not used (but
  // stays recorded: it may come back).
  f.launcher.broken.insert("/opt/nydusd-new");
  CHECK(f.open(DaemonMode::kShared)->nydusd_path() == "/usr/bin/nydusd");
  f.launcher.broken.clear();
  CHECK(f.open(DaemonMode::kShared)->nydusd_path() == "/opt/nydusd-new");
  // A changed nydusd_path wins, and the upgrade is forgotten.
  auto changed = f.options(DaemonMode::kShared);
  changed.nydusd_path = "/usr/local/bin/nydusd";
  CHECK(must(DaemonManager::open(changed, *f.store, f.launcher, f.clients))->nydusd_path() == "/usr/local/bin/nydusd");
  CHECK(f.open(DaemonMode::kShared)->nydusd_path() == "/usr/bin/nydusd");
  // So is an upgrade back to the configured binary.
  f.open(DaemonMode::kShared)->set_nydusd_binary("/opt/nydusd-new", "v9.9.9 abc123");
  f.open(DaemonMode::kShared)->set_nydusd_binary("/usr/bin/nydusd", "v9.9.9 abc123");
  auto tx = must(f.store->begin(Transaction::Mode::kRead));
  CHECK_FALSE(must(f.store->get_setting(tx, "upgraded_nydusd")).has_value());
}

TEST_CASE("a restarted manager re-adopts live daemons and restarts dead ones with remounts in Seq order") {
  ManagerFixture f;
  pid_t first_pid = 0;
  std::string sock;
  {
    auto m = f.open(DaemonMode::kShared);
    must(m->mount(f.request("31")));
    must(m->mount(f.request("32")));
    must(m->mount(f.request("33")));
    must(m->umount("32"));
    first_pid = m->shared_daemon()->pid();
    sock = m->shared_daemon()->record().api_socket;
    // The snapshotter "crashes": the manager goes without close().
  }
  CHECK(process_alive(first_pid));
  {
    auto m = f.open(DaemonMode::kShared);
    auto d = m->shared_daemon();
    REQUIRE(d);
    CHECK(d->pid() == first_pid);  // adopted, not restarted
    CHECK(f.world.spawns == 1);
    CHECK(d->refcount() == 2);
    CHECK(d->state() == "RUNNING");
    CHECK(must(m->mount(f.request("31"))) == f.root + "/mnt/31");  // known instance
    CHECK(f.world.calls_of(sock).size() == 4);  // no new POST

    // It dies while nobody runs: the next manager restarts it and re-POSTs.
    ::kill(first_pid, SIGKILL);
    CHECK(wait_gone(first_pid));
  }
  {
    std::lock_guard<std::mutex> lock(f.world.mu);
    f.world.state.erase(sock);
    f.world.calls[sock].clear();
  }
  auto m = f.open(DaemonMode::kShared);
  auto d = m->shared_daemon();
  REQUIRE(d);
  CHECK(f.world.spawns == 2);
  CHECK(d->pid() != first_pid);
  CHECK(d->record().api_socket == sock);  // same id, same socket
  CHECK(f.world.calls_of(sock) ==
        std::vector<std::string>{"POST /31 " + f.root + "/snapshots/31/fs/image/image.boot",
                                 "POST /33 " + f.root + "/snapshots/33/fs/image/image.boot"});
  CHECK(f.daemon_records().at(0).pid == d->pid());
  CHECK(f.daemon_records().at(0).state == "RUNNING");
}

TEST_CASE("a recycled pid is never adopted nor signalled and leftovers are reclaimed") {
  ManagerFixture f;
  std::string id;
  {
    auto m = f.open(DaemonMode::kDedicated);
    must(m->mount(f.request("41")));
    id = m->daemons().at(0)->id();
  }
  // Point the record at an unrelated process of ours.
  SpawnOptions o;
  o.argv = {"/bin/sleep", "1000"};
  o.parent_death_signal = SIGKILL;
  Process stranger = must(Process::spawn(o));
  pid_t old_pid = 0;
  {
    auto tx = must(f.store->begin(Transaction::Mode::kWrite));
    DaemonRecord r = must(f.store->get_daemon(tx, id));
    old_pid = static_cast<pid_t>(r.pid);
    r.pid = stranger.pid();
    must(f.store->update_daemon(tx, r));
    // And a dedicated daemon record without an instance: an interrupted start.
    DaemonRecord leftover = r;
    leftover.id = new_daemon_id();
    leftover.pid = 0;
    leftover.api_socket = f.root + "/socket/" + leftover.id + "/api.sock";
    must(f.store->insert_daemon(tx, leftover));
    must(tx.commit());
  }
  ::kill(old_pid, SIGKILL);
  auto m = f.open(DaemonMode::kDedicated);
  CHECK(process_alive(stranger.pid()));  // untouched
  CHECK(f.world.spawns == 2);            // the daemon was restarted instead
  REQUIRE(m->daemons().size() == 1);
  CHECK(m->daemons()[0]->id() == id);
  CHECK(f.daemon_records().size() == 1);  // the leftover is gone
}

TEST_CASE("a daemon death is detected and recorded and handed to the hook") {
  ManagerFixture f;
  auto m = f.open(DaemonMode::kDedicated);
  DeathRecorder recorder;
  m->set_death_handler(&recorder);
  must(m->mount(f.request("51")));
  auto d = m->daemons().at(0);
  ::kill(d->pid(), SIGKILL);
  REQUIRE(recorder.wait_for(1));
  CHECK(recorder.dead[0] == d->id());
  CHECK(d->state() == "DIED");
  CHECK(f.daemon_records().at(0).state == "DIED");
  // A mount over a dead daemon is refused, not served broken.
  CHECK(m->mount(f.request("51")).error().kind() == ErrorKind::kNotReady);
  // Releasing it still works (nothing to stop) and drops the records.
  CHECK(must(m->umount("51")));
  CHECK(f.daemon_records().empty());
}

TEST_CASE("a daemon that exits during its start fails the mount at once with its log") {
  ManagerFixture f;
  auto m = f.open(DaemonMode::kDedicated);
  f.world.fail_start = true;
  auto start = std::chrono::steady_clock::now();
  auto r = m->mount(f.request("61"));
  REQUIRE_FALSE(r.ok());
  CHECK(std::chrono::steady_clock::now() - start < 3s);  // the pidfd, not the 5 s deadline
  CHECK(r.error().message().find("exited before it served") != std::string::npos);
  CHECK(r.error().message().find("fake nydusd: cannot mount") != std::string::npos);
  CHECK(f.daemon_records().empty());
  CHECK(f.instance_records().empty());
  CHECK(m->daemons().empty());
  // The next attempt starts afresh.
  must(m->mount(f.request("61")));
}

TEST_CASE("NydusMounter: data layers skip unpack and meta layers get an overlay on the RAFS mount") {
  ManagerFixture f;
  auto m = f.open(DaemonMode::kDedicated);
  NydusMounterOptions o;
  o.snapshots_dir = f.root + "/snapshots";
  NydusMounter mounter(m.get(), "", o);
  CHECK(must(mounter.skip_unpack("k", "", {{std::string(kLabelTargetSnapshotRef), "sha256:x"},
                                           {std::string(kLabelNydusBlob), "true"}})));
  CHECK_FALSE(must(mounter.skip_unpack("k", "", {{std::string(kLabelTargetSnapshotRef), "sha256:x"}})));
  CHECK_FALSE(must(mounter.skip_unpack("k", "", {{std::string(kLabelNydusBlob), "true"}})));

  f.request("71");  // the meta layer with its bootstrap
  SnapshotChain chain;
  chain.snapshot = SnapshotRef{"72", "c1", Kind::kActive, {}, f.root + "/snapshots/72"};
  chain.parents = {SnapshotRef{"71", "sha256:meta", Kind::kCommitted, {}, f.root + "/snapshots/71"},
                   SnapshotRef{"70", "sha256:data", Kind::kCommitted, {}, f.root + "/snapshots/70"}};
  auto mounts = must(mounter.mounts_for(chain));
  REQUIRE(mounts);
  std::string s = f.root + "/snapshots";
  CHECK(*mounts == std::vector<Mount>{{"overlay", "overlay", "",
                                       {"workdir=" + s + "/72/work", "upperdir=" + s + "/72/fs",
                                        "lowerdir=" + s + "/71/mnt"}}});
  // A view on the meta layer: a read-only bind of the RAFS mount.
  chain.snapshot = SnapshotRef{"73", "v1", Kind::kView, {}, s + "/73"};
  CHECK(*must(mounter.mounts_for(chain)) == std::vector<Mount>{{"bind", s + "/71/mnt", "", {"ro", "rbind"}}});
  // During an unpack over it: native mounts.
  chain.snapshot = SnapshotRef{"74", "extract", Kind::kActive, {{std::string(kLabelTargetSnapshotRef), "x"}}, s + "/74"};
  CHECK_FALSE(must(mounter.mounts_for(chain)));
  // Layers above the meta layer sit on top of the RAFS mount.
  chain.snapshot = SnapshotRef{"76", "c2", Kind::kActive, {}, s + "/76"};
  chain.parents.insert(chain.parents.begin(), SnapshotRef{"75", "sha256:oci", Kind::kCommitted, {}, s + "/75"});
  CHECK(must(mounter.mounts_for(chain))->at(0).options.back() == "lowerdir=" + s + "/75/fs:" + s + "/71/mnt");
  CHECK(f.world.spawns == 1);

  // Release: deferred to Cleanup without sync_remove.
  CHECK_FALSE(must(mounter.release("71", s + "/71", RemoteMounter::Phase::kRemove)));
  CHECK(m->has_instance("71"));
  CHECK(must(mounter.release("71", s + "/71", RemoteMounter::Phase::kCleanup)));
  CHECK_FALSE(m->has_instance("71"));
  CHECK(must(mounter.release("72", s + "/72", RemoteMounter::Phase::kRemove)));

  // A labelled meta layer without its bootstrap is an error; without a
  // manager a nydus image is refused with the reason.
  SnapshotChain broken;
  broken.snapshot = SnapshotRef{"81", "c", Kind::kActive, {}, s + "/81"};
  broken.parents = {SnapshotRef{"80", "m", Kind::kCommitted, {{std::string(kLabelNydusBootstrap), "true"}}, s + "/80"}};
  CHECK(mounter.mounts_for(broken).error().kind() == ErrorKind::kNotFound);
  NydusMounter without(nullptr, "no nydusd binary", o);
  auto refused = without.mounts_for(chain);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().kind() == ErrorKind::kFailedPrecondition);
  CHECK(refused.error().message().find("no nydusd binary") != std::string::npos);
}
