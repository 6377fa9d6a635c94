// nydusd end to end: real nydusd processes spawned from the test, real FUSE
// mounts, the kernel's EROFS driver as the oracle for what an image holds.
// Every process is owned by the test (killed and reaped even when a check
// fails) and every mount lives below the test's TempDir (detached on exit).
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "common/mount.h"
#include "common/unix_socket.h"
#include "nydusd/rafs/bootstrap.h"
#include "tests/integration/nydusd/nydusd_support.h"

using namespace nydus;
using namespace nydus::testing;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct BuiltImage {
  std::string boot;
  std::string blob_dir;
};

BuiltImage build_image(const fs::path& dir, const fs::path& source, const std::string& compressor) {
  fs::create_directories(dir / "blobs");
  BuiltImage image{(dir / "image.boot").string(), (dir / "blobs").string()};
  std::string log = (dir / "nydus-image.log").string();
  int status = run_tool({bin_path("nydus-image"), "create", "-t", "dir-rafs", "-B", image.boot, "-D",
                         image.blob_dir, "-c", compressor, source.string()},
                        log);
  INFO(read_text(log));
  REQUIRE(status == 0);
  return image;
}

std::string export_and_mount_erofs(const fs::path& dir, const BuiltImage& image) {
  std::string raw = (dir / "image.erofs").string();
  std::string log = (dir / "export.log").string();
  int status = run_tool({bin_path("nydus-image"), "export", "--block", "-B", image.boot, "-D",
                         image.blob_dir, "-O", raw},
                        log);
  INFO(read_text(log));
  REQUIRE(status == 0);
  fs::create_directories(dir / "erofs");
  std::string error;
  INFO(error);
  REQUIRE(mount_erofs(raw, (dir / "erofs").string(), &error));
  return (dir / "erofs").string();
}

std::vector<std::string> mount_args(const fs::path& mnt, const std::string& config_path,
                                    const std::string& boot) {
  return {"--mountpoint", mnt.string(), "--config", config_path, "--bootstrap", boot,
          "--thread-num", "4"};
}

std::string write_config(const fs::path& dir, const std::string& text) {
  std::string path = (dir / "config.json").string();
  std::ofstream(path) << text;
  return path;
}

void check_no_diffs(const std::vector<std::string>& diffs) {
  for (const auto& d : diffs) UNSCOPED_INFO(d);
  CHECK(diffs.empty());
}

}  // namespace

TEST_CASE("nydusd serves the reference sample through localfs with validation, byte-exact",
          "[nydusd]") {
  TempDir tmp("nydusd-sample");
  fs::create_directories(tmp / "mnt");
  auto config = write_config(tmp.path(), v1_config(sample_dir(), (tmp / "cache").string(), true));
  auto daemon = NydusdProcess::start_and_wait(tmp.path(), mount_args(tmp / "mnt", config, sample_boot()));

  CHECK(fs::file_size(tmp / "mnt/lib.rs") == 16931);
  CHECK(fs::file_size(tmp / "mnt/sync_io.rs") == 13400);
  std::string lib = read_file(tmp / "mnt/lib.rs");
  std::string sync_io = read_file(tmp / "mnt/sync_io.rs");
  CHECK(lib.rfind("// Copyright", 0) == 0);

  // The oracle: the kernel's EROFS driver on `nydus-image export --block` output.
  BuiltImage sample{sample_boot(), sample_dir()};
  auto erofs = export_and_mount_erofs(tmp.path(), sample);
  CHECK(lib == read_file(fs::path(erofs) / "lib.rs"));
  CHECK(sync_io == read_file(fs::path(erofs) / "sync_io.rs"));
  CompareOptions options;
  options.compare_ino = true;
  check_no_diffs(compare_trees(tmp / "mnt", erofs, options));

  auto metrics = daemon->get_json("/api/v1/metrics");
  CHECK(metrics["data_read"].get<uint64_t>() >= 16931 + 13400);
  CHECK(daemon->get_json("/api/v1/metrics/blobcache")["digest_failures"] == 0);
}

