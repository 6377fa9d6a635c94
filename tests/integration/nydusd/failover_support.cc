#include "tests/integration/nydusd/failover_support.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <fstream>
#include <random>

#include <catch2/catch.hpp>

#include "nydusd/rafs/bootstrap.h"
#include "tests/integration/nydusd/nydusd_support.h"

namespace nydus::testing {

namespace fs = std::filesystem;

namespace {
constexpr size_t kMaxReadLen = 256 * 1024;
constexpr const char* kFusectl = "/sys/fs/fuse/connections";
}  // namespace

FailoverImage make_failover_image(const fs::path& dir, size_t count, size_t max_size, uint32_t seed) {
  FailoverImage image;
  fs::path src = dir / "src";
  fs::create_directories(src);
  std::mt19937 rng(seed);
  for (size_t i = 0; i < count + 1; ++i) {
    bool hang = i == count;
    std::string name = hang ? "hang.bin" : "f" + std::to_string(i) + ".bin";
    size_t size = hang ? 64 * 1024 : 64 * 1024 + rng() % max_size;
    std::string content(size, '\0');
    for (auto& c : content) c = static_cast<char>(rng());
    std::ofstream(src / name, std::ios::binary).write(content.data(), static_cast<long>(size));
    image.files.emplace_back(name, std::move(content));
  }
  fs::create_directories(dir / "blobs");
  fs::create_directories(dir / "cache");
  image.boot = (dir / "image.boot").string();
  image.blob_dir = (dir / "blobs").string();
  std::string log = (dir / "nydus-image.log").string();
  int status = run_tool({bin_path("nydus-image"), "create", "-t", "dir-rafs", "-B", image.boot, "-D",
                         image.blob_dir, "-c", "lz4_block", src.string()},
                        log);
  INFO(read_text(log));
  REQUIRE(status == 0);
  image.config_path = (dir / "config.json").string();
  std::ofstream(image.config_path) << v1_config(image.blob_dir, (dir / "cache").string(), true);
  return image;
}

uint64_t root_file_node_id(const std::string& boot, const std::string& name) {
  auto bootstrap = rafs::Bootstrap::open(boot);
  REQUIRE(bootstrap.ok());
  auto nid = (*bootstrap)->lookup((*bootstrap)->root_nid(), name);
  REQUIRE(nid.ok());
  return (uint64_t{1} << 56) | *nid;
}

ReadLoad::ReadLoad(fs::path mnt, const FailoverImage& image, unsigned threads)
    : mnt_(std::move(mnt)), image_(image), threads_(threads) {
  struct stat st {};
  if (::stat(mnt_.c_str(), &st) == 0) conn_id_ = (uint64_t{major(st.st_dev)} << 20) | minor(st.st_dev);
}

ReadLoad::~ReadLoad() { stop(); }

void ReadLoad::start() {
  stop_ = false;
  for (unsigned i = 0; i < threads_; ++i) {
    running_.fetch_add(1);
    workers_.emplace_back(&ReadLoad::reader, this, 1000 + i);
  }
}

void ReadLoad::stop() {
  if (workers_.empty()) return;
  stop_ = true;
  auto deadline = std::chrono::steady_clock::now() + kStopDeadline;
  while (running_.load() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // bounded by the deadline
  }
  if (running_.load() > 0 && conn_id_ != 0) {
    // Readers are stuck on a mount nobody serves: abort the connection so
    // they return (ECONNABORTED/ENOTCONN) and the test can fail cleanly.
    if (!fs::exists(fs::path(kFusectl) / "0") && !fs::exists(fs::path(kFusectl) / std::to_string(conn_id_))) {
      ::mount("fusectl", kFusectl, "fusectl", 0, nullptr);
    }
    std::ofstream(fs::path(kFusectl) / std::to_string(conn_id_) / "abort") << "1";
    aborted_ = true;
    note_error("readers were stuck; the FUSE connection was aborted");
  }
  for (auto& w : workers_) w.join();
  workers_.clear();
}

bool ReadLoad::wait_more_ops(uint64_t more, std::chrono::milliseconds timeout) const {
  uint64_t target = ops_.load() + more;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (ops_.load() < target) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // bounded by the deadline
  }
  return true;
}

double ReadLoad::take_max_ms() { return max_us_.exchange(0) / 1000.0; }

std::vector<std::string> ReadLoad::first_errors() const {
  std::lock_guard lock(mu_);
  return first_errors_;
}

void ReadLoad::note_error(std::string message) {
  errors_.fetch_add(1);
  std::lock_guard lock(mu_);
  if (first_errors_.size() < 10) first_errors_.push_back(std::move(message));
}

void ReadLoad::reader(unsigned seed) {
  std::mt19937_64 rng(seed);
  std::vector<char> buf(kMaxReadLen);
  while (!stop_.load()) {
    const auto& [name, content] = image_.files[rng() % (image_.files.size() - 1)];  // not hang.bin
    size_t offset = rng() % content.size();
    size_t len = 1 + rng() % std::min(kMaxReadLen, content.size() - offset);
    auto start = std::chrono::steady_clock::now();
    std::string path = (mnt_ / name).string();
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      note_error("open " + path + ": " + std::strerror(errno));
      continue;
    }
    size_t got = 0;
    while (got < len) {
      ssize_t n = ::pread(fd, buf.data() + got, len - got, static_cast<off_t>(offset + got));
      if (n <= 0) {
        note_error("pread " + path + ": " + (n < 0 ? std::strerror(errno) : "short read"));
        break;
      }
      got += static_cast<size_t>(n);
    }
    if (got == len && std::memcmp(buf.data(), content.data() + offset, len) != 0) {
      note_error("data mismatch in " + path + " at " + std::to_string(offset));
    }
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);  // the next read reaches the daemon
    ::close(fd);
    auto us = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                        std::chrono::steady_clock::now() - start)
                                        .count());
    for (auto* m : {&max_us_, &max_us_total_}) {
      uint64_t prev = m->load();
      while (us > prev && !m->compare_exchange_weak(prev, us)) {
      }
    }
    ops_.fetch_add(1);
  }
  running_.fetch_sub(1);
}

}  // namespace nydus::testing
