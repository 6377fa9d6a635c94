// The real containerd-nydus-grpc binary: command line, start-up checks,
// every RPC over its unix socket, graceful and violent stops, restarts.
// LABEL integration (spawns processes). Each test owns a temp dir and kills
// only the pids it started.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <fstream>

#include <catch2/catch.hpp>

#include "tests/support/temp_dir.h"
#include "tests/unit/snapshotter/snapshotter_backends.h"
#include "tests/support/test_child.h"

using namespace nydus::snapshotter;
using namespace nydus::snapshotter::testing;
using nydus::ErrorKind;
using nydus::testing::TempDir;
using nydus::testing::TestChild;
using nydus::testing::run_command;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

const std::string kBinary = std::string(NYDUS_BIN_DIR) + "/containerd-nydus-grpc";
// The binary logs this once the socket accepts connections.
const std::string kReadyLine = "serving containerd.services.snapshots.v1.Snapshots";
constexpr auto kStartTimeout = 20s;
constexpr auto kStopTimeout = 15s;

template <typename T>
T must(nydus::Result<T> r) {
  if (!r.ok()) FAIL(r.error().message());
  return std::move(r).value();
}
void must(const nydus::Status& s) {
  if (!s.ok()) FAIL(s.error().message());
}

struct Daemon {
  Daemon(const fs::path& root, const fs::path& address, std::vector<std::string> extra = {})
      : child(args(root, address, extra)) {}
  static std::vector<std::string> args(const fs::path& root, const fs::path& address,
                                       const std::vector<std::string>& extra) {
    std::vector<std::string> a = {kBinary, "--root", root.string(), "--address", address.string(), "--log-to-stdout",
                                  "--log-level", "debug"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  void wait_ready() {
    INFO(child.output());
    REQUIRE(child.wait_for_output(kReadyLine, kStartTimeout));
  }
  int stop(int sig = SIGTERM) {
    child.signal(sig);
    auto status = child.wait(kStopTimeout);
    INFO(child.output());
    REQUIRE(status.has_value());
    return *status;
  }
  TestChild child;
};

}  // namespace

TEST_CASE("binary: --version and --help are truthful -- bad input exits 2 with the reason") {
  auto v = run_command({kBinary, "--version"});
  CHECK(v.exited_ok());
  CHECK(v.output.find("containerd-nydus-grpc") != std::string::npos);
  CHECK(v.output.find("Version:") != std::string::npos);
  CHECK(v.output.find("Revision:") != std::string::npos);

  auto h = run_command({kBinary, "--help"});
  CHECK(h.exited_ok());
  for (const char* flag : {"--config", "--root", "--address", "--log-level", "--nydusd-path", "--nydusd",
                           "--nydusd-config", "--log-to-stdout", "--version"}) {
    INFO(flag);
    CHECK(h.output.find(flag) != std::string::npos);
  }

  auto bad = run_command({kBinary, "--frobnicate"});
  CHECK(bad.status == 2);
  CHECK(bad.output.find("--frobnicate") != std::string::npos);

  TempDir dir("nydus-bin");
  auto config = dir / "config.toml";
  std::ofstream(config) << "version = 1\n[daemon]\nthreads_number = 2000\n";
  auto invalid = run_command({kBinary, "--config", config.string(), "--root", (dir / "root").string()});
  CHECK(invalid.status == 2);
  CHECK(invalid.output.find("daemon.threads_number = 2000") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "root"));  // nothing created for a config that was refused

  auto long_root = run_command({kBinary, "--root", "/" + std::string(80, 'r')});
  CHECK(long_root.status == 2);
  CHECK(long_root.output.find("at most 70") != std::string::npos);
}

TEST_CASE("binary: serves every RPC over its unix socket and stops on SIGTERM") {
  TempDir dir("nydus-bin");
  auto root = dir / "state/root";  // parents are created too
  auto address = dir / "run/nydus.sock";
  Daemon d(root, address);
  d.wait_ready();
  CHECK((fs::status(root).permissions() & fs::perms::all) == fs::perms::owner_all);
  CHECK(fs::is_socket(address));

  GrpcClient c(address.string());
  // Prepare + write + Commit + Stat
  auto m = must(c.prepare("base-extract", "", {{"containerd.io/snapshot.ref", "base"}}));
  REQUIRE(m.size() == 1);
  CHECK(m[0].type == "bind");
  std::ofstream(fs::path(m[0].source) / "hello") << "hello";
  CHECK(must(c.usage("base-extract")).inodes == 2);
  must(c.commit("base", "base-extract", {{"l", "1"}}));
  auto info = must(c.stat("base"));
  CHECK(info.kind == Kind::kCommitted);
  CHECK(info.labels == Labels{{"l", "1"}});
  CHECK(must(c.usage("base")).inodes == 2);
  // Prepare on a parent, View, Mounts
  auto active = must(c.prepare("container", "base"));
  REQUIRE(active.size() == 1);
  CHECK(active[0].type == "overlay");
  CHECK(must(c.mounts("container")) == active);
  auto view = must(c.view("view", "base"));
  CHECK(view[0].type == "bind");
  CHECK(view[0].options == std::vector<std::string>{"ro", "rbind"});
  // Update and List (Walk)
  info.labels = {{"l", "2"}, {"x", "y"}};
  auto updated = must(c.update(info, {"labels.l"}));
  CHECK(updated.labels == Labels{{"l", "2"}});
  CHECK(must(c.list()).size() == 3);
  CHECK(must(c.list({"kind==active"})).size() == 1);
  CHECK(must(c.list({"labels.l==2"})).at(0).name == "base");
  // Errors carry containerd's codes over the wire.
  CHECK(c.stat("missing").error().kind() == ErrorKind::kNotFound);
  CHECK(c.prepare("container", "base").error().kind() == ErrorKind::kAlreadyExists);
  CHECK(c.remove("base").error().kind() == ErrorKind::kFailedPrecondition);
  CHECK(c.commit("x", "view").error().kind() == ErrorKind::kFailedPrecondition);
  CHECK(c.prepare("y", "container").error().kind() == ErrorKind::kInvalidArgument);
  CHECK(c.list({"name=="}).error().kind() == ErrorKind::kInvalidArgument);
  // Remove + Cleanup
  must(c.remove("view"));
  must(c.remove("container"));
  fs::create_directories(root / "snapshots/777/fs");
  must(c.cleanup());
  CHECK_FALSE(fs::exists(root / "snapshots/777"));
  CHECK(must(c.list()).size() == 1);

  int status = d.stop(SIGTERM);
  CHECK(status == 0);
  CHECK_FALSE(fs::exists(address));  // its own socket is removed on exit
  CHECK(d.child.output().find("stopped") != std::string::npos);
}

