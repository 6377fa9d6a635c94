// containerd-nydus-grpc serving nydus images through real nydusd processes:
// the real snapshotter binary driven over its gRPC socket, real FUSE and
// overlay mounts, images built by nydus-image from a source tree. LABEL
// integration (root, /dev/fuse).
//
// Every process is killed by pid at the end (the snapshotter as our child,
// the nydusd daemons by the pids their records name, after checking their
// command line belongs to this test's root); every mount lives below the
// test's TempDir, which detaches them.
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <fstream>
#include <set>
#include <thread>

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include "common/http.h"
#include "common/mount.h"
#include "common/unix_socket.h"
#include "snapshotter/daemon_launcher.h"
#include "snapshotter/store.h"
#include "tests/integration/nydusd/nydusd_support.h"
#include "tests/unit/snapshotter/snapshotter_backends.h"
#include "tests/support/test_child.h"

using namespace nydus;
using namespace nydus::snapshotter;
using namespace nydus::snapshotter::testing;
using nydus::testing::TempDir;
using nydus::testing::TestChild;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr auto kStartDeadline = 20s;
constexpr auto kExitDeadline = 20s;

template <typename T>
T must(Result<T> r) {
  if (!r.ok()) FAIL(r.error().message());
  return std::move(r).value();
}
void must(const Status& s) {
  if (!s.ok()) FAIL(s.error().message());
}

struct Image {
  fs::path source;
  std::string boot;
};

// A source tree and its nydus image; blobs go to the shared blobs dir the
// nydusd config template names.
Image build_image(const fs::path& work, const fs::path& blobs, uint32_t seed) {
  Image image{work / "src", (work / "image.boot").string()};
  nydus::testing::make_source_tree(image.source, seed);
  std::string log = (work / "nydus-image.log").string();
  int status = nydus::testing::run_tool({nydus::testing::bin_path("nydus-image"), "create", "-t", "dir-rafs", "-B",
                                         image.boot, "-D", blobs.string(), image.source.string()},
                                        log);
  INFO(nydus::testing::read_text(log));
  REQUIRE(status == 0);
  return image;
}

// Mounts what the snapshotter returned at `target` (overlay or bind).
void apply_mounts(const std::vector<Mount>& mounts, const fs::path& target) {
  REQUIRE(mounts.size() == 1);
  const Mount& m = mounts[0];
  fs::create_directories(target);
  int rc;
  if (m.type == "bind") {
    rc = ::mount(m.source.c_str(), target.c_str(), nullptr, MS_BIND | MS_REC, nullptr);
    if (rc == 0) ::mount(nullptr, target.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY, nullptr);
  } else {
    std::string data = fmt::format("{}", fmt::join(m.options, ","));
    rc = ::mount(m.source.c_str(), target.c_str(), m.type.c_str(), 0, data.c_str());
  }
  INFO(m.type << " " << fmt::format("{}", fmt::join(m.options, ",")) << ": " << std::strerror(errno));
  REQUIRE(rc == 0);
}

void check_same_tree(const fs::path& source, const fs::path& mounted) {
  nydus::testing::CompareOptions options;
  options.compare_nlink_dirs = false;
  auto diffs = nydus::testing::compare_trees(source, mounted, options);
  for (const auto& d : diffs) UNSCOPED_INFO(d);
  CHECK(diffs.empty());
}

// One snapshotter on a private root, plus everything it spawned.
struct SnapshotterUnderTest {
  TempDir dir{"nydus-snap-it"};
  fs::path root = dir / "root";
  fs::path blobs = dir / "blobs";
  fs::path address = dir / "grpc.sock";
  fs::path config = dir / "config.toml";
  std::string mode;
  std::unique_ptr<TestChild> process;
  std::unique_ptr<GrpcClient> client;

