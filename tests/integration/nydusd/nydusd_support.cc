#include "tests/integration/nydusd/nydusd_support.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include "common/unix_socket.h"
#include "tests/support/tree_compare.h"

namespace nydus::testing {

namespace fs = std::filesystem;

std::string bin_path(const std::string& name) { return std::string(NYDUS_BIN_DIR) + "/" + name; }
std::string sample_dir() { return std::string(NYDUS_TESTDATA_DIR) + "/rafs-v6-2.2"; }
std::string sample_boot() { return sample_dir() + "/rafs-v6-2.2.boot"; }

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path.string());
  std::stringstream s;
  s << in.rdbuf();
  if (in.bad()) throw std::runtime_error("cannot read " + path.string());
  return s.str();
}

int run_tool(const std::vector<std::string>& argv, const std::string& log) {
  SpawnOptions options;
  options.argv = argv;
  options.stdout_redirect = Redirect::append_to(log);
  options.stderr_redirect = Redirect::append_to(log);
  options.parent_death_signal = SIGKILL;
  auto process = Process::spawn(options);
  REQUIRE(process.ok());
  auto status = process->wait(kToolDeadline);
  REQUIRE(status.ok());
  return *status;
}

std::string v1_config(const std::string& blob_dir, const std::string& work_dir, bool validate) {
  nlohmann::json config = {
      {"device",
       {{"backend", {{"type", "localfs"}, {"config", {{"dir", blob_dir}}}}},
        {"cache", {{"type", "blobcache"}, {"config", {{"work_dir", work_dir}}}}}}},
      {"mode", "direct"},
      {"digest_validate", validate},
      {"iostats_files", false},
      {"enable_xattr", true},
      {"fs_prefetch", {{"enable", false}}}};
  return config.dump();
}

// ---------------------------------------------------------------------------

std::unique_ptr<NydusdProcess> NydusdProcess::start(
    const fs::path& dir, std::vector<std::string> args,
    std::vector<std::pair<std::string, std::string>> env) {
  std::string apisock = (dir / "api.sock").string();
  std::string log = (dir / "nydusd.log").string();
  SpawnOptions options;
  options.argv = {bin_path("nydusd")};
  options.argv.insert(options.argv.end(), args.begin(), args.end());
  options.argv.insert(options.argv.end(), {"--apisock", apisock, "--log-level", "debug"});
  options.stdout_redirect = Redirect::append_to(log);
  options.stderr_redirect = Redirect::append_to(log);
  options.parent_death_signal = SIGKILL;
  options.env = std::move(env);
  auto process = Process::spawn(options);
  REQUIRE(process.ok());
  return std::unique_ptr<NydusdProcess>(new NydusdProcess(std::move(*process), apisock, log));
}

std::unique_ptr<NydusdProcess> NydusdProcess::start_and_wait(const fs::path& dir,
                                                             std::vector<std::string> args,
                                                             const std::string& state) {
  auto daemon = start(dir, std::move(args));
  daemon->wait_state(state);
  return daemon;
}

std::string NydusdProcess::log() const { return read_text(log_path_); }

void NydusdProcess::wait_state(const std::string& state) {
  auto deadline = std::chrono::steady_clock::now() + kDaemonStartDeadline;
  auto backoff = std::chrono::milliseconds(1);
  std::string last;
  while (std::chrono::steady_clock::now() < deadline) {
    if (process_.exited()) FAIL("nydusd exited early (" << *process_.exit_status() << "):\n" << log());
    if (connect_unix(apisock_, std::chrono::milliseconds(100)).ok()) {
      if (!client_) client_ = std::make_unique<HttpClient>(apisock_);
      auto r = client_->request("GET", "/api/v1/daemon", {}, std::chrono::seconds(5));
      if (r.ok() && r->status == 200) {
        last = nlohmann::json::parse(r->body).value("state", "");
        if (last == state) return;
      }
    }
    std::this_thread::sleep_for(backoff);  // connect/state retry back-off, bounded by the deadline
    backoff = std::min(backoff * 2, std::chrono::milliseconds(50));
  }
  FAIL("nydusd did not reach " << state << " (last: " << last << "):\n" << log());
}

HttpResponse NydusdProcess::call(const std::string& method, const std::string& target,
                                 const std::string& body) {
  if (!client_) client_ = std::make_unique<HttpClient>(apisock_);
  auto r = client_->request(method, target, body, std::chrono::seconds(30));
  if (!r.ok()) FAIL(method << " " << target << ": " << r.error().message() << "\n" << log());
  return *r;
}

