// End to end with Debian's containerd: a private containerd (own root, state
// and sockets in a temp dir) uses containerd-nydus-grpc as the proxy
// snapshotter "nydus"; an OCI image archive built here (busybox-static plus
// symlinks and data files of known content) is imported and unpacked through
// our snapshotter, run with runc, checked from inside the container, and
// removed again. Everything started here is stopped by pid; no mount may
// remain. LABEL e2e.
#include <archive.h>
#include <archive_entry.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "common/process.h"
#include "common/unix_socket.h"
#include "snapshotter/daemon_launcher.h"
#include "snapshotter/store.h"
#include "tests/support/temp_dir.h"
#include "tests/unit/snapshotter/snapshotter_backends.h"
#include "tests/unit/snapshotter/test_process.h"

using namespace nydus::snapshotter;
using namespace nydus::snapshotter::testing;
using nydus::testing::CommandResult;
using nydus::testing::TempDir;
using nydus::testing::TestChild;
using nydus::testing::mounts_under;
using nydus::testing::run_command;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const std::string kSnapshotterBinary = std::string(NYDUS_BIN_DIR) + "/containerd-nydus-grpc";
const std::string kImage = "docker.io/library/nydus-e2e:latest";
constexpr auto kStartTimeout = 20s;
constexpr auto kCommandTimeout = 30s;
constexpr auto kStopTimeout = 15s;

std::string sha256_hex(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out.push_back(hex[md[i] >> 4]);
    out.push_back(hex[md[i] & 15]);
  }
  return out;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A tar written with libarchive: entries owned by root with fixed times.
class TarWriter {
 public:
  explicit TarWriter(const fs::path& path) : a_(archive_write_new()) {
    archive_write_set_format_pax_restricted(a_);
    REQUIRE(archive_write_open_filename(a_, path.c_str()) == ARCHIVE_OK);
  }
  ~TarWriter() { archive_write_free(a_); }
  void dir(const std::string& name, int mode = 0755) { add(name, AE_IFDIR, mode, "", ""); }
  void file(const std::string& name, const std::string& content, int mode = 0644) {
    add(name, AE_IFREG, mode, content, "");
  }
  void symlink(const std::string& name, const std::string& target) { add(name, AE_IFLNK, 0777, "", target); }
  void close() { REQUIRE(archive_write_close(a_) == ARCHIVE_OK); }

 private:
  void add(const std::string& name, unsigned type, int mode, const std::string& content, const std::string& link) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    archive_entry_set_filetype(e, type);
    archive_entry_set_perm(e, mode);
    archive_entry_set_uid(e, 0);
    archive_entry_set_gid(e, 0);
    archive_entry_set_mtime(e, 1700000000, 0);
    archive_entry_set_size(e, type == AE_IFREG ? static_cast<la_int64_t>(content.size()) : 0);
    if (type == AE_IFLNK) archive_entry_set_symlink(e, link.c_str());
    REQUIRE(archive_write_header(a_, e) == ARCHIVE_OK);
    if (!content.empty()) {
      REQUIRE(archive_write_data(a_, content.data(), content.size()) == static_cast<la_ssize_t>(content.size()));
    }
    archive_entry_free(e);
  }
  archive* a_;
};

std::string go_arch() {
  utsname u{};
  uname(&u);
  std::string m = u.machine;
  if (m == "x86_64") return "amd64";
  if (m == "aarch64") return "arm64";
  return m;
}

// The files of the image's single layer, with their content.
struct Layer {
  std::map<std::string, std::string> files = {
      {"data/hello.txt", "hello from a nydus snapshot\n"},
      {"data/sub/numbers.txt", "1\n2\n3\n5\n8\n13\n"},
      {"data/empty", ""},
  };
  std::map<std::string, std::string> symlinks = {
      {"bin/sh", "busybox"}, {"bin/sha256sum", "busybox"}, {"bin/cat", "busybox"},
      {"bin/find", "busybox"}, {"data/link-to-hello", "hello.txt"},
  };
};

void package_oci_archive(const fs::path& work, const fs::path& archive_path, const fs::path& layer_tmp,
                         const std::string& image);

