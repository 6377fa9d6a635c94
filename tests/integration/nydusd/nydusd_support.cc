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

namespace {

std::map<std::string, std::string> xattrs_of(const fs::path& path) {
  std::map<std::string, std::string> out;
  std::string names(65536, '\0');
  ssize_t n = ::llistxattr(path.c_str(), names.data(), names.size());
  if (n <= 0) return out;
  names.resize(static_cast<size_t>(n));
  for (size_t pos = 0; pos < names.size();) {
    std::string name = names.substr(pos, names.find('\0', pos) - pos);
    pos += name.size() + 1;
    if (name.rfind("security.", 0) == 0 || name.rfind("system.", 0) == 0) continue;
    std::string value(65536, '\0');
    ssize_t len = ::lgetxattr(path.c_str(), name.c_str(), value.data(), value.size());
    value.resize(len > 0 ? static_cast<size_t>(len) : 0);
    out[name] = value;
  }
  return out;
}

}  // namespace

std::vector<std::string> compare_trees(const fs::path& a, const fs::path& b,
                                       const CompareOptions& options) {
  std::vector<std::string> diffs;
  auto note = [&](const std::string& rel, const std::string& what) { diffs.push_back(rel + ": " + what); };
  std::vector<fs::path> paths = {a};
  for (auto it = fs::recursive_directory_iterator(a); it != fs::recursive_directory_iterator(); ++it) {
    paths.push_back(it->path());
  }
  size_t count_b = 0;
  for (auto it = fs::recursive_directory_iterator(b); it != fs::recursive_directory_iterator(); ++it) {
    ++count_b;
  }
  if (count_b + 1 != paths.size()) {
    diffs.push_back(fmt::format("entry count {} vs {}", paths.size() - 1, count_b));
  }
  for (const auto& pa : paths) {
    std::string rel = pa == a ? "/" : "/" + pa.lexically_relative(a).string();
    fs::path pb = pa == a ? b : b / pa.lexically_relative(a);
    struct stat sa {}, sb {};
    REQUIRE(::lstat(pa.c_str(), &sa) == 0);
    if (::lstat(pb.c_str(), &sb) != 0) {
      note(rel, "missing");
      continue;
    }
    if (sa.st_mode != sb.st_mode) note(rel, fmt::format("mode {:o} vs {:o}", sa.st_mode, sb.st_mode));
    if (sa.st_uid != sb.st_uid || sa.st_gid != sb.st_gid) note(rel, "owner");
    if (rel != "/" && sa.st_mtim.tv_sec != sb.st_mtim.tv_sec) {
      note(rel, fmt::format("mtime {} vs {}", sa.st_mtim.tv_sec, sb.st_mtim.tv_sec));
    }
    if (rel != "/" && options.compare_mtime_nsec && sa.st_mtim.tv_nsec != sb.st_mtim.tv_nsec) {
      note(rel, fmt::format("mtime nsec {} vs {}", sa.st_mtim.tv_nsec, sb.st_mtim.tv_nsec));
    }
    if ((S_ISCHR(sa.st_mode) || S_ISBLK(sa.st_mode)) && sa.st_rdev != sb.st_rdev) note(rel, "rdev");
    if (!S_ISDIR(sa.st_mode) || options.compare_nlink_dirs) {
      if (sa.st_nlink != sb.st_nlink) note(rel, fmt::format("nlink {} vs {}", sa.st_nlink, sb.st_nlink));
    }
    if (options.compare_ino) {
      constexpr uint64_t kInoMask = (uint64_t{1} << 56) - 1;
      if ((sa.st_ino & kInoMask) != (sb.st_ino & kInoMask)) {
        note(rel, fmt::format("ino {:#x} vs {:#x}", sa.st_ino, sb.st_ino));
      }
    }
    if (S_ISREG(sa.st_mode)) {
      if (sa.st_size != sb.st_size) note(rel, fmt::format("size {} vs {}", sa.st_size, sb.st_size));
      else if (read_file(pa) != read_file(pb)) note(rel, "content differs");
    } else if (S_ISLNK(sa.st_mode)) {
      if (fs::read_symlink(pa) != fs::read_symlink(pb)) note(rel, "symlink target");
    }
    if (options.compare_xattrs && xattrs_of(pa) != xattrs_of(pb)) note(rel, "xattrs");
  }
  return diffs;
}

bool mount_erofs(const std::string& image, const std::string& target, std::string* error) {
  if (::mount(image.c_str(), target.c_str(), "erofs", MS_RDONLY, nullptr) == 0) return true;
  *error = std::strerror(errno);
  return false;
}

}  // namespace nydus::testing