  explicit SnapshotterUnderTest(std::string daemon_mode, const std::string& recover_policy = "restart")
      : mode(std::move(daemon_mode)) {
    fs::create_directories(blobs);
    fs::path tmpl = dir / "nydusd-config.json";
    std::ofstream(tmpl) << json{{"device",
                                 {{"backend", {{"type", "localfs"}, {"config", {{"dir", blobs.string()}}}}},
                                  {"cache", {{"type", "blobcache"}, {"config", {{"work_dir", "/replaced"}}}}}}},
                                {"mode", "direct"},
                                {"digest_validate", true}}
                                .dump(2);
    std::ofstream(config) << "version = 1\n"
                          << "root = \"" << root.string() << "\"\n"
                          << "address = \"" << address.string() << "\"\n"
                          << "daemon_mode = \"" << mode << "\"\n"
                          << "[daemon]\n"
                          << "nydusd_path = \"" << nydus::testing::bin_path("nydusd") << "\"\n"
                          << "nydusd_config = \"" << tmpl.string() << "\"\n"
                          << "threads_number = 2\n"
                          << "recover_policy = \"" << recover_policy << "\"\n"
                          << "[log]\nlevel = \"debug\"\n";
  }

  ~SnapshotterUnderTest() {
    client.reset();
    if (process) {
      process->signal(SIGTERM);
      process->wait(kExitDeadline);
      process.reset();
    }
    // The daemons outlive the snapshotter by design: end them by pid.
    for (const auto& r : records_or_empty()) kill_daemon(r.pid);
  }

  void start() {
    process = std::make_unique<TestChild>(
        std::vector<std::string>{nydus::testing::bin_path("containerd-nydus-grpc"), "--config", config.string()},
        (dir / "stdout.log").string());
    auto connected = wait_connect_unix(address.string(), kStartDeadline);
    INFO(nydus::testing::read_text((root / "logs/nydus-snapshotter.log").string()));
    REQUIRE(connected.ok());
    client = std::make_unique<GrpcClient>(address.string());
  }

  void kill9() {
    client.reset();
    process->signal(SIGKILL);
    REQUIRE(process->wait(kExitDeadline).has_value());
    process.reset();
  }

  std::string log() { return nydus::testing::read_text((root / "logs/nydus-snapshotter.log").string()); }

  // Records as the snapshotter wrote them (a second SQLite connection).
  std::vector<DaemonRecord> daemons() {
    auto store = must(MetaStore::open(root / "snapshotter.db"));
    auto tx = must(store->begin(Transaction::Mode::kRead));
    return must(store->list_daemons(tx));
  }
  std::vector<InstanceRecord> instances() {
    auto store = must(MetaStore::open(root / "snapshotter.db"));
    auto tx = must(store->begin(Transaction::Mode::kRead));
    return must(store->list_instances(tx));
  }
  std::vector<DaemonRecord> records_or_empty() {
    if (!fs::exists(root / "snapshotter.db")) return {};
    auto store = MetaStore::open(root / "snapshotter.db");
    if (!store.ok()) return {};
    auto tx = (*store)->begin(Transaction::Mode::kRead);
    if (!tx.ok()) return {};
    auto list = (*store)->list_daemons(*tx);
    return list.ok() ? *list : std::vector<DaemonRecord>{};
  }
  // Only a nydusd of this root is ever signalled.
  void kill_daemon(int64_t pid) {
    if (pid <= 0) return;
    auto cmd = read_proc_cmdline(static_cast<pid_t>(pid));
    if (!cmd.ok()) return;
    bool ours = false;
    for (const auto& a : *cmd) ours |= a.rfind(root.string(), 0) == 0;
    if (ours) ::kill(static_cast<pid_t>(pid), SIGKILL);
  }

  // Layers as containerd's unpacker creates them: a lazily committed data
  // layer (nydus-blob) and the meta layer holding image/image.boot.
  void pull(const std::string& name, const Image& image) {
    std::string data = name + "-data";
    auto lazy = client->prepare("extract-" + data, "",
                                {{"containerd.io/snapshot.ref", data}, {"containerd.io/snapshot/nydus-blob", "true"}});
    REQUIRE_FALSE(lazy.ok());
    CHECK(lazy.error().kind() == ErrorKind::kAlreadyExists);
    auto mounts = client->prepare("extract-" + name, data,
                                  {{"containerd.io/snapshot.ref", name},
                                   {"containerd.io/snapshot/nydus-bootstrap", "true"}});
    REQUIRE(mounts.ok());
    // An unpack gets native mounts; write the layer's only file into its upper dir.
    std::string upper = mounts->at(0).type == "bind" ? mounts->at(0).source : "";
    for (const auto& o : mounts->at(0).options) {
      if (o.rfind("upperdir=", 0) == 0) upper = o.substr(9);
    }
    REQUIRE_FALSE(upper.empty());
    fs::create_directories(fs::path(upper) / "image");
    fs::copy_file(image.boot, fs::path(upper) / "image/image.boot");
    must(client->commit(name, "extract-" + name));
  }

};

