// The kernel as the oracle: trees built with nydus-image, exported flat and
// mounted by the in-tree EROFS driver with mount(2), must equal their source
// in every byte and attribute. One varied tree (make_varied_tree) is shared
// by all configurations of a test case.
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include <cstring>
#include <fstream>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "nydusd/rafs/digest.h"
#include "tests/integration/builder/oracle_support.h"
#include "tests/support/temp_dir.h"

using namespace nydus::builder::testing;
using nydus::testing::TempDir;

namespace {

struct Built {
  fs::path bootstrap;
  fs::path blob_dir;
  fs::path raw;
};

// create + export --block for one configuration; REQUIREs success.
Built build_and_export(const fs::path& work, const fs::path& source, const std::string& tag,
                       const std::string& compressor, const std::string& chunk_size, const std::string& digester) {
  Built b{work / (tag + ".boot"), work / (tag + "-blobs"), work / (tag + ".img")};
  fs::create_directories(b.blob_dir);
  std::string out;
  int rc = run({nydus_image(), "create", "-t", "dir-rafs", "-B", b.bootstrap, "-D", b.blob_dir, "-c", compressor,
                "-S", chunk_size, "--digester", digester, "--fs-version", "6", source},
               &out);
  INFO(out);
  REQUIRE(rc == 0);
  rc = run({nydus_image(), "export", "--block", "-B", b.bootstrap, "-D", b.blob_dir, "-O", b.raw}, &out);
  INFO(out);
  REQUIRE(rc == 0);
  return b;
}

void require_same(const fs::path& expected, const fs::path& actual) {
  auto diffs = compare_trees(expected, actual);
  for (const auto& d : diffs) UNSCOPED_INFO(d);
  REQUIRE(diffs.empty());
}

// The uncompressed blob cache (the kernel's extra device) carved out of a
// flat export: blocks [mapped_blkaddr, mapped_blkaddr + blocks).
void carve_blob_cache(const fs::path& raw, uint64_t mapped_blkaddr, uint64_t blocks, const fs::path& out) {
  std::ifstream in(raw, std::ios::binary);
  in.seekg(std::streamoff(mapped_blkaddr * 4096));
  std::ofstream o(out, std::ios::binary);
  std::vector<char> buf(1 << 20);
  uint64_t left = blocks * 4096;
  while (left > 0) {
    size_t n = size_t(std::min<uint64_t>(left, buf.size()));
    in.read(buf.data(), std::streamsize(n));
    REQUIRE(in.gcount() == std::streamsize(n));
    o.write(buf.data(), std::streamsize(n));
    left -= n;
  }
}

}  // namespace

TEST_CASE("builder: kernel oracle: every compressor and chunk size mounts equal to the source", "[builder][kernel]") {
  TempDir work("builder-oracle");
  const fs::path src = work / "src";
  make_varied_tree(src);
  fs::create_directories(work / "mnt");
  struct Config {
    const char* compressor;
    const char* chunk_size;
    const char* digester;
  };
  for (const Config& c : {Config{"none", "0x100000", "blake3"}, Config{"none", "0x10000", "sha256"},
                          Config{"lz4_block", "0x100000", "sha256"}, Config{"lz4_block", "65536", "blake3"},
                          Config{"zstd", "0x100000", "blake3"}, Config{"zstd", "0x10000", "sha256"}}) {
    std::string tag = std::string(c.compressor) + "-" + c.chunk_size;
    INFO("configuration " << tag << " " << c.digester);
    Built b = build_and_export(work.path(), src, tag, c.compressor, c.chunk_size, c.digester);
    {
      ErofsMount m(b.raw, work / "mnt");
      INFO(m.error());
      REQUIRE(m.ok());
      require_same(src, work / "mnt");
    }
    // Free the space before the next configuration.
    fs::remove_all(b.blob_dir);
    fs::remove(b.raw);
  }
}