nlohmann::json NydusdProcess::get_json(const std::string& target) {
  auto r = call("GET", target);
  INFO(r.body);
  REQUIRE(r.status == 200);
  return nlohmann::json::parse(r.body);
}

int NydusdProcess::wait_exit() {
  auto status = process_.wait(kDaemonExitDeadline);
  if (!status.ok()) FAIL("nydusd did not exit: " << status.error().message() << "\n" << log());
  return *status;
}

// ---------------------------------------------------------------------------

namespace {

void write_file(const fs::path& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

std::string random_bytes(std::mt19937& rng, size_t size) {
  std::string data(size, '\0');
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& c : data) c = static_cast<char>(byte(rng));
  return data;
}

void set_times(const fs::path& path, time_t secs, long nsec) {
  timespec times[2] = {{secs, nsec}, {secs, nsec}};
  REQUIRE(::utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW) == 0);
}

}  // namespace

void make_source_tree(const fs::path& root, uint32_t seed) {
  std::mt19937 rng(seed);
  fs::create_directories(root / "dir/sub/deeper");
  fs::create_directories(root / "empty");
  write_file(root / "empty-file", "");
  write_file(root / "tiny", "x");
  write_file(root / "block-minus-one", random_bytes(rng, 4095));
  write_file(root / "block", random_bytes(rng, 4096));
  write_file(root / "dir/one-mib-plus", random_bytes(rng, (1 << 20) + 17));
  write_file(root / "dir/sub/three-mib", random_bytes(rng, 3 << 20));
  std::string text;
  for (int i = 0; i < 20000; ++i) text += fmt::format("line {} of a compressible file\n", i);
  write_file(root / "dir/sub/deeper/text.txt", text);
  write_file(root / "dir/sub/deeper" / std::string(200, 'n'), "long name");
  write_file(root / "dup-a", std::string(100000, 'a'));
  write_file(root / "dup-b", std::string(100000, 'a'));  // same chunks as dup-a
  fs::create_symlink("dir/sub/three-mib", root / "link-relative");
  fs::create_symlink("/nonexistent/target", root / "link-dangling");
  fs::create_hard_link(root / "tiny", root / "hardlink-to-tiny");
  REQUIRE(::mkfifo((root / "fifo").c_str(), 0640) == 0);
  REQUIRE(::mknod((root / "chardev").c_str(), S_IFCHR | 0600, makedev(1, 3)) == 0);
  fs::permissions(root / "block", fs::perms(0600));
  fs::permissions(root / "dir/sub", fs::perms(0750));
  fs::permissions(root / "tiny", fs::perms(04755));
  REQUIRE(::lchown((root / "dup-a").c_str(), 1000, 1001) == 0);
  REQUIRE(::lchown((root / "link-relative").c_str(), 1002, 1003) == 0);
  REQUIRE(::lsetxattr((root / "dir/one-mib-plus").c_str(), "user.origin", "test", 4, 0) == 0);
  REQUIRE(::lsetxattr((root / "dir").c_str(), "user.empty", "", 0, 0) == 0);
  REQUIRE(::lsetxattr((root / "tiny").c_str(), "trusted.nydus-test", "y", 1, 0) == 0);
  // Timestamps last (creating children touches the directories).
  time_t t = 1600000000;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
    set_times(it->path(), t++, 123456789);
  }
  set_times(root, t, 0);
}

std::vector<std::string> compare_trees(const fs::path& a, const fs::path& b,
                                       const CompareOptions& options) {
  TreeCompareOptions o;
  o.nlink_dirs = options.compare_nlink_dirs;
  o.mtime_nsec = options.compare_mtime_nsec;
  o.ino_low_bits = options.compare_ino;
  o.xattrs = options.compare_xattrs;
  o.root_times = false;  // a FUSE root may be a pseudo directory
  o.limit = 100;
  return diff_trees(a, b, o).diffs;
}

bool mount_erofs(const std::string& image, const std::string& target, std::string* error) {
  if (::mount(image.c_str(), target.c_str(), "erofs", MS_RDONLY, nullptr) == 0) return true;
  *error = std::strerror(errno);
  return false;
}

}  // namespace nydus::testing
