// End to end, fscache mode, with the real binaries: images built here with
// nydus-image, served in the VM by `nydusd singleton --fscache` to the
// kernel's EROFS over fscache, mounted with mount(2) "fsid=..[,domain_id=..]"
// and compared byte for byte and attribute by attribute with their source
// trees. tests/vm/fscache_vm_driver.cc drives nydusd inside the VM as a
// supervisor would (its header has the scenario format); this file builds
// the images and the scenario on the host and boots the VM once.
//
// Session "serve" (one daemon, one supervisor): a bootstrap preloaded with
// --config (zstd, 1 MiB chunks, fsid only) and a remount served entirely from
// the kernel's cache file (no READ); bootstraps bound with PUT /api/v2/blobs:
// lz4_block with 64 KiB chunks and the persistent storage blob cache mounted
// twice at once in one domain (shared data blob), uncompressed 4 KiB chunks
// without cache files; an unknown fsid and an unbound domain whose mounts
// must fail; the API's answers to hostile bodies and queries, GET listing,
// and a re-save to the supervisor after every bind and unbind.
//
// Session "switch" (a fresh cache, every data READ slowed by the test hook so
// that one is always in flight): kill -9 of nydusd under byte-verifying
// readers, a successor `nydusd singleton --upgrade` takes over the saved blob
// entries and the /dev/cachefiles fd from the supervisor and writes
// `restore`; then, under the same readers, a hot upgrade of that successor
// (takeover while it serves, exit, start). And the same in the other order on
// a second image. Zero reader errors.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <fstream>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include "common/process.h"
#include "tests/support/temp_dir.h"
#include "tests/vm/vm_test_support.h"

using namespace nydus;
using namespace nydus::testing;
using namespace nydus::testing::vm;
namespace fs = std::filesystem;

namespace {

void set_mtime(const fs::path& p, time_t sec, long nsec) {
  timespec ts[2] = {{sec, nsec}, {sec, nsec}};
  REQUIRE(::utimensat(AT_FDCWD, p.c_str(), ts, AT_SYMLINK_NOFOLLOW) == 0);
}

// A small tree with what the kernel must get right: sizes around the page
// and chunk boundaries, multi-chunk and deduplicated data, holes of zeros,
// symlinks, hard links, a fifo, a device, xattrs, modes, owners, mtimes.
void make_tree(const fs::path& root, uint32_t seed, size_t big_size) {
  fs::create_directories(root / "sub" / "dir" / "nested");
  fs::create_directories(root / "empty_dir");
  fs::create_directories(root / "sticky");
  write_file(root / "small.txt", "hello from fscache\n");
  write_file(root / "empty", "");
  write_file(root / "page_minus_1", random_bytes(4095, seed + 1));
  write_file(root / "page", random_bytes(4096, seed + 2));
  write_file(root / "page_plus_1", random_bytes(4097, seed + 3), 0600);
  const std::string mid = random_bytes(300 * 1024 + 17, seed + 4);
  write_file(root / "mid.bin", mid);
  write_file(root / "sub" / "dup_of_mid.bin", mid);  // deduplicated chunks
  write_file(root / "big.bin", random_bytes(big_size, seed + 5), 0755);
  write_file(root / "zeros.bin", std::string(1536 * 1024, '\0'));
  std::string mixed = random_bytes(200 * 1024, seed + 6) + std::string(200 * 1024, '\0') + random_bytes(3333, seed + 7);
  write_file(root / "sub" / "dir" / "mixed.bin", mixed, 04755);
  write_file(root / "sub" / "dir" / "nested" / "deep.txt", "deep\n", 0400);
  fs::create_symlink("small.txt", root / "link_rel");
  fs::create_symlink("/etc/hostname-does-not-matter", root / "link_abs");
  fs::create_symlink("sub/dir/nested/deep.txt", root / "sub" / "link_deep");
  fs::create_hard_link(root / "small.txt", root / "sub" / "hardlink.txt");
  REQUIRE(::mkfifo((root / "fifo").c_str(), 0640) == 0);
  REQUIRE(::setxattr((root / "small.txt").c_str(), "user.fscache", "value-1", 7, 0) == 0);
  REQUIRE(::setxattr((root / "sub").c_str(), "user.dir", "d", 1, 0) == 0);
  REQUIRE(::chmod((root / "sticky").c_str(), 01777) == 0);
  if (::geteuid() == 0) {
    REQUIRE(::mknod((root / "null_dev").c_str(), S_IFCHR | 0666, makedev(1, 3)) == 0);
    REQUIRE(::chown((root / "mid.bin").c_str(), 1000, 1001) == 0);
    REQUIRE(::lchown((root / "link_rel").c_str(), 1002, 1003) == 0);
  }
  // mtimes last, children before parents (creating an entry changes its
  // directory's mtime).
  std::vector<fs::path> all;
  for (auto& e : fs::recursive_directory_iterator(root)) all.push_back(e.path());
  std::sort(all.begin(), all.end(), [](const fs::path& a, const fs::path& b) {
    return std::distance(a.begin(), a.end()) > std::distance(b.begin(), b.end());
  });
  long n = 0;
  for (const auto& p : all) set_mtime(p, 1700000000 + n * 1000, 123456789 - n * 1001), ++n;
  set_mtime(root, 1690000000, 987654321);
}

nlohmann::json entry(const std::string& id, const std::string& domain, const fs::path& boot, const fs::path& blob_dir,
                     const std::string& cache_type, const std::string& work_dir) {
  nlohmann::json cache = {{"type", cache_type}};
  if (!work_dir.empty()) cache[cache_type] = {{"work_dir", work_dir}};
  return {{"type", "bootstrap"},
          {"id", id},
          {"domain_id", domain},
          {"config_v2",
           {{"version", 2},
            {"id", id},
            {"backend", {{"type", "localfs"}, {"localfs", {{"dir", blob_dir.string()}}}}},
            {"cache", cache},
            {"metadata_path", boot.string()}}}};
}

// A scenario step (fscache_vm_driver.cc) under construction.
struct Step {
  nlohmann::json j;
  Step with(const std::string& key, nlohmann::json value) && {
    j[key] = std::move(value);
    return std::move(*this);
  }
};

nlohmann::json steps(std::initializer_list<Step> list) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& s : list) out.push_back(s.j);
  return out;
}

}  // namespace