TEST_CASE("builder: kernel oracle: fsck.erofs and device= mounts and check -J agree with the source", "[builder][kernel]") {
  TempDir work("builder-oracle");
  const fs::path src = work / "src";
  make_varied_tree(src);
  fs::create_directories(work / "mnt");
  Built b = build_and_export(work.path(), src, "zstd", "zstd", "0x100000", "blake3");

  // Slot 0 of the bootstrap: blocks and mapped_blkaddr (§5).
  std::string boot = read_all(b.bootstrap);
  uint32_t blocks = 0, mapped = 0;
  std::memcpy(&blocks, boot.data() + 0x580 + 64, 4);
  std::memcpy(&mapped, boot.data() + 0x580 + 68, 4);
  REQUIRE(blocks > 0);
  REQUIRE(uint64_t(mapped) * 4096 >= boot.size());
  const fs::path cache = work / "blob.cache";
  carve_blob_cache(b.raw, mapped, blocks, cache);

  {  // fsck.erofs accepts the export and the bootstrap (sections would rebuild the tree)
    std::string out;
    int rc = run({"fsck.erofs", "--device=" + cache.string(), b.raw.string()}, &out);
    INFO(out);
    CHECK(rc == 0);
    rc = run({"fsck.erofs", "--device=" + cache.string(), b.bootstrap.string()}, &out);
    INFO(out);
    CHECK(rc == 0);
  }

  {  // the bootstrap mounts with device=<uncompressed blob cache>
    ErofsMount m(b.bootstrap, work / "mnt", "device=" + cache.string());
    INFO(m.error());
    REQUIRE(m.ok());
    require_same(src, work / "mnt");
  }

  {  // check -J describes every path of the source
    const fs::path json_path = work / "check.json";
    std::string out;
    int rc = run({nydus_image(), "check", "-B", b.bootstrap, "-D", b.blob_dir, "-J", json_path}, &out);
    INFO(out);
    REQUIRE(rc == 0);
    auto j = nlohmann::json::parse(read_all(json_path));
    std::map<std::string, nlohmann::json> by_path;
    for (auto& f : j["files"]) {
      // Names that are not UTF-8 are exact only in "path_hex".
      std::string key = f.contains("path_hex") ? f["path_hex"].get<std::string>() : hex(f["path"].get<std::string>());
      by_path[key] = f;
    }

    size_t seen = 0;
    std::vector<fs::path> all{src};
    for (auto it = fs::recursive_directory_iterator(src); it != fs::recursive_directory_iterator(); ++it)
      all.push_back(it->path());
    for (const auto& p : all) {
      std::string rel = "/" + p.lexically_relative(src).string();
      if (p == src) rel = "/";
      INFO(rel);
      auto it = by_path.find(hex(rel));
      REQUIRE(it != by_path.end());
      const auto& f = it->second;
      ++seen;
      struct stat st;
      REQUIRE(::lstat(p.c_str(), &st) == 0);
      CHECK(f["mode"].get<uint32_t>() == (st.st_mode & 07777));
      CHECK(f["uid"].get<uint32_t>() == st.st_uid);
      CHECK(f["gid"].get<uint32_t>() == st.st_gid);
      CHECK(f["nlink"].get<uint64_t>() == st.st_nlink);
      CHECK(f["mtime"].get<uint64_t>() == uint64_t(st.st_mtim.tv_sec));
      CHECK(f["mtime_nsec"].get<uint64_t>() == uint64_t(st.st_mtim.tv_nsec));
      if (!S_ISDIR(st.st_mode)) CHECK(f["size"].get<uint64_t>() == uint64_t(st.st_size));
      if (S_ISLNK(st.st_mode)) {
        CHECK(f["type"] == "symlink");
        CHECK(f["target"].get<std::string>() == fs::read_symlink(p).string());
      }
      if (S_ISCHR(st.st_mode)) {
        CHECK(f["type"] == "chardev");
        CHECK(f["rdev_major"].get<uint32_t>() == major(st.st_rdev));
        CHECK(f["rdev_minor"].get<uint32_t>() == minor(st.st_rdev));
      }
      if (S_ISREG(st.st_mode)) {
        CHECK(f["type"] == "file");
        std::string data = read_all(p);
        auto digest = nydus::rafs::sha256(std::span(reinterpret_cast<const uint8_t*>(data.data()), data.size()));
        CHECK(f["digest"].get<std::string>() == nydus::rafs::to_hex(digest));
      }
      // xattrs: same names, hex values.
      std::map<std::string, std::string> want;
      ssize_t len = ::llistxattr(p.c_str(), nullptr, 0);
      std::string names(len > 0 ? size_t(len) : 0, '\0');
      if (len > 0) len = ::llistxattr(p.c_str(), names.data(), names.size());
      for (size_t pos = 0; len > 0 && pos < size_t(len);) {
        std::string name = names.c_str() + pos;
        pos += name.size() + 1;
        std::string value(65536, '\0');
        ssize_t vl = ::lgetxattr(p.c_str(), name.c_str(), value.data(), value.size());
        want[name] = hex(value.substr(0, size_t(std::max<ssize_t>(vl, 0))));
      }
      CHECK(f["xattrs"].get<std::map<std::string, std::string>>() == want);
    }
    CHECK(seen == by_path.size());
  }
}