// Counts the reader's rounds; a waiter is woken by each one. A wait gives up
// after kStartDeadline (a hung mount), so the test fails instead of wedging.
struct RoundCounter {
  std::mutex mu;
  std::condition_variable cv;
  int rounds = 0;
  void add() {
    {
      std::lock_guard<std::mutex> lock(mu);
      ++rounds;
    }
    cv.notify_all();
  }
  int get() {
    std::lock_guard<std::mutex> lock(mu);
    return rounds;
  }
  bool wait_for(int target) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, kStartDeadline, [&] { return rounds >= target; });
  }
};

bool wait_gone(int64_t pid) {
  auto p = Process::adopt(static_cast<pid_t>(pid));
  if (!p.ok()) return true;
  p->detach();
  return p->wait(kExitDeadline).ok();
}

// Two images (sources from `seed_a` and `seed_b`) pulled as image-a and
// image-b into a started snapshotter, each prepared for a container (ca, cb)
// mounted at ra and rb below the test's dir.
std::pair<Image, Image> start_with_two_images(SnapshotterUnderTest& s, uint32_t seed_a, uint32_t seed_b) {
  Image a = build_image(s.dir / "a", s.blobs, seed_a);
  Image b = build_image(s.dir / "b", s.blobs, seed_b);
  s.start();
  s.pull("image-a", a);
  s.pull("image-b", b);
  auto ma = s.client->prepare("ca", "image-a");
  INFO(s.log());
  REQUIRE(ma.ok());
  auto mb = s.client->prepare("cb", "image-b");
  REQUIRE(mb.ok());
  apply_mounts(*ma, s.dir / "ra");
  apply_mounts(*mb, s.dir / "rb");
  return {std::move(a), std::move(b)};
}

}  // namespace

TEST_CASE("dedicated: Prepare over a nydus meta layer serves the image and removing it stops nydusd",
          "[snapshotter][nydusd]") {
  SnapshotterUnderTest s("dedicated");
  Image image = build_image(s.dir / "img", s.blobs, 11);
  s.start();
  s.pull("meta", image);
  CHECK(s.daemons().empty());  // no daemon for a pull

  auto mounts = s.client->prepare("c1", "meta");
  INFO(s.log());
  REQUIRE(mounts.ok());
  REQUIRE(mounts->at(0).type == "overlay");
  auto daemons = s.daemons();
  REQUIRE(daemons.size() == 1);
  const DaemonRecord& d = daemons[0];
  CHECK(d.state == "RUNNING");
  CHECK(d.daemon_mode == "dedicated");
  CHECK(d.binary_path == nydus::testing::bin_path("nydusd"));
  CHECK_FALSE(d.version.empty());
  CHECK(is_mountpoint(d.mountpoint));
  auto cmd = must(read_proc_cmdline(static_cast<pid_t>(d.pid)));
  CHECK(cmdline_serves_api_socket(cmd, d.api_socket));
  // Every daemon has a supervisor socket (failover and hot upgrade), which
  // brings --id and --supervisor in the reference's positions.
  std::string joined = fmt::format("{}", fmt::join(cmd, " "));
  CHECK(joined.find("fuse --thread-num 2 --id " + d.id + " --config " + d.config_path) != std::string::npos);
  CHECK_FALSE(d.supervisor_path.empty());
  CHECK(joined.find("--supervisor " + d.supervisor_path) != std::string::npos);
  REQUIRE(s.instances().size() == 1);
  CHECK(s.instances()[0].daemon_id == d.id);
  CHECK(mounts->at(0).options.back() == "lowerdir=" + d.mountpoint);

  fs::path rootfs = s.dir / "rootfs";
  apply_mounts(*mounts, rootfs);
  check_same_tree(image.source, rootfs);
  // The container writes into its upper dir, not the image.
  std::ofstream(rootfs / "written-by-container") << "x";
  CHECK(fs::exists(fs::path(mounts->at(0).options[1].substr(9)) / "written-by-container"));
  must(unmount(rootfs.string()));

  // A view of the image: a read-only bind of the RAFS mount.
  auto view = s.client->view("v1", "meta");
  REQUIRE(view.ok());
  CHECK(view->at(0).type == "bind");
  CHECK(s.daemons().size() == 1);  // the same daemon

  // containerd removes the container's snapshots, then the image's layers
  // (the meta layer last but one) and runs Cleanup.
  must(s.client->remove("c1"));
  must(s.client->remove("v1"));
  CHECK(s.daemons().size() == 1);
  must(s.client->remove("meta"));
  must(s.client->remove("meta-data"));
  must(s.client->cleanup());
  CHECK(wait_gone(d.pid));
  CHECK_FALSE(is_mountpoint(d.mountpoint));
  CHECK(s.daemons().empty());
  CHECK(s.instances().empty());
  CHECK(fs::is_empty(s.root / "snapshots"));
}