// Writes an OCI image archive (oci-layout, index.json, blobs) for kImage.
void build_oci_archive(const fs::path& work, const fs::path& archive_path, const Layer& layer) {
  fs::path blobs = work / "blobs/sha256";
  fs::create_directories(blobs);
  // The layer tar.
  fs::path layer_tmp = work / "layer.tar";
  {
    TarWriter tar(layer_tmp);
    tar.dir("bin/");
    tar.file("bin/busybox", read_file("/bin/busybox"), 0755);
    for (const auto& [name, target] : layer.symlinks) {
      if (name.rfind("bin/", 0) == 0) tar.symlink(name, target);
    }
    tar.dir("data/");
    tar.dir("data/sub/");
    for (const auto& [name, content] : layer.files) tar.file(name, content);
    tar.symlink("data/link-to-hello", "hello.txt");
    tar.close();
  }
  package_oci_archive(work, archive_path, layer_tmp, kImage);
}

// Writes an OCI image archive for `image` whose only layer is the tar at
// `layer_tmp` (moved into the blobs).
void package_oci_archive(const fs::path& work, const fs::path& archive_path, const fs::path& layer_tmp,
                         const std::string& image) {
  fs::path blobs = work / "blobs/sha256";
  fs::create_directories(blobs);
  std::string layer_bytes = read_file(layer_tmp);
  std::string layer_digest = sha256_hex(layer_bytes);
  fs::rename(layer_tmp, blobs / layer_digest);

  json config = {{"architecture", go_arch()},
                 {"os", "linux"},
                 {"config", {{"Cmd", {"/bin/sh"}}, {"Env", {"PATH=/bin"}}}},
                 {"rootfs", {{"type", "layers"}, {"diff_ids", {"sha256:" + layer_digest}}}}};
  std::string config_bytes = config.dump();
  std::string config_digest = sha256_hex(config_bytes);
  std::ofstream(blobs / config_digest, std::ios::binary) << config_bytes;

  json manifest = {
      {"schemaVersion", 2},
      {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
      {"config",
       {{"mediaType", "application/vnd.oci.image.config.v1+json"},
        {"digest", "sha256:" + config_digest},
        {"size", config_bytes.size()}}},
      {"layers",
       {{{"mediaType", "application/vnd.oci.image.layer.v1.tar"},
         {"digest", "sha256:" + layer_digest},
         {"size", layer_bytes.size()}}}}};
  std::string manifest_bytes = manifest.dump();
  std::string manifest_digest = sha256_hex(manifest_bytes);
  std::ofstream(blobs / manifest_digest, std::ios::binary) << manifest_bytes;

  json index = {{"schemaVersion", 2},
                {"mediaType", "application/vnd.oci.image.index.v1+json"},
                {"manifests",
                 {{{"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                   {"digest", "sha256:" + manifest_digest},
                   {"size", manifest_bytes.size()},
                   {"platform", {{"architecture", go_arch()}, {"os", "linux"}}},
                   {"annotations",
                    {{"io.containerd.image.name", image}, {"org.opencontainers.image.ref.name", "latest"}}}}}}};

  TarWriter out(archive_path);
  out.file("oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
  out.file("index.json", index.dump());
  out.dir("blobs/");
  out.dir("blobs/sha256/");
  for (const auto& d : {layer_digest, config_digest, manifest_digest}) {
    out.file("blobs/sha256/" + d, read_file(blobs / d));
  }
  out.close();
}

// Owns the private containerd and its snapshotter; tears everything down in
// reverse order, by pid, also when a REQUIRE failed half-way.
struct Stack {
  TempDir dir{"nydus-e2e"};
  std::string ns = "nydus-e2e-" + std::to_string(::getpid());
  fs::path containerd_sock = dir / "containerd.sock";
  fs::path nydus_sock = dir / "nydus.sock";
  std::unique_ptr<TestChild> snapshotter;
  std::unique_ptr<TestChild> containerd;
  std::vector<std::string> containers;

  CommandResult ctr(std::vector<std::string> args, std::chrono::milliseconds timeout = kCommandTimeout) {
    args.insert(args.begin(), {"/usr/bin/ctr", "-a", containerd_sock.string(), "-n", ns});
    return run_command(args, timeout);
  }

  // Extra snapshotter flags (the nydus tests add --nydusd-path and
  // --nydusd-config). With them the snapshotter logs to its file, so that the
  // nydusd daemons it starts (which outlive it) log to theirs rather than into
  // this test's pipe.
  std::vector<std::string> snapshotter_flags;

  void start_snapshotter() {
    std::vector<std::string> argv{kSnapshotterBinary, "--root", (dir / "nydus").string(), "--address",
                                  nydus_sock.string(), "--log-level", "debug"};
    if (snapshotter_flags.empty()) argv.push_back("--log-to-stdout");
    argv.insert(argv.end(), snapshotter_flags.begin(), snapshotter_flags.end());
    snapshotter = std::make_unique<TestChild>(argv, (dir / "snapshotter.log").string());
    if (snapshotter_flags.empty()) {
      INFO(snapshotter->output());
      REQUIRE(snapshotter->wait_for_output("serving containerd.services.snapshots.v1.Snapshots", kStartTimeout));
    } else {
      auto connected = nydus::wait_connect_unix(nydus_sock.string(), kStartTimeout);
      INFO(snapshotter_log());
      REQUIRE(connected.ok());
    }
  }

  std::string snapshotter_log() { return read_file(dir / "nydus/logs/nydus-snapshotter.log"); }

  void start() {
    start_snapshotter();

    fs::path config = dir / "containerd.toml";
    std::ofstream(config) << "version = 2\n"
                          << "root = \"" << (dir / "containerd/root").string() << "\"\n"
                          << "state = \"" << (dir / "containerd/state").string() << "\"\n"
                          << "disabled_plugins = [\"io.containerd.grpc.v1.cri\", "
                             "\"io.containerd.snapshotter.v1.btrfs\", \"io.containerd.snapshotter.v1.zfs\", "
                             "\"io.containerd.snapshotter.v1.aufs\", \"io.containerd.snapshotter.v1.devmapper\"]\n"
                          << "[grpc]\n  address = \"" << containerd_sock.string() << "\"\n"
                          << "[ttrpc]\n  address = \"" << containerd_sock.string() << ".ttrpc\"\n"
                          << "[debug]\n  level = \"info\"\n"
                          << "[proxy_plugins.nydus]\n  type = \"snapshot\"\n  address = \"" << nydus_sock.string()
                          << "\"\n";
    containerd = std::make_unique<TestChild>(std::vector<std::string>{"/usr/bin/containerd", "--config", config.string()},
                                             (dir / "containerd.log").string());
    INFO(containerd->output());
    REQUIRE(containerd->wait_for_output("containerd successfully booted", kStartTimeout));
  }

  // Kills the shim of a container we created, found through containerd's
  // state dir (the shim daemonizes, so it is not our child).
  void kill_shim(const std::string& id) {
    fs::path pid_file = dir / "containerd/state/io.containerd.runtime.v2.task" / ns / id / "shim.pid";
    std::ifstream in(pid_file);
    pid_t pid = 0;
    if (in >> pid && pid > 1) ::kill(pid, SIGKILL);
  }

  ~Stack() {
    if (containerd && containerd->running()) {
      for (const auto& id : containers) {
        ctr({"tasks", "kill", "-s", "SIGKILL", id}, 5s);
        ctr({"tasks", "rm", "-f", id}, 5s);
        ctr({"containers", "rm", id}, 5s);
        kill_shim(id);
      }
      containerd->signal(SIGTERM);
      containerd->wait(kStopTimeout);
    }
    containerd.reset();  // SIGKILL if it did not stop
    if (snapshotter) {
      snapshotter->signal(SIGTERM);
      snapshotter->wait(kStopTimeout);
      snapshotter.reset();
    }
    // nydusd daemons outlive the snapshotter by design: end ours by pid.
    for (const auto& d : daemon_records()) {
      auto cmd = read_proc_cmdline(static_cast<pid_t>(d.pid));
      if (cmd.ok() && cmdline_serves_api_socket(*cmd, d.api_socket) &&
          d.api_socket.rfind(dir.path().string(), 0) == 0) {
        ::kill(static_cast<pid_t>(d.pid), SIGKILL);
      }
    }
  }

  // The snapshotter's daemon and instance records (a second connection).
  std::vector<DaemonRecord> daemon_records() {
    fs::path db = dir / "nydus/snapshotter.db";
    if (!fs::exists(db)) return {};
    auto store = MetaStore::open(db);
    if (!store.ok()) return {};
    auto tx = (*store)->begin(Transaction::Mode::kRead);
    if (!tx.ok()) return {};
    auto list = (*store)->list_daemons(*tx);
    return list.ok() ? *list : std::vector<DaemonRecord>{};
  }
  std::vector<InstanceRecord> instance_records() {
    auto store = MetaStore::open(dir / "nydus/snapshotter.db");
    REQUIRE(store.ok());
    auto tx = (*store)->begin(Transaction::Mode::kRead);
    REQUIRE(tx.ok());
    auto list = (*store)->list_instances(*tx);
    REQUIRE(list.ok());
    return *list;
  }
};

}  // namespace

TEST_CASE("e2e: containerd imports, unpacks and runs an image through the nydus snapshotter") {
  if (!fs::exists("/usr/bin/containerd") || !fs::exists("/usr/bin/ctr") || !fs::exists("/bin/busybox")) {
    WARN("containerd, ctr or busybox-static is missing; skipped");
    return;
  }
  Stack s;
  s.start();
  Layer layer;
  fs::path archive = s.dir / "image.tar";
  build_oci_archive(s.dir / "oci", archive, layer);

  // The proxy plugin is known to containerd.
  auto plugins = s.ctr({"plugins", "ls"});
  REQUIRE(plugins.exited_ok());
  CHECK(plugins.output.find("io.containerd.snapshotter.v1    nydus") != std::string::npos);

  // Import: containerd unpacks the layer through Prepare/Commit of ours.
  auto import = s.ctr({"images", "import", "--snapshotter", "nydus", archive.string()});
  INFO(import.output);
  REQUIRE(import.exited_ok());
  CHECK(import.output.find(kImage) != std::string::npos);

  GrpcClient client(s.nydus_sock.string());
  // The unpacked layer is one committed snapshot of ours, named by
  // containerd after the layer's chain id; the extraction key is gone.
  auto committed = client.list({"kind==committed"});
  REQUIRE(committed.ok());
  REQUIRE(committed->size() == 1);
  CHECK(committed->at(0).parent.empty());
  CHECK(committed->at(0).name.find("sha256:") != std::string::npos);
  CHECK(client.list({"kind==active"})->empty());
  auto layer_usage = client.usage(committed->at(0).name);
  REQUIRE(layer_usage.ok());
  CHECK(layer_usage->size >= static_cast<int64_t>(fs::file_size("/bin/busybox")));

  // Run: the container's rootfs is an overlay of our committed layer.
  s.containers.push_back("c1");
  std::string script =
      "cd /data && /bin/sha256sum hello.txt sub/numbers.txt empty && /bin/find / -xdev | /bin/busybox sort "
      "&& /bin/busybox readlink /bin/sh && /bin/busybox readlink link-to-hello && /bin/cat link-to-hello";
  auto run = s.ctr({"run", "--snapshotter", "nydus", "--rm", kImage, "c1", "/bin/busybox", "sh", "-c", script});
  INFO(run.output);
  REQUIRE(run.exited_ok());
  for (const auto& [name, content] : layer.files) {
    std::string rel = name.substr(5);  // below /data
    INFO(name);
    CHECK(run.output.find(sha256_hex(content) + "  " + rel) != std::string::npos);
  }
  // Exactly the layer's files (plus the mount points runc creates).
  std::set<std::string> seen;
  std::istringstream lines(run.output);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("/", 0) == 0) seen.insert(line);
  }
  std::set<std::string> expected = {"/", "/bin", "/bin/busybox", "/data", "/data/sub"};
  for (const auto& [name, _] : layer.files) expected.insert("/" + name);
  for (const auto& [name, _] : layer.symlinks) expected.insert("/" + name);
  std::set<std::string> runtime = {"/dev", "/proc", "/sys", "/run", "/etc", "/etc/resolv.conf", "/etc/hosts",
                                   "/etc/hostname", "/tmp"};
  for (const auto& path : seen) {
    bool runtime_made = runtime.count(path) > 0;
    INFO(path);
    CHECK((expected.count(path) > 0 || runtime_made));
  }
  for (const auto& path : expected) {
    INFO(path);
    CHECK(seen.count(path) == 1);
  }
  CHECK(run.output.find("busybox\nhello.txt\n") != std::string::npos);
  CHECK(run.output.find(layer.files.at("data/hello.txt")) != std::string::npos);
  s.containers.clear();  // --rm removed it

  // Removing the image synchronously runs containerd's GC, which removes our
  // snapshots and calls Cleanup.
  auto rm = s.ctr({"images", "rm", "--sync", kImage});
  INFO(rm.output);
  REQUIRE(rm.exited_ok());
  auto left = client.list();
  REQUIRE(left.ok());
  CHECK(left->empty());
  CHECK(fs::is_empty(s.dir / "nydus/snapshots"));

  // Stop both daemons by pid; nothing may stay mounted.
  s.containerd->signal(SIGTERM);
  REQUIRE(s.containerd->wait(kStopTimeout).has_value());
  s.snapshotter->signal(SIGTERM);
  auto status = s.snapshotter->wait(kStopTimeout);
  REQUIRE(status.has_value());
  CHECK(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 0);
  CHECK(mounts_under(s.dir.path().string()).empty());
}