TEST_CASE("images of every compressor match the source tree and the kernel's EROFS mount",
          "[nydusd]") {
  for (const std::string compressor : {"none", "lz4_block", "zstd"}) {
    DYNAMIC_SECTION("compressor " << compressor) {
      TempDir tmp("nydusd-" + compressor);
      make_source_tree(tmp / "src", 42);
      auto image = build_image(tmp.path(), tmp / "src", compressor);
      fs::create_directories(tmp / "mnt");
      auto config = write_config(tmp.path(), v1_config(image.blob_dir, (tmp / "cache").string()));
      auto daemon = NydusdProcess::start_and_wait(tmp.path(), mount_args(tmp / "mnt", config, image.boot));

      CompareOptions against_source;
      against_source.compare_nlink_dirs = false;
      check_no_diffs(compare_trees(tmp / "src", tmp / "mnt", against_source));

      auto erofs = export_and_mount_erofs(tmp.path(), image);
      CompareOptions against_erofs;
      against_erofs.compare_ino = true;
      check_no_diffs(compare_trees(tmp / "mnt", erofs, against_erofs));
    }
  }
}

TEST_CASE("16 concurrent readers see the right bytes", "[nydusd]") {
  TempDir tmp("nydusd-concurrent");
  make_source_tree(tmp / "src", 7);
  auto image = build_image(tmp.path(), tmp / "src", "zstd");
  fs::create_directories(tmp / "mnt");
  auto config = write_config(tmp.path(), v1_config(image.blob_dir, (tmp / "cache").string()));
  auto daemon = NydusdProcess::start_and_wait(tmp.path(), mount_args(tmp / "mnt", config, image.boot));

  std::vector<std::pair<std::string, std::string>> files;  // relative path, expected bytes
  for (auto it = fs::recursive_directory_iterator(tmp / "src"); it != fs::recursive_directory_iterator(); ++it) {
    if (it->is_regular_file() && !it->is_symlink()) {
      files.emplace_back(it->path().lexically_relative(tmp / "src").string(), read_file(it->path()));
    }
  }
  std::atomic<int> mismatches{0}, failures{0}, reads{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 16; ++t) {
    readers.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int round = 0; round < 8; ++round) {
        auto order = files;
        std::shuffle(order.begin(), order.end(), rng);
        for (const auto& [rel, expected] : order) {
          try {
            // Random-offset reads as well as whole files.
            std::ifstream in(tmp / "mnt" / rel, std::ios::binary);
            if (!expected.empty()) {
              size_t off = std::uniform_int_distribution<size_t>(0, expected.size() - 1)(rng);
              size_t len = std::min<size_t>(expected.size() - off, 70000);
              std::string part(len, '\0');
              in.seekg(static_cast<std::streamoff>(off));
              in.read(part.data(), static_cast<std::streamsize>(len));
              if (part != expected.substr(off, len)) ++mismatches;
            }
            if (read_file(tmp / "mnt" / rel) != expected) ++mismatches;
            ++reads;
          } catch (const std::exception&) {
            ++failures;
          }
        }
      }
    });
  }
  for (auto& r : readers) r.join();
  CHECK(reads.load() == 16 * 8 * static_cast<int>(files.size()));
  CHECK(mismatches.load() == 0);
  CHECK(failures.load() == 0);
}

TEST_CASE("a second nydusd on the same work_dir reads a fully cached image with zero backend reads",
          "[nydusd]") {
  TempDir tmp("nydusd-cache");
  make_source_tree(tmp / "src", 9);
  auto image = build_image(tmp.path(), tmp / "src", "lz4_block");
  auto config = write_config(tmp.path(), v1_config(image.blob_dir, (tmp / "cache").string()));
  auto read_all = [&](const fs::path& mnt) {
    check_no_diffs(compare_trees(tmp / "src", mnt, CompareOptions{false, true, false, true}));
  };
  {
    fs::create_directories(tmp / "first/mnt");
    auto first = NydusdProcess::start_and_wait(tmp / "first", mount_args(tmp / "first/mnt", config, image.boot));
    read_all(tmp / "first/mnt");
    CHECK(first->get_json("/api/v1/metrics/backend")["read_count"].get<uint64_t>() > 0);
    REQUIRE(first->process().kill(SIGTERM).ok());
    CHECK(first->wait_exit() == 0);
    CHECK_FALSE(is_mountpoint((tmp / "first/mnt").string()));  // SIGTERM unmounts
  }
  fs::create_directories(tmp / "second/mnt");
  auto second = NydusdProcess::start_and_wait(tmp / "second", mount_args(tmp / "second/mnt", config, image.boot));
  read_all(tmp / "second/mnt");
  auto backend = second->get_json("/api/v1/metrics/backend");
  CHECK(backend["read_count"] == 0);
  CHECK(backend["read_amount_total"] == 0);
}