TEST_CASE("shared: one nydusd serves two images", "[snapshotter][nydusd]") {
  SnapshotterUnderTest s("shared");
  auto [a, b] = start_with_two_images(s, 21, 22);
  INFO(s.log());
  auto daemons = s.daemons();
  REQUIRE(daemons.size() == 1);
  CHECK(daemons[0].daemon_mode == "shared");
  CHECK(daemons[0].mountpoint == (s.root / "mnt").string());
  CHECK(is_mountpoint(daemons[0].mountpoint));
  auto insts = s.instances();
  REQUIRE(insts.size() == 2);
  CHECK(insts[0].seq < insts[1].seq);
  CHECK(insts[0].mountpoint == (s.root / "mnt" / insts[0].snapshot_id).string());

  check_same_tree(a.source, s.dir / "ra");
  check_same_tree(b.source, s.dir / "rb");
  must(unmount((s.dir / "ra").string()));

  // Releasing image a detaches it from the daemon; b keeps being served.
  must(s.client->remove("ca"));
  must(s.client->remove("image-a"));
  must(s.client->remove("image-a-data"));
  must(s.client->cleanup());
  CHECK(s.instances().size() == 1);
  // The image is detached from nydusd's VFS: nothing of it is left below
  // its mountpoint (nydusd may keep the empty directory node).
  fs::path gone = s.root / "mnt" / insts[0].snapshot_id;
  CHECK((!fs::exists(gone) || fs::is_empty(gone)));
  auto info = HttpClient(s.daemons()[0].api_socket).request_json("GET", "/api/v1/daemon");
  REQUIRE(info.ok());
  CHECK_FALSE((*info)["backend_collection"].contains("/" + insts[0].snapshot_id));
  CHECK((*info)["backend_collection"].contains("/" + insts[1].snapshot_id));
  REQUIRE(s.daemons().size() == 1);
  CHECK(s.daemons()[0].pid == daemons[0].pid);
  check_same_tree(b.source, s.dir / "rb");
  must(unmount((s.dir / "rb").string()));
}