TEST_CASE("vm fscache e2e: real nydusd singleton serves through crash failover and hot upgrade", "[vm][fscache]") {
  require_vm_or_skip();
  const std::string driver = std::string(NYDUS_BIN_DIR) + "/fscache_vm_driver";
  const std::string nydusd = std::string(NYDUS_BIN_DIR) + "/nydusd";
  REQUIRE(fs::exists(driver));
  REQUIRE(fs::exists(nydusd));
  REQUIRE(fs::exists(std::string(NYDUS_BIN_DIR) + "/nydus-image"));

  TempDir dir("nydus-vm-fscache");
  const fs::path img = dir / "images";
  make_tree(img / "src-zstd", 1, 2 * 1024 * 1024 + 4096 + 7);
  make_tree(img / "src-lz4", 2, 700 * 1024 + 1);
  make_tree(img / "src-raw", 3, 128 * 1024 + 3);
  build_image(img / "src-zstd", img / "zstd.boot", img / "blobs", {"-c", "zstd", "-S", "0x100000"});
  build_image(img / "src-lz4", img / "lz4.boot", img / "blobs", {"-c", "lz4_block", "-S", "0x10000"});
  build_image(img / "src-raw", img / "raw.boot", img / "blobs", {"-c", "none", "-S", "0x1000"});
  // Not a RAFS v6 bootstrap: binding it must be refused.
  write_file(img / "garbage.boot", random_bytes(8192, 99));

  const auto blobs = img / "blobs";
  auto api = [](const std::string& method, const std::string& target, nlohmann::json body, int status) {
    Step step{{{"api", method}, {"target", target}, {"status", status}}};
    if (!body.is_null()) step.j["body"] = std::move(body);
    return step;
  };
  auto check = [](nlohmann::json c) { return Step{{{"check", std::move(c)}}}; };
  const auto lz4a = entry("lz4a", "dom1", img / "lz4.boot", blobs, "filecache", "/run/cache/blobcache");
  auto bad_id = lz4a;
  bad_id["id"] = "a/b";
  auto datablob = lz4a;
  datablob["type"] = "datablob";
  auto no_boot = lz4a;
  no_boot["config_v2"]["metadata_path"] = (img / "missing.boot").string();

  nlohmann::json serve = {
      {"name", "serve"},
      {"cache_dir", "/run/cache/fscache"},
      {"tag", "e2e"},
      {"threads", 4},
      {"config_blobs", {entry("zstd1", "", img / "zstd.boot", blobs, "fscache", "/run/cache/work")}},
      {"steps",
       steps({
           // Hostile input: clear 4xx answers, never a crash.
           api("PUT", "/api/v2/blobs", "{not json", 400),
           api("PUT", "/api/v2/blobs", nlohmann::json::object(), 400),
           api("PUT", "/api/v2/blobs", bad_id, 400),
           api("PUT", "/api/v2/blobs", datablob, 400),
           api("PUT", "/api/v2/blobs", no_boot, 404),
           api("PUT", "/api/v2/blobs", entry("junk", "dom9", img / "garbage.boot", blobs, "fscache", "/run/cache/work"), 400),
           api("DELETE", "/api/v2/blobs", nullptr, 400),
           api("DELETE", "/api/v2/blobs?blob_id=x", nullptr, 501),
           api("DELETE", "/api/v2/blobs?domain_id=nosuch", nullptr, 404),
           api("POST", "/api/v1/mount?mountpoint=/x", nlohmann::json{{"source", "x"}, {"fs_type", "rafs"}, {"config", "{}"}}, 501),
           // Binding: each bind and unbind is saved to the supervisor again.
           api("PUT", "/api/v2/blobs", lz4a, 204).with("saves", 1),
           api("PUT", "/api/v2/blobs", lz4a, 409),
           api("PUT", "/api/v2/blobs", entry("lz4b", "dom1", img / "lz4.boot", blobs, "filecache", "/run/cache/blobcache"), 204),
           api("PUT", "/api/v2/blobs", entry("raw1", "dom2", img / "raw.boot", blobs, "dummycache", ""), 204),
           api("GET", "/api/v2/blobs", nullptr, 200).with("blobs", 4),
           api("GET", "/api/v2/blobs?domain_id=dom1", nullptr, 200).with("blobs", 2),
           // Serving.
           check({{"fsid", "zstd1"}, {"source", (img / "src-zstd").string()}, {"mount", "/run/m1"}, {"remount", true}}),
           check({{"fsid", "lz4a"}, {"domain", "dom1"}, {"source", (img / "src-lz4").string()}, {"mount", "/run/m2"}, {"keep", true}}),
           check({{"fsid", "lz4b"}, {"domain", "dom1"}, {"source", (img / "src-lz4").string()}, {"mount", "/run/m3"}, {"keep", true}, {"readers", 8}}),
           check({{"fsid", "raw1"}, {"domain", "dom2"}, {"source", (img / "src-raw").string()}, {"mount", "/run/m4"}, {"readers", 2}}),
           check({{"fsid", "nosuch"}, {"mount", "/run/m5"}, {"fail", true}}),
           // Unbinding: new mounts of the domain fail.
           api("DELETE", "/api/v2/blobs?domain_id=dom2", nullptr, 204).with("saves", 1),
           check({{"fsid", "raw1"}, {"domain", "dom2"}, {"mount", "/run/m4"}, {"fail", true}}),
           api("GET", "/api/v2/blobs", nullptr, 200).with("blobs", 3),
           api("PUT", "/api/v1/daemon/fuse/sendfd", nullptr, 204).with("saves", 1),
       })}};
  nlohmann::json switching = {
      {"name", "switch"},
      {"cache_dir", "/run/cache/fscache2"},
      {"threads", 4},
      {"read_delay_ms", 300},
      {"steps",
       steps({
           api("PUT", "/api/v2/blobs", entry("fo1", "dom3", img / "zstd.boot", blobs, "filecache", "/run/cache/blobcache2"), 204),
           api("PUT", "/api/v2/blobs", entry("up1", "dom4", img / "zstd.boot", blobs, "fscache", "/run/cache/work2"), 204),
           // Both orders, each under one set of readers.
           check({{"fsid", "fo1"}, {"domain", "dom3"}, {"source", (img / "src-zstd").string()}, {"mount", "/run/m6"},
                  {"switches", {"failover", "upgrade"}}}),
           check({{"fsid", "up1"}, {"domain", "dom4"}, {"source", (img / "src-zstd").string()}, {"mount", "/run/m7"},
                  {"switches", {"upgrade", "failover"}}}),
           // The successors serve the saved entries.
           api("GET", "/api/v2/blobs", nullptr, 200).with("blobs", 2),
       })}};
  nlohmann::json scenario = {{"nydusd", nydusd}, {"log_dir", std::string(kGuestOutDir)}, {"sessions", {serve, switching}}};
  const fs::path scenario_path = dir / "scenario.json";
  std::ofstream(scenario_path) << scenario.dump(2);

  VmOptions o;
  fs::create_directories(dir / "vm");
  o.work_dir = (dir / "vm").string();
  o.argv = {driver, scenario_path.string()};
  o.timeout = std::chrono::seconds(240);
  VmResult r = run_or_fail(o);
  std::printf("%s", r.output.c_str());
  std::printf("fscache e2e: %.1fs in the VM\n", double(r.elapsed.count()) / 1000.0);
  INFO(r.output);
  CHECK(r.exit_code == 0);
}