// ---------------------------------------------------------------------------
// Nydus images: the layer is a RAFS bootstrap, the data comes from nydusd.

namespace {

const std::string kNydusImage = "docker.io/library/nydus-e2e-rafs:latest";

// Writes the Layer's tree on disk, builds it with nydus-image (blobs into
// `blobs`, the localfs dir of the nydusd template), and packages an OCI
// image whose only layer holds image/image.boot.
void build_nydus_archive(const fs::path& work, const fs::path& blobs, const fs::path& archive_path,
                         const Layer& layer) {
  fs::path src = work / "src";
  fs::create_directories(src / "bin");
  fs::create_directories(src / "data/sub");
  fs::copy_file("/bin/busybox", src / "bin/busybox");
  fs::permissions(src / "bin/busybox", fs::perms(0755));
  for (const auto& [name, content] : layer.files) std::ofstream(src / name, std::ios::binary) << content;
  for (const auto& [name, target] : layer.symlinks) fs::create_symlink(target, src / name);
  fs::create_directories(blobs);
  fs::path boot = work / "image.boot";
  auto built = run_command({std::string(NYDUS_BIN_DIR) + "/nydus-image", "create", "-t", "dir-rafs", "-B",
                            boot.string(), "-D", blobs.string(), src.string()},
                           kCommandTimeout);
  INFO(built.output);
  REQUIRE(built.exited_ok());
  fs::path layer_tmp = work / "layer.tar";
  {
    TarWriter tar(layer_tmp);
    tar.dir("image/");
    tar.file("image/image.boot", read_file(boot));
    tar.close();
  }
  package_oci_archive(work / "oci", archive_path, layer_tmp, kNydusImage);
}

// A snapshotter set up for nydus images: nydusd from the build, a template
// whose localfs backend reads the image's blobs dir.
void configure_nydus(Stack& s, const std::string& daemon_mode) {
  fs::path tmpl = s.dir / "nydusd-config.json";
  std::ofstream(tmpl) << json{{"device",
                               {{"backend", {{"type", "localfs"}, {"config", {{"dir", (s.dir / "blobs").string()}}}}},
                                {"cache", {{"type", "blobcache"}, {"config", {{"work_dir", "/replaced"}}}}}}},
                              {"mode", "direct"},
                              {"digest_validate", true}}
                              .dump(2);
  s.snapshotter_flags = {"--nydusd-path", std::string(NYDUS_BIN_DIR) + "/nydusd", "--nydusd-config", tmpl.string(),
                         "--daemon-mode", daemon_mode};
}

bool have_e2e_tools() {
  return fs::exists("/usr/bin/containerd") && fs::exists("/usr/bin/ctr") && fs::exists("/bin/busybox");
}

}  // namespace

