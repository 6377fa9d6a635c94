// End to end, fscache mode: images built here with nydus-image, served in
// the VM by the fscache daemon (fscache_driver daemon, i.e. the nydus_fscache
// library) to the kernel's EROFS-over-fscache, mounted with mount(2)
// "fsid=..[,domain_id=..]" and compared byte for byte and attribute by
// attribute with their source trees (fscache_driver session).
//
// One VM run covers: zstd with 1 MiB chunks mounted by fsid alone plus a
// remount that must be served entirely from the kernel's cache file (no
// READ); lz4_block with 64 KiB chunks and the persistent storage blob cache,
// mounted twice at once in one domain (shared data blob); uncompressed with
// 4 KiB chunks and no cache files at all; and an unknown fsid, whose mount
// must fail. A second session kills the daemon (SIGKILL) while READs are in
// flight and lets a successor take over the device fd the session held
// (`restore`), then does the same as a hot upgrade (SIGTERM: the daemon
// drains and exits 0 first): every reader must finish with the right bytes.
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
#include "tests/vm/vm_test_support.h"

using namespace nydus;
using namespace nydus::testing;
using namespace nydus::testing::vm;
namespace fs = std::filesystem;

namespace {

void write_file(const fs::path& p, const std::string& data, mode_t mode = 0644) {
  std::ofstream(p, std::ios::binary) << data;
  REQUIRE(::chmod(p.c_str(), mode) == 0);
}

std::string random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = char(rng() & 0xFF);
  return s;
}

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

// nydus-image create; the blob lands in blob_dir.
void build_image(const fs::path& src, const fs::path& boot, const fs::path& blob_dir, const std::string& compressor,
                 const std::string& chunk_size) {
  fs::create_directories(blob_dir);
  SpawnOptions so;
  so.argv = {std::string(NYDUS_BIN_DIR) + "/nydus-image", "create", "-t", "dir-rafs", "-B", boot.string(), "-D",
             blob_dir.string(), "-c", compressor, "-S", chunk_size, src.string()};
  so.stdout_redirect = Redirect::append_to(boot.string() + ".log");
  so.stderr_redirect = Redirect::append_to(boot.string() + ".log");
  auto p = Process::spawn(so);
  REQUIRE(p.ok());
  auto status = p->wait(std::chrono::seconds(120));
  REQUIRE(status.ok());
  std::ifstream log(boot.string() + ".log");
  std::string text((std::istreambuf_iterator<char>(log)), {});
  INFO(text);
  REQUIRE(*status == 0);
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

std::string shell_quote_all(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) s += (s.empty() ? "" : " ") + shell_quote(a);
  return s;
}

}  // namespace

TEST_CASE("vm fscache e2e: nydus-image images mounted over fscache match their sources", "[vm][fscache]") {
  require_vm_or_skip();
  const std::string driver = std::string(NYDUS_BIN_DIR) + "/fscache_driver";
  REQUIRE(fs::exists(driver));
  REQUIRE(fs::exists(std::string(NYDUS_BIN_DIR) + "/nydus-image"));

  TempDir dir("nydus-vm-fscache");
  const fs::path img = dir / "images";
  make_tree(img / "src-zstd", 1, 2 * 1024 * 1024 + 4096 + 7);
  make_tree(img / "src-lz4", 2, 700 * 1024 + 1);
  make_tree(img / "src-raw", 3, 128 * 1024 + 3);
  build_image(img / "src-zstd", img / "zstd.boot", img / "blobs", "zstd", "0x100000");
  build_image(img / "src-lz4", img / "lz4.boot", img / "blobs", "lz4_block", "0x10000");
  build_image(img / "src-raw", img / "raw.boot", img / "blobs", "none", "0x1000");

  nlohmann::json config = {{"blobs",
                            {entry("zstd1", "", img / "zstd.boot", img / "blobs", "fscache", "/run/cache/work"),
                             entry("lz4a", "dom1", img / "lz4.boot", img / "blobs", "filecache", "/run/cache/blobcache"),
                             entry("lz4b", "dom1", img / "lz4.boot", img / "blobs", "filecache", "/run/cache/blobcache"),
                             entry("raw1", "dom2", img / "raw.boot", img / "blobs", "dummycache", ""),
                             entry("fo1", "dom3", img / "zstd.boot", img / "blobs", "filecache", "/run/cache/blobcache"),
                             entry("up1", "dom4", img / "lz4.boot", img / "blobs", "fscache", "/run/cache/work")}}};
  const fs::path config_path = dir / "blobs.json";
  std::ofstream(config_path) << config.dump(2);

  VmOptions o;
  fs::create_directories(dir / "vm");
  o.work_dir = (dir / "vm").string();
  // Session 1: serving and caching. Session 2 (a fresh bind of another
  // cache dir): crash failover with READs in flight.
  const std::string session1 = shell_quote_all(
      {driver, "session", "--fscache", "/run/cache/fscache", "--fscache-tag", "e2e", "--fscache-threads", "4",
       "--config", config_path.string(),
       "--check", "fsid=zstd1,source=" + (img / "src-zstd").string() + ",mount=/run/m1,remount",
       "--check", "fsid=lz4a,domain=dom1,source=" + (img / "src-lz4").string() + ",mount=/run/m2,keep",
       "--check", "fsid=lz4b,domain=dom1,source=" + (img / "src-lz4").string() + ",mount=/run/m3,keep,readers=8",
       "--check", "fsid=raw1,domain=dom2,source=" + (img / "src-raw").string() + ",mount=/run/m4,readers=2",
       "--check", "fsid=nosuch,mount=/run/m5,fail"});
  const std::string session2 = shell_quote_all(
      {driver, "session", "--fscache", "/run/cache/fscache2", "--fscache-threads", "4", "--read-delay-ms", "300",
       "--config", config_path.string(),
       "--check", "fsid=fo1,domain=dom3,source=" + (img / "src-zstd").string() + ",mount=/run/m6,failover,readers=4",
       "--check", "fsid=up1,domain=dom4,source=" + (img / "src-lz4").string() + ",mount=/run/m7,upgrade,readers=4"});
  o.argv = {"/bin/sh", "-c", session1 + " && " + session2};
  o.timeout = std::chrono::seconds(240);
  VmResult r = run_or_fail(o);
  std::printf("%s", r.output.c_str());
  std::printf("fscache e2e: %.1fs in the VM\n", double(r.elapsed.count()) / 1000.0);
  INFO(r.output);
  CHECK(r.exit_code == 0);
}