TEST_CASE("binary: kill -9 loses nothing -- a restart removes the stale socket and serves the same state") {
  TempDir dir("nydus-bin");
  auto root = dir / "root";
  auto address = dir / "nydus.sock";
  std::vector<Info> before;
  std::vector<Mount> active;
  {
    Daemon d(root, address);
    d.wait_ready();
    GrpcClient c(address.string());
    for (int i = 0; i < 5; ++i) {
      std::string parent = i ? "layer" + std::to_string(i - 1) : "";
      must(c.prepare("extract" + std::to_string(i), parent));
      must(c.commit("layer" + std::to_string(i), "extract" + std::to_string(i)));
    }
    active = must(c.prepare("container", "layer4"));
    before = must(c.list());
    int status = d.stop(SIGKILL);
    CHECK(status == -SIGKILL);  // Process encoding: -signal
  }
  REQUIRE(fs::is_socket(address));  // left behind by the dead process
  Daemon d(root, address);
  d.wait_ready();
  CHECK(d.child.output().find("removing stale socket") != std::string::npos);
  GrpcClient c(address.string());
  CHECK(must(c.list()) == before);
  CHECK(must(c.mounts("container")) == active);
  CHECK(d.stop() == 0);
}

TEST_CASE("binary: one process per root, and a live socket is never taken over") {
  TempDir dir("nydus-bin");
  Daemon first(dir / "root", dir / "a.sock");
  first.wait_ready();

  auto same_root = run_command(Daemon::args(dir / "root", dir / "b.sock", {}), kStartTimeout);
  CHECK(same_root.status == 1);
  CHECK(same_root.output.find("another containerd-nydus-grpc is running with root") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "b.sock"));

  auto same_address = run_command(Daemon::args(dir / "root2", dir / "a.sock", {}), kStartTimeout);
  CHECK(same_address.status == 1);
  CHECK(same_address.output.find("is in use") != std::string::npos);
  // The first one still serves.
  GrpcClient c((dir / "a.sock").string());
  must(c.list());

  // Something that is not a socket is never deleted.
  std::ofstream(dir / "file.sock") << "precious";
  auto not_socket = run_command(Daemon::args(dir / "root3", dir / "file.sock", {}), kStartTimeout);
  CHECK(not_socket.status == 1);
  CHECK(not_socket.output.find("not a socket") != std::string::npos);
  CHECK(fs::file_size(dir / "file.sock") == 8);

  CHECK(first.stop(SIGINT) == 0);
}

TEST_CASE("binary: the TOML config drives root, address and logging") {
  TempDir dir("nydus-bin");
  auto config = dir / "config.toml";
  std::ofstream(config) << "version = 1\n"
                        << "root = \"" << (dir / "root").string() << "\"\n"
                        << "address = \"" << (dir / "grpc.sock").string() << "\"\n"
                        << "uid = 65534\ngid = 65534\n"
                        << "[log]\nlevel = \"debug\"\ndir = \"" << (dir / "logs").string() << "\"\n"
                        << "[daemon]\nunknown_key = 1\n";
  // Without --log-to-stdout the log goes to <log.dir>/nydus-snapshotter.log.
  TestChild child({kBinary, "--config", config.string()});
  auto log = dir / "logs/nydus-snapshotter.log";
  // The log file is the only signal here: wait for the socket through a
  // client call with a deadline instead.
  GrpcClient c((dir / "grpc.sock").string());
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + kStartTimeout);
    ctx.set_wait_for_ready(true);
    snapshots_v1::ListSnapshotsRequest req;
    auto reader = c.stub().List(&ctx, req);
    snapshots_v1::ListSnapshotsResponse resp;
    while (reader->Read(&resp)) {
    }
    REQUIRE(reader->Finish().ok());
  }
  struct stat st;
  REQUIRE(::stat((dir / "grpc.sock").c_str(), &st) == 0);
  CHECK(st.st_uid == 65534u);
  CHECK(st.st_gid == 65534u);
  child.signal(SIGTERM);
  REQUIRE(child.wait(kStopTimeout).has_value());
  std::ifstream in(log);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(text.find("serving") != std::string::npos);
  CHECK(text.find("unknown configuration key daemon.unknown_key") != std::string::npos);
  CHECK(fs::exists(dir / "root/snapshotter.db"));
}
