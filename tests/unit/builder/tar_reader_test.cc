// OCI layer tars (written here with libarchive) into trees: whiteout
// conversion per --whiteout-spec, PAX xattrs, hard links, implicit parents.
#include "tools/nydus-image/tar_reader.h"

#include <sys/sysmacros.h>

#include <cstring>

#include <catch2/catch.hpp>

#include "tests/support/temp_dir.h"
#include "tests/unit/builder/test_tar.h"

using namespace nydus::builder;
using nydus::testing::TempDir;
using nydus::builder::testing::TarEntry;
using nydus::builder::testing::write_tar;

namespace {

// Records every file's bytes and hands out sequential chunk numbers.
class RecordingSink : public ContentSink {
 public:
  nydus::Result<std::vector<uint32_t>> add_file(uint64_t size, const ReadFn& read) override {
    std::string data(size, '\0');
    size_t got = 0;
    while (got < size) {
      auto n = read(reinterpret_cast<uint8_t*>(data.data()) + got, size - got);
      if (!n.ok()) return std::move(n).error();
      if (*n == 0) break;
      got += *n;
    }
    files.push_back(data.substr(0, got));
    return std::vector<uint32_t>{uint32_t(files.size() - 1)};
  }
  std::vector<std::string> files;
};

std::vector<TarEntry> sample_layer() {
  return {
      {"./", S_IFDIR | 0750},
      {"dir/", S_IFDIR | 0755},
      {"dir/.wh..wh..opq", S_IFREG | 0644},
      {"dir/keep", S_IFREG | 0600, "kept", "", false,
       {{"user.a", "1"}, {"trusted.t", std::string("\0\x01\x02", 3)}, {"system.unknown", "x"}}},
      {".wh.gone", S_IFREG | 0644},
      {".wh.both", S_IFREG | 0644},
      {"both", S_IFREG | 0644, "both"},
      {"hl", S_IFREG | 0644, "hard data"},
      {"hl2", S_IFREG | 0644, "", "hl", true},
      {"lnk", S_IFLNK | 0777, "", "dir/keep"},
      {"dev", S_IFCHR | 0600, "", "", false, {}, makedev(259, 70000)},
      {"\xc3\xa9t\xc3\xa9.txt", S_IFREG | 0644, "utf8"},
      {"implicit/child", S_IFREG | 0644, "c"},
  };
}

const Inode& at(const InodePtr& root, std::initializer_list<std::string> path) {
  const Inode* n = root.get();
  for (const auto& p : path) {
    auto it = n->children.find(p);
    if (it == n->children.end()) FAIL("missing " << p);
    n = it->second.get();
  }
  return *n;
}

}  // namespace

TEST_CASE("builder: tar layers: OCI whiteouts become overlayfs whiteouts", "[builder][tar]") {
  TempDir dir("builder-tar");
  for (bool gzip : {false, true}) {
    INFO("gzip " << gzip);
    std::string path = (dir.path() / (gzip ? "layer.tar.gz" : "layer.tar")).string();
    write_tar(path, sample_layer(), gzip);
    RecordingSink sink;
    auto root = read_tar_layer(path, WhiteoutSpec::kOci, sink);
    REQUIRE(root.ok());
    const InodePtr& r = *root;
    CHECK(r->mode == (S_IFDIR | 0750));
    CHECK(r->uid == 1000);
    CHECK(r->gid == 70000);
    CHECK(r->mtime == 1700000000);
    CHECK(r->mtime_nsec == 123456789);

    const Inode& gone = at(r, {"gone"});
    CHECK(gone.is_whiteout());
    CHECK(r->children.count(".wh.gone") == 0);
    CHECK(at(r, {"both"}).is_reg());  // a real entry beats a whiteout of the same layer
    CHECK(r->children.count(".wh.both") == 0);

    const Inode& d = at(r, {"dir"});
    CHECK(d.xattrs.at("trusted.overlay.opaque") == "y");
    CHECK(d.children.count(".wh..wh..opq") == 0);
    const Inode& keep = at(r, {"dir", "keep"});
    CHECK(keep.xattrs.size() == 2);  // system.unknown is not storable
    CHECK(keep.xattrs.at("user.a") == "1");
    CHECK(keep.xattrs.at("trusted.t") == std::string("\0\x01\x02", 3));
    CHECK(keep.size == 4);

    CHECK(r->children.at("hl") == r->children.at("hl2"));  // one inode
    CHECK(at(r, {"lnk"}).symlink == "dir/keep");
    const Inode& dev = at(r, {"dev"});
    CHECK(dev.rdev_major == 259);
    CHECK(dev.rdev_minor == 70000);
    CHECK(at(r, {"\xc3\xa9t\xc3\xa9.txt"}).size == 4);
    CHECK(at(r, {"implicit"}).mode == (S_IFDIR | 0755));
    CHECK(at(r, {"implicit", "child"}).size == 1);
    CHECK(sink.files == std::vector<std::string>{"kept", "both", "hard data", "utf8", "c"});
  }
}

TEST_CASE("builder: tar layers: whiteout spec none and overlayfs keep markers as files", "[builder][tar]") {
  TempDir dir("builder-tar");
  std::string path = (dir.path() / "layer.tar").string();
  write_tar(path, sample_layer(), false);
  for (auto spec : {WhiteoutSpec::kNone, WhiteoutSpec::kOverlayfs}) {
    RecordingSink sink;
    auto root = read_tar_layer(path, spec, sink);
    REQUIRE(root.ok());
    CHECK(at(*root, {".wh.gone"}).is_reg());
    CHECK(at(*root, {"dir", ".wh..wh..opq"}).is_reg());
    CHECK(at(*root, {"dir"}).xattrs.count("trusted.overlay.opaque") == 0);
    CHECK((*root)->children.count("gone") == 0);
  }
}

TEST_CASE("builder: tar layers: hostile paths are refused", "[builder][tar]") {
  TempDir dir("builder-tar");
  std::string path = (dir.path() / "bad.tar").string();
  write_tar(path, {{"a/../../etc/passwd", S_IFREG | 0644, "x"}}, false);
  RecordingSink sink;
  CHECK_FALSE(read_tar_layer(path, WhiteoutSpec::kOci, sink).ok());
  write_tar(path, {{"f", S_IFREG | 0644, "x"}, {"f/g", S_IFREG | 0644, "y"}}, false);
  CHECK_FALSE(read_tar_layer(path, WhiteoutSpec::kOci, sink).ok());
  CHECK_FALSE(read_tar_layer((dir.path() / "missing.tar").string(), WhiteoutSpec::kOci, sink).ok());
}