TEST_CASE("kill -9 of the snapshotter: the restarted one re-adopts the live nydusd while reads go on",
          "[snapshotter][nydusd]") {
  SnapshotterUnderTest s("dedicated");
  Image image = build_image(s.dir / "img", s.blobs, 31);
  s.start();
  s.pull("meta", image);
  auto mounts = s.client->prepare("c1", "meta");
  INFO(s.log());
  REQUIRE(mounts.ok());
  fs::path rootfs = s.dir / "rootfs";
  apply_mounts(*mounts, rootfs);
  auto before = s.daemons();
  REQUIRE(before.size() == 1);

  // A reader keeps going through the container's rootfs the whole time.
  std::vector<std::pair<fs::path, std::string>> files;
  for (auto it = fs::recursive_directory_iterator(image.source); it != fs::recursive_directory_iterator(); ++it) {
    if (it->is_regular_file() && !it->is_symlink()) {
      files.emplace_back(it->path().lexically_relative(image.source), nydus::testing::read_file(it->path()));
    }
  }
  REQUIRE_FALSE(files.empty());
  std::atomic<bool> stop{false};
  std::atomic<int> errors{0};
  RoundCounter reads;
  std::thread reader([&] {
    while (!stop) {
      for (const auto& [rel, expected] : files) {
        std::ifstream in(rootfs / rel, std::ios::binary);
        std::string got((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        if (!in.good() && !in.eof()) ++errors;
        if (got != expected) ++errors;
        reads.add();
      }
    }
  });
  REQUIRE(reads.wait_for(50));
  int reads_before = reads.get();

  s.kill9();
  CHECK(::kill(static_cast<pid_t>(before[0].pid), 0) == 0);  // nydusd lives on
  s.start();
  auto after = s.daemons();
  REQUIRE(after.size() == 1);
  CHECK(after[0].id == before[0].id);
  CHECK(after[0].pid == before[0].pid);  // re-adopted, not restarted
  CHECK(after[0].state == "RUNNING");
  CHECK(s.log().find("re-adopted nydusd " + before[0].id) != std::string::npos);
  REQUIRE(s.instances().size() == 1);
  // Mounts on the restarted snapshotter name the same RAFS mount.
  auto again = s.client->mounts("c1");
  REQUIRE(again.ok());
  CHECK(*again == *mounts);
  bool kept_reading = reads.wait_for(reads.get() + 200);
  stop = true;
  reader.join();
  CHECK(kept_reading);
  CHECK(errors.load() == 0);
  CHECK(reads.get() > reads_before);
  must(unmount(rootfs.string()));

  // The re-adopted daemon is still ours to stop.
  must(s.client->remove("c1"));
  must(s.client->remove("meta"));
  must(s.client->cleanup());
  CHECK(wait_gone(before[0].pid));
  CHECK(s.daemons().empty());
}

// Shared mode: images attached with POST /api/v1/mount after the daemon
// started. The supervisor must hold a save taken after both mounts, or the
// successor would come back without one of them.
TEST_CASE("failover: kill -9 of a shared nydusd serving two images loses no read", "[snapshotter][nydusd]") {
  SnapshotterUnderTest s("shared", "failover");
  auto [a, b] = start_with_two_images(s, 41, 42);
  INFO(s.log());
  auto before = s.daemons();
  REQUIRE(before.size() == 1);

  // Readers of both images; each file's page cache is dropped after it was
  // checked, so every round goes to nydusd again.
  std::vector<std::pair<fs::path, std::string>> files;
  for (const auto& [img, root] : {std::pair{&a, s.dir / "ra"}, std::pair{&b, s.dir / "rb"}}) {
    for (auto it = fs::recursive_directory_iterator(img->source); it != fs::recursive_directory_iterator(); ++it) {
      if (it->is_regular_file() && !it->is_symlink()) {
        files.emplace_back(root / it->path().lexically_relative(img->source), nydus::testing::read_file(it->path()));
      }
    }
  }
  REQUIRE(files.size() >= 2);
  std::atomic<bool> stop{false};
  std::atomic<int> errors{0};
  RoundCounter reads;
  std::thread reader([&] {
    std::string buf;
    while (!stop) {
      for (const auto& [path, expected] : files) {
        UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
        buf.assign(expected.size() + 1, '\0');
        ssize_t n = fd ? ::pread(fd.get(), buf.data(), buf.size(), 0) : -1;
        if (n != static_cast<ssize_t>(expected.size()) || buf.compare(0, expected.size(), expected) != 0) ++errors;
        if (fd) ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED);
        reads.add();
      }
    }
  });
  REQUIRE(reads.wait_for(50));
  for (int round = 0; round < 2; ++round) {
    auto d = s.daemons();
    REQUIRE(d.size() == 1);
    ::kill(static_cast<pid_t>(d[0].pid), SIGKILL);
    REQUIRE(wait_gone(d[0].pid));
    // Reads of what the kernel still caches go on without any daemon: wait
    // (bounded) until the record names the successor, then for reads
    // through it.
    std::vector<DaemonRecord> after;
    const auto deadline = std::chrono::steady_clock::now() + kStartDeadline;
    do {
      after = s.daemons();
      if (after.size() == 1 && after[0].pid != d[0].pid && after[0].state == "RUNNING") break;
      std::this_thread::sleep_for(10ms);
    } while (std::chrono::steady_clock::now() < deadline);
    int now = reads.get();
    CHECK(reads.wait_for(now + 50));
    REQUIRE(after.size() == 1);
    CHECK(after[0].id == d[0].id);
    CHECK(after[0].pid != d[0].pid);
    CHECK(after[0].state == "RUNNING");
  }
  stop = true;
  reader.join();
  CHECK(errors == 0);
  CHECK(s.log().find("failover done in") != std::string::npos);
  must(unmount((s.dir / "ra").string()));
  must(unmount((s.dir / "rb").string()));
}