TEST_CASE("e2e: a nydus image runs through nydusd and shows exactly its source tree") {
  if (!have_e2e_tools()) {
    WARN("containerd, ctr or busybox-static is missing; skipped");
    return;
  }
  Stack s;
  configure_nydus(s, "dedicated");
  Layer layer;
  fs::path archive = s.dir / "nydus-image.tar";
  build_nydus_archive(s.dir / "build", s.dir / "blobs", archive, layer);
  s.start();

  auto import = s.ctr({"images", "import", "--snapshotter", "nydus", archive.string()});
  INFO(import.output);
  REQUIRE(import.exited_ok());
  CHECK(s.daemon_records().empty());  // importing starts no daemon

  s.containers.push_back("n1");
  std::string script =
      "cd /data && /bin/sha256sum hello.txt sub/numbers.txt empty /bin/busybox && /bin/find / -xdev | "
      "/bin/busybox sort && /bin/busybox readlink link-to-hello && /bin/cat link-to-hello";
  auto run = s.ctr({"run", "--snapshotter", "nydus", "--rm", kNydusImage, "n1", "/bin/busybox", "sh", "-c", script});
  INFO(run.output);
  INFO(s.snapshotter_log());
  REQUIRE(run.exited_ok());
  s.containers.clear();
  for (const auto& [name, content] : layer.files) {
    INFO(name);
    CHECK(run.output.find(sha256_hex(content) + "  " + name.substr(5)) != std::string::npos);
  }
  CHECK(run.output.find(sha256_hex(read_file("/bin/busybox")) + "  /bin/busybox") != std::string::npos);
  std::set<std::string> seen;
  std::istringstream lines(run.output);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("/", 0) == 0) seen.insert(line);
  }
  std::set<std::string> expected = {"/", "/bin", "/bin/busybox", "/data", "/data/sub"};
  for (const auto& [name, _] : layer.files) expected.insert("/" + name);
  for (const auto& [name, _] : layer.symlinks) expected.insert("/" + name);
  std::set<std::string> runtime = {"/dev", "/proc", "/sys", "/run", "/etc", "/etc/resolv.conf", "/etc/hosts",
                                   "/etc/hostname", "/tmp"};
  for (const auto& path : seen) {
    INFO(path);
    CHECK((expected.count(path) > 0 || runtime.count(path) > 0));
  }
  for (const auto& path : expected) {
    INFO(path);
    CHECK(seen.count(path) == 1);
  }
  // The image's bootstrap is not part of the container's tree.
  CHECK(seen.count("/image") == 0);

  auto daemons = s.daemon_records();
  REQUIRE(daemons.size() == 1);
  CHECK(daemons[0].state == "RUNNING");
  int64_t pid = daemons[0].pid;

  // Removing the image removes the layer; Cleanup stops its nydusd.
  auto rm = s.ctr({"images", "rm", "--sync", kNydusImage});
  INFO(rm.output);
  REQUIRE(rm.exited_ok());
  auto adopted = nydus::Process::adopt(static_cast<pid_t>(pid));
  if (adopted.ok()) {
    adopted->detach();
    CHECK(adopted->wait(kStopTimeout).ok());
  }
  CHECK(s.daemon_records().empty());
  CHECK(fs::is_empty(s.dir / "nydus/snapshots"));
}

