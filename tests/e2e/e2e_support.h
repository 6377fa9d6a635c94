// Shared pieces of the end-to-end tests with a real containerd: OCI and
// nydus image archives built here, and the Stack that owns a private
// containerd plus our snapshotter (torn down by pid, also on failure).
#pragma once

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
#include "common/mount.h"
#include "tests/support/test_child.h"

namespace nydus::e2e {

using namespace nydus::snapshotter;
using namespace nydus::snapshotter::testing;
using nydus::testing::CommandResult;
using nydus::testing::TempDir;
using nydus::testing::TestChild;
using nydus::mounts_below;
using nydus::testing::run_command;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using json = nlohmann::json;


const std::string kSnapshotterBinary = std::string(NYDUS_BIN_DIR) + "/containerd-nydus-grpc";
const std::string kImage = "docker.io/library/nydus-e2e:latest";
constexpr auto kStartTimeout = 20s;
constexpr auto kCommandTimeout = 30s;
constexpr auto kStopTimeout = 15s;

inline std::string sha256_hex(const std::string& data) {
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

inline std::string read_file(const fs::path& p) {
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

inline std::string go_arch() {
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

inline void package_oci_archive(const fs::path& work, const fs::path& archive_path, const fs::path& layer_tmp,
                         const std::string& image);

// Writes an OCI image archive (oci-layout, index.json, blobs) for kImage.
inline void build_oci_archive(const fs::path& work, const fs::path& archive_path, const Layer& layer) {
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
inline void package_oci_archive(const fs::path& work, const fs::path& archive_path, const fs::path& layer_tmp,
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
  // A TOML config (--config) written before each snapshotter start; "" for
  // none. Flags still override it.
  std::string config_toml;
  fs::path system_sock = dir / "system.sock";

  void start_snapshotter() {
    std::vector<std::string> argv{kSnapshotterBinary, "--root", (dir / "nydus").string(), "--address",
                                  nydus_sock.string(), "--log-level", "debug"};
    if (snapshotter_flags.empty()) argv.push_back("--log-to-stdout");
    argv.insert(argv.end(), snapshotter_flags.begin(), snapshotter_flags.end());
    if (!config_toml.empty()) {
      std::ofstream(dir / "snapshotter.toml") << config_toml;
      argv.insert(argv.end(), {"--config", (dir / "snapshotter.toml").string()});
    }
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

  // Kills the snapshotter with SIGKILL and waits for it (start_snapshotter()
  // brings it back).
  void kill9_snapshotter() {
    snapshotter->signal(SIGKILL);
    REQUIRE(snapshotter->wait(kStopTimeout).has_value());
    snapshotter.reset();
  }

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



const std::string kNydusImage = "docker.io/library/nydus-e2e-rafs:latest";

// Writes the Layer's tree on disk, builds it with nydus-image (blobs into
// `blobs`, the localfs dir of the nydusd template), and packages an OCI
// image whose only layer holds image/image.boot.
inline void build_nydus_archive(const fs::path& work, const fs::path& blobs, const fs::path& archive_path,
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
inline void configure_nydus(Stack& s, const std::string& daemon_mode) {
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

inline bool have_e2e_tools() {
  return fs::exists("/usr/bin/containerd") && fs::exists("/usr/bin/ctr") && fs::exists("/bin/busybox");
}

// True, with a warning, where the tools are missing: the test case returns.
inline bool skip_without_e2e_tools() {
  if (have_e2e_tools()) return false;
  WARN("containerd, ctr or busybox-static is missing; skipped");
  return true;
}

// Builds `layer` as a nydus image, starts the stack (configure_nydus first)
// and imports the image through the nydus snapshotter.
inline void start_with_nydus_image(Stack& s, const Layer& layer) {
  fs::path archive = s.dir / "nydus-image.tar";
  build_nydus_archive(s.dir / "build", s.dir / "blobs", archive, layer);
  s.start();
  auto import = s.ctr({"images", "import", "--snapshotter", "nydus", archive.string()});
  INFO(import.output);
  REQUIRE(import.exited_ok());
}

// The directory a reader container writes into (bind-mounted at /out): its
// round count in `count`, its failures appended to `errors`. Watched with
// inotify, so that waiting for rounds wakes on each write.
class ReaderOut {
 public:
  explicit ReaderOut(fs::path dir) : path(std::move(dir)) {
    fs::create_directories(path);
    inotify_ = nydus::UniqueFd(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
    REQUIRE(inotify_);
    REQUIRE(::inotify_add_watch(inotify_.get(), path.c_str(), IN_CLOSE_WRITE | IN_MODIFY | IN_CREATE) >= 0);
  }

  long count() const {
    std::ifstream in(path / "count");
    long n = 0;
    in >> n;
    return n;
  }
  std::string errors() const { return read_file(path / "errors"); }

  // Waits until the container completed `target` rounds (the deadline only
  // turns a hang into a failure).
  bool wait_rounds(long target, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (count() < target) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd pfd{inotify_.get(), POLLIN, 0};
      ::poll(&pfd, 1, static_cast<int>(std::min<long>(left.count(), 200)));
      char buf[4096];
      while (::read(inotify_.get(), buf, sizeof(buf)) > 0) {
      }
    }
    return true;
  }

  const fs::path path;

 private:
  nydus::UniqueFd inotify_;
};

// Runs the detached container "reader" of kNydusImage: `loop` under
// busybox sh, with `out` bind-mounted read-write at /out.
inline void run_reader_container(Stack& s, const fs::path& out, const std::string& loop) {
  s.containers.push_back("reader");
  auto started = s.ctr({"run", "-d", "--snapshotter", "nydus", "--mount",
                        "type=bind,src=" + out.string() + ",dst=/out,options=rbind:rw", kNydusImage, "reader",
                        "/bin/busybox", "sh", "-c", loop});
  INFO(started.output);
  INFO(s.snapshotter_log());
  REQUIRE(started.exited_ok());
}

// Kills and removes the container "reader".
inline void remove_reader_container(Stack& s) {
  s.ctr({"tasks", "kill", "-s", "SIGKILL", "reader"}, 10s);
  s.ctr({"tasks", "rm", "-f", "reader"}, 10s);
  s.ctr({"containers", "rm", "reader"}, 10s);
  s.containers.clear();
}

// Lists the nydus snapshots after a snapshotter restart. containerd's channel
// to the new snapshotter reconnects with its own back-off (not observable
// from here): until it has, calls fail with "unavailable". Retried every
// `pause` under the command deadline, on any failure if `retry_any_failure`,
// else only on "unavailable".
inline CommandResult list_snapshots_after_restart(Stack& s, bool retry_any_failure, std::chrono::milliseconds pause) {
  auto ls = s.ctr({"snapshots", "--snapshotter", "nydus", "ls"});
  for (auto deadline = std::chrono::steady_clock::now() + kCommandTimeout;
       !ls.exited_ok() && (retry_any_failure || ls.output.find("unavailable") != std::string::npos) &&
       std::chrono::steady_clock::now() < deadline;) {
    std::this_thread::sleep_for(pause);
    ls = s.ctr({"snapshots", "--snapshotter", "nydus", "ls"});
  }
  return ls;
}

// Checks that the nydusd `pid` (not our child) exits, if it still runs.
inline void check_daemon_exits(int64_t pid) {
  auto adopted = nydus::Process::adopt(static_cast<pid_t>(pid));
  if (adopted.ok()) {
    adopted->detach();
    CHECK(adopted->wait(kStopTimeout).ok());
  }
}


}  // namespace nydus::e2e