TEST_CASE("a corrupted chunk gives EIO for that file only", "[nydusd]") {
  TempDir tmp("nydusd-corrupt");
  fs::create_directories(tmp / "src");
  std::mt19937 rng(3);
  std::string victim(200000, '\0'), healthy(150000, '\0');
  for (auto& c : victim) c = static_cast<char>(rng());
  for (auto& c : healthy) c = static_cast<char>(rng());
  std::ofstream(tmp / "src/victim", std::ios::binary).write(victim.data(), victim.size());
  std::ofstream(tmp / "src/healthy", std::ios::binary).write(healthy.data(), healthy.size());
  auto image = build_image(tmp.path(), tmp / "src", "none");

  // Uncompressed blob: the victim's bytes appear verbatim; flip one.
  fs::path blob;
  for (const auto& entry : fs::directory_iterator(image.blob_dir)) blob = entry.path();
  std::string blob_bytes = read_file(blob);
  size_t at = blob_bytes.find(victim.substr(0, 4096));
  REQUIRE(at != std::string::npos);
  blob_bytes[at + 100] = static_cast<char>(blob_bytes[at + 100] ^ 0xff);
  std::ofstream(blob, std::ios::binary | std::ios::trunc).write(blob_bytes.data(), blob_bytes.size());

  fs::create_directories(tmp / "mnt");
  auto config = write_config(tmp.path(), v1_config(image.blob_dir, (tmp / "cache").string(), true));
  auto daemon = NydusdProcess::start_and_wait(tmp.path(), mount_args(tmp / "mnt", config, image.boot));

  CHECK(read_file(tmp / "mnt/healthy") == healthy);
  int fd = ::open((tmp / "mnt/victim").c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  std::string buf(4096, '\0');
  errno = 0;
  ssize_t n = ::pread(fd, buf.data(), buf.size(), 0);
  int err = errno;
  ::close(fd);
  CHECK(n == -1);
  CHECK(err == EIO);
  CHECK(read_file(tmp / "mnt/healthy") == healthy);  // still fine afterwards
  CHECK_THAT(daemon->log(), Catch::Contains("victim") || Catch::Contains("nid"));
  auto metrics = daemon->get_json("/api/v1/metrics");
  CHECK(metrics["fop_errors"][4].get<uint64_t>() >= 1);  // Read
  // The failure is also in the ring of recent errors, dated.
  auto events = daemon->get_json("/api/v1/daemon/events");
  CHECK(events["total_errors"].get<uint64_t>() >= 1);
  REQUIRE(!events["errors"].empty());
  CHECK_THAT(events["errors"].back().get<std::string>(), Catch::Contains(" GMT - "));
  CHECK_THAT(events["errors"].dump(), Catch::Contains("victim") || Catch::Contains("nid"));
}

TEST_CASE("every endpoint over the socket: good and bad input", "[nydusd]") {
  TempDir tmp("nydusd-api");
  fs::create_directories(tmp / "mnt");
  auto config = write_config(tmp.path(), v1_config(sample_dir(), (tmp / "cache").string()));
  auto daemon = NydusdProcess::start_and_wait(tmp.path(), mount_args(tmp / "mnt", config, sample_boot()));

  struct stat st {};
  REQUIRE(::stat(daemon->apisock().c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  // A connection that stays idle for the whole test: the server must not close it.
  auto idle = connect_unix(daemon->apisock());
  REQUIRE(idle.ok());

  auto info = daemon->get_json("/api/v1/daemon");
  CHECK(info["state"] == "RUNNING");
  CHECK(info["backend_collection"].contains("/"));
  CHECK(daemon->get_json("/api/v2/daemon")["backend_collection"].is_null());

  auto error_of = [](const HttpResponse& r) { return json::parse(r.body); };
  auto r = daemon->call("GET", "/api/v1/unknown");
  CHECK(r.status == 404);
  CHECK(error_of(r).contains("message"));
  CHECK(daemon->call("POST", "/api/v1/daemon").status == 400);              // wrong method
  CHECK(daemon->call("PUT", "/api/v1/daemon", "{oops").status == 400);      // malformed JSON
  CHECK(daemon->call("PUT", "/api/v1/daemon/start").status == 400);         // wrong state
  CHECK(daemon->call("PUT", "/api/v1/daemon/fuse/sendfd").status == 400);  // no --supervisor configured
  CHECK(daemon->call("PUT", "/api/v1/daemon/fuse/takeover").status == 400); // only from INIT
  CHECK(daemon->call("PUT", "/api/v1/daemon", R"({"log_level":"info"})").status == 204);
  CHECK(daemon->call("POST", "/api/v1/mount?mountpoint=/", R"({"source":"x","fs_type":"rafs","config":"{}"})")
            .status == 409);
  CHECK(daemon->call("GET", "/api/v1/metrics?id=/").status == 200);
  CHECK(daemon->call("GET", "/api/v1/metrics/backend?id=/").status == 200);
  CHECK(daemon->call("GET", "/api/v1/metrics/blobcache?id=/").status == 200);
  CHECK(daemon->call("GET", "/api/v1/metrics/inflight").status == 204);
  CHECK(daemon->call("GET", "/api/v1/metrics?id=/missing").status == 404);
  std::string huge(2 * 1024 * 1024, 'x');
  CHECK(daemon->call("PUT", "/api/v1/daemon", huge).status == 413);         // oversized body
  CHECK(daemon->get_json("/api/v1/daemon")["state"] == "RUNNING");          // still serving
  CHECK(read_file(tmp / "mnt/lib.rs").size() == 16931);
  pollfd pfd{idle->get(), POLLIN | POLLRDHUP, 0};
  CHECK(::poll(&pfd, 1, 0) == 0);  // no hang-up, no data: still open and idle
}

TEST_CASE("shared daemon: mount, remount and umount images at sub-paths through the API",
          "[nydusd]") {
  TempDir tmp("nydusd-shared");
  make_source_tree(tmp / "src-a", 1);
  fs::create_directories(tmp / "src-b/only-in-b");
  std::ofstream(tmp / "src-b/only-in-b/file") << "b";
  auto image_a = build_image(tmp / "a", tmp / "src-a", "zstd");
  auto image_b = build_image(tmp / "b", tmp / "src-b", "none");
  fs::create_directories(tmp / "mnt");
  auto daemon = NydusdProcess::start_and_wait(tmp.path(), {"--mountpoint", (tmp / "mnt").string()});
  CHECK(daemon->get_json("/api/v1/daemon")["backend_collection"].empty());

  auto body = [&](const BuiltImage& image, const std::string& cache) {
    return json{{"source", image.boot},
                {"fs_type", "rafs"},
                {"config", v1_config(image.blob_dir, (tmp / cache).string())},
                {"prefetch_files", {"/"}}}
        .dump();
  };
  REQUIRE(daemon->call("POST", "/api/v1/mount?mountpoint=/a", body(image_a, "cache-a")).status == 204);
  REQUIRE(daemon->call("POST", "/api/v1/mount?mountpoint=/nested/b", body(image_b, "cache-b")).status == 204);
  CHECK(daemon->call("POST", "/api/v1/mount?mountpoint=/a", body(image_a, "cache-a")).status == 409);

  CompareOptions options;
  options.compare_nlink_dirs = false;
  check_no_diffs(compare_trees(tmp / "src-a", tmp / "mnt/a", options));
  CHECK(read_file(tmp / "mnt/nested/b/only-in-b/file") == "b");
  CHECK(daemon->get_json("/api/v1/metrics?id=/a")["data_read"].get<uint64_t>() > 0);
  CHECK(daemon->call("GET", "/api/v1/metrics").status == 404);  // two mounts: id needed

  // Remount /nested/b with image a: the kernel's cached view of b is dropped.
  REQUIRE(daemon->call("PUT", "/api/v1/mount?mountpoint=/nested/b", body(image_a, "cache-a2")).status == 204);
  CHECK_FALSE(fs::exists(tmp / "mnt/nested/b/only-in-b"));
  CHECK(read_file(tmp / "mnt/nested/b/tiny") == "x");

  // Umount: entries are invalidated, then the image is gone, and so is its
  // now empty pseudo directory (the reference removes it too), although the
  // kernel had it cached.
  REQUIRE(daemon->call("DELETE", "/api/v1/mount?mountpoint=/a").status == 204);
  CHECK_FALSE(fs::exists(tmp / "mnt/a/tiny"));
  CHECK_FALSE(fs::exists(tmp / "mnt/a"));
  CHECK(daemon->call("DELETE", "/api/v1/mount?mountpoint=/a").status == 404);
  CHECK(daemon->call("PUT", "/api/v1/mount?mountpoint=/a", body(image_a, "cache-a")).status == 404);
  auto collection = daemon->get_json("/api/v1/daemon")["backend_collection"];
  CHECK(collection.size() == 1);
  CHECK(collection.contains("/nested/b"));
  // The last mount under /nested takes /nested with it: the root is empty.
  CHECK(fs::is_directory(tmp / "mnt/nested/b"));
  REQUIRE(daemon->call("DELETE", "/api/v1/mount?mountpoint=/nested/b").status == 204);
  CHECK_FALSE(fs::exists(tmp / "mnt/nested/b"));
  CHECK_FALSE(fs::exists(tmp / "mnt/nested"));
  CHECK(fs::is_empty(tmp / "mnt"));
  // A path can be mounted again afterwards.
  REQUIRE(daemon->call("POST", "/api/v1/mount?mountpoint=/nested/b", body(image_b, "cache-b")).status == 204);
  CHECK(read_file(tmp / "mnt/nested/b/only-in-b/file") == "b");
}

TEST_CASE("PUT /api/v1/daemon/exit stops at a request boundary and leaves the mount", "[nydusd]") {
  TempDir tmp("nydusd-exit");
  fs::create_directories(tmp / "mnt");
  auto config = write_config(tmp.path(), v1_config(sample_dir(), (tmp / "cache").string()));
  auto daemon = NydusdProcess::start_and_wait(tmp.path(), mount_args(tmp / "mnt", config, sample_boot()));
  CHECK(read_file(tmp / "mnt/lib.rs").size() == 16931);
  auto r = daemon->call("PUT", "/api/v1/daemon/exit");
  CHECK(r.status == 204);
  CHECK(daemon->wait_exit() == 0);
  CHECK(is_mountpoint((tmp / "mnt").string()));  // never unmounted (TempDir detaches it)
  CHECK_THAT(daemon->log(), Catch::Contains("stopped at request boundaries"));
}

TEST_CASE("upgrade mode waits in INIT with the API up and nothing mounted", "[nydusd]") {
  TempDir tmp("nydusd-upgrade");
  fs::create_directories(tmp / "mnt");
  auto daemon = NydusdProcess::start_and_wait(tmp.path(), {"--mountpoint", (tmp / "mnt").string(), "--upgrade"},
                                              "INIT");
  CHECK_FALSE(is_mountpoint((tmp / "mnt").string()));
  CHECK(daemon->call("PUT", "/api/v1/daemon/start").status == 400);
  CHECK(daemon->call("PUT", "/api/v1/daemon/fuse/takeover").status == 400);  // no --supervisor to take over from
  CHECK(daemon->get_json("/api/v1/daemon")["state"] == "INIT");
  REQUIRE(daemon->process().kill(SIGTERM).ok());
  CHECK(daemon->wait_exit() == 0);
}

TEST_CASE("startup errors are clear messages and a non-zero exit, never a crash", "[nydusd]") {
  TempDir tmp("nydusd-startup");
  fs::create_directories(tmp / "mnt");
  struct Case {
    const char* name;
    std::string config;
    const char* message;
  };
  const Case cases[] = {
      {"malformed JSON", "{\"device\": ", "malformed config JSON"},
      {"unknown backend",
       R"({"device":{"backend":{"type":"carrier-pigeon","config":{"dir":"/"}}}})", "unknown backend type"},
      {"missing directory", v1_config((tmp / "no-such-dir").string(), (tmp / "cache").string()),
       "does not exist"},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    std::string path = (tmp / (std::string(c.name) + ".json")).string();
    std::ofstream(path) << c.config;
    std::string log = (tmp / (std::string(c.name) + ".log")).string();
    int status = run_tool({bin_path("nydusd"), "--mountpoint", (tmp / "mnt").string(), "--config", path,
                           "--bootstrap", sample_boot()},
                          log);
    CHECK(status > 0);
    CHECK_THAT(read_text(log), Catch::Contains(c.message));
    CHECK_FALSE(is_mountpoint((tmp / "mnt").string()));
  }
  std::string log = (tmp / "version.log").string();
  CHECK(run_tool({bin_path("nydusd"), "--version"}, log) == 0);
  CHECK_THAT(read_text(log), Catch::Contains("Version:") && Catch::Contains("Git Commit:"));
  CHECK(run_tool({bin_path("nydusd"), "--mountpoint", (tmp / "mnt").string(), "--bootstrap",
                  (tmp / "missing.boot").string(), "--localfs-dir", tmp.path().string()},
                 (tmp / "missing.log").string()) > 0);
  CHECK(run_tool({bin_path("nydusd"), "--no-such-flag"}, (tmp / "flag.log").string()) > 0);
}

TEST_CASE("singleton: a clear startup error without cachefiles -- the blob API in upgrade mode", "[nydusd][fscache]") {
  TempDir tmp("nydusd-singleton");
  if (!fs::exists("/dev/cachefiles")) {
    // This kernel has no cachefiles (serving is tested in the VM): startup
    // fails with a message naming the device, nothing left running.
    std::string log = (tmp / "bind.log").string();
    CHECK(run_tool({bin_path("nydusd"), "singleton", "--fscache", (tmp / "cache").string()}, log) > 0);
    CHECK_THAT(read_text(log), Catch::Contains("/dev/cachefiles"));
  }
  auto daemon = NydusdProcess::start_and_wait(
      tmp.path(), {"singleton", "--upgrade", "--fscache", (tmp / "cache").string()}, "INIT");
  auto info = daemon->get_json("/api/v1/daemon");
  CHECK(info["mode"] == "singleton");
  CHECK(info["fscache"]["bootstraps"] == 0);
  json entry = {{"type", "bootstrap"},
                {"id", "sample"},
                {"domain_id", "dom"},
                {"config_v2",
                 {{"version", 2},
                  {"id", "sample"},
                  {"backend", {{"type", "localfs"}, {"localfs", {{"dir", sample_dir()}}}}},
                  {"cache", {{"type", "fscache"}, {"fscache", {{"work_dir", (tmp / "work").string()}}}}},
                  {"metadata_path", sample_boot()}}}};
  CHECK(daemon->call("PUT", "/api/v2/blobs", entry.dump()).status == 204);
  CHECK(daemon->call("PUT", "/api/v2/blobs", entry.dump()).status == 409);
  CHECK(daemon->call("PUT", "/api/v2/blobs", "{\"type\":").status == 400);
  auto listed = daemon->get_json("/api/v2/blobs");
  REQUIRE(listed["blobs"].size() == 1);
  CHECK(listed["blobs"][0]["id"] == "sample");
  CHECK(daemon->call("POST", "/api/v1/mount?mountpoint=/a", "{}").status == 501);
  CHECK(daemon->call("PUT", "/api/v1/daemon/fuse/takeover").status == 400);  // no --supervisor
  CHECK(daemon->call("DELETE", "/api/v2/blobs?domain_id=dom").status == 204);
  CHECK(daemon->get_json("/api/v2/blobs")["blobs"].empty());
  REQUIRE(daemon->process().kill(SIGTERM).ok());
  CHECK(daemon->wait_exit() == 0);
}