TEST_CASE("e2e: kill -9 of the snapshotter under a running nydus container is invisible to it") {
  if (!have_e2e_tools()) {
    WARN("containerd, ctr or busybox-static is missing; skipped");
    return;
  }
  Stack s;
  configure_nydus(s, "dedicated");
  Layer layer;
  fs::path archive = s.dir / "nydus-image.tar";
  build_nydus_archive(s.dir / "build", s.dir / "blobs", archive, layer);
  s.start();
  auto import = s.ctr({"images", "import", "--snapshotter", "nydus", archive.string()});
  INFO(import.output);
  REQUIRE(import.exited_ok());

  // The container reads and checks the image's files in a loop and counts
  // rounds into a bind-mounted directory; any failed read is written down.
  fs::path out = s.dir / "out";
  fs::create_directories(out);
  std::string want = sha256_hex(layer.files.at("data/hello.txt"));
  std::string loop =
      "i=0; while true; do "
      "if /bin/sha256sum /data/hello.txt /data/sub/numbers.txt /bin/busybox > /out/sums 2>&1 && "
      "/bin/busybox grep -q " + want + " /out/sums; then i=$((i+1)); echo $i > /out/count; "
      "else echo ERR >> /out/errors; /bin/cat /out/sums >> /out/errors; fi; /bin/busybox usleep 5000; done";
  s.containers.push_back("reader");
  auto started = s.ctr({"run", "-d", "--snapshotter", "nydus", "--mount",
                        "type=bind,src=" + out.string() + ",dst=/out,options=rbind:rw", kNydusImage, "reader",
                        "/bin/busybox", "sh", "-c", loop});
  INFO(started.output);
  INFO(s.snapshotter_log());
  REQUIRE(started.exited_ok());

  auto count = [&] {
    std::ifstream in(out / "count");
    long n = 0;
    in >> n;
    return n;
  };
  // Waits until the container completed `target` rounds: woken by inotify
  // whenever it writes into `out`; the deadline only turns a hang into a
  // failure.
  nydus::UniqueFd inotify(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  REQUIRE(inotify);
  REQUIRE(::inotify_add_watch(inotify.get(), out.c_str(), IN_CLOSE_WRITE | IN_MODIFY | IN_CREATE) >= 0);
  auto wait_rounds = [&](long target) {
    auto deadline = std::chrono::steady_clock::now() + kCommandTimeout;
    while (count() < target) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd pfd{inotify.get(), POLLIN, 0};
      ::poll(&pfd, 1, static_cast<int>(left.count()));
      char buf[4096];
      while (::read(inotify.get(), buf, sizeof(buf)) > 0) {
      }
    }
    return true;
  };
  INFO(read_file(out / "errors"));
  REQUIRE(wait_rounds(20));
  auto before = s.daemon_records();
  REQUIRE(before.size() == 1);

  s.snapshotter->signal(SIGKILL);
  REQUIRE(s.snapshotter->wait(kStopTimeout).has_value());
  s.snapshotter.reset();
  long during = count();
  CHECK(::kill(static_cast<pid_t>(before[0].pid), 0) == 0);  // nydusd serves on
  s.start_snapshotter();
  CHECK(wait_rounds(during + 50));
  CHECK_FALSE(fs::exists(out / "errors"));
  if (fs::exists(out / "errors")) FAIL_CHECK(read_file(out / "errors"));

  // The restarted snapshotter re-adopted the same nydusd, and its records
  // agree with what containerd sees.
  auto after = s.daemon_records();
  REQUIRE(after.size() == 1);
  CHECK(after[0].id == before[0].id);
  CHECK(after[0].pid == before[0].pid);
  CHECK(after[0].state == "RUNNING");
  auto instances = s.instance_records();
  REQUIRE(instances.size() == 1);
  CHECK(instances[0].daemon_id == after[0].id);
  // containerd's proxy connection broke with the old snapshotter; its gRPC
  // channel reconnects with its own back-off (nothing of it is observable
  // from here), so the first calls may report "unavailable": retry under
  // the command deadline.
  auto ls = s.ctr({"snapshots", "--snapshotter", "nydus", "ls"});
  for (auto deadline = std::chrono::steady_clock::now() + kCommandTimeout;
       !ls.exited_ok() && ls.output.find("unavailable") != std::string::npos &&
       std::chrono::steady_clock::now() < deadline;) {
    std::this_thread::sleep_for(200ms);
    ls = s.ctr({"snapshots", "--snapshotter", "nydus", "ls"});
  }
  INFO(ls.output);
  REQUIRE(ls.exited_ok());
  // KEY PARENT KIND: the container's active snapshot sits on the meta layer
  // whose instance the record names.
  CHECK(ls.output.find("reader") != std::string::npos);
  // (The record names the layer by containerd's namespaced key "<ns>/<n>/<name>".)
  std::string meta_name = instances[0].image_id.substr(instances[0].image_id.rfind('/') + 1);
  CHECK(ls.output.find("reader") != std::string::npos);
  CHECK(ls.output.find(meta_name) != std::string::npos);
  CHECK(ls.output.find("Active") != std::string::npos);

  s.ctr({"tasks", "kill", "-s", "SIGKILL", "reader"}, 10s);
  s.ctr({"tasks", "rm", "-f", "reader"}, 10s);
  s.ctr({"containers", "rm", "reader"}, 10s);
  s.containers.clear();
  auto rm = s.ctr({"images", "rm", "--sync", kNydusImage});
  INFO(rm.output);
  CHECK(rm.exited_ok());
  auto adopted = nydus::Process::adopt(static_cast<pid_t>(before[0].pid));
  if (adopted.ok()) {
    adopted->detach();
    CHECK(adopted->wait(kStopTimeout).ok());
  }
  CHECK(s.daemon_records().empty());
}
