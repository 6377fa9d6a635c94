// Multi-layer merge against the kernel: three OCI layer tars with
// overrides, whiteouts and opaque directories are built, merged, exported
// and mounted; the mount must equal the overlay result, which the test
// materializes on disk by applying the same layers with plain file
// operations (an independent model of OCI layer semantics).
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <map>

#include <catch2/catch.hpp>

#include "tests/integration/builder/oracle_support.h"
#include "tests/support/temp_dir.h"
#include "tests/unit/builder/test_tar.h"

using namespace nydus::builder::testing;
using nydus::testing::TempDir;

namespace {

using Layer = std::vector<TarEntry>;

TarEntry dir(const std::string& path, mode_t perm, int layer) {
  TarEntry e{path, S_IFDIR | perm};
  e.mtime = 1600000000 + layer;
  e.mtime_nsec = 1000 * layer + 7;
  e.uid = 100 * layer;
  return e;
}

TarEntry file(const std::string& path, const std::string& data, int layer, mode_t perm = 0644) {
  TarEntry e{path, S_IFREG | perm, data};
  e.mtime = 1600000000 + layer;
  e.mtime_nsec = 1000 * layer + 11;
  e.uid = 100 * layer + 1;
  return e;
}

TarEntry marker(const std::string& path, int layer) { return file(path, "", layer); }

TarEntry symlink(const std::string& path, const std::string& target, int layer) {
  TarEntry e{path, S_IFLNK | 0777, "", target};
  e.mtime = 1600000000 + layer;
  return e;
}

TarEntry hardlink(const std::string& path, const std::string& target, int layer) {
  TarEntry e{path, S_IFREG | 0644, "", target, true};
  e.mtime = 1600000000 + layer;
  return e;
}

std::string blob(size_t n, char seed) {
  std::string s(n, '\0');
  uint32_t x = uint32_t(seed) * 2654435761u;
  for (auto& c : s) c = char((x = x * 1103515245u + 12345u) >> 24);
  return s;
}

std::vector<Layer> layers() {
  Layer l1 = {dir("./", 0755, 1),
              dir("etc/", 0755, 1),
              file("etc/passwd", "root:x:0:0", 1),
              file("etc/hosts", "127.0.0.1 localhost", 1),
              dir("bin/", 0755, 1),
              file("bin/sh", blob(300000, 's'), 1, 0755),
              file("bin/ls", blob(70000, 'l'), 1, 0755),
              dir("usr/", 0755, 1),
              dir("usr/lib/", 0755, 1),
              file("usr/lib/a", "a", 1),
              file("usr/lib/b", "b", 1),
              dir("usr/lib/sub/", 0755, 1),
              file("usr/lib/sub/c", "c", 1),
              dir("opt/", 0755, 1),
              dir("opt/dir/", 0755, 1),
              file("opt/dir/x", "x", 1),
              file("opt/dir/y", "y", 1),
              dir("var/", 0755, 1),
              dir("var/log/", 0755, 1),
              file("var/log/syslog", blob(5000, 'v'), 1),
              file("hl1", "shared content", 1),
              hardlink("hl2", "hl1", 1),
              hardlink("hl3", "hl1", 1),
              symlink("lnk", "/bin/sh", 1),
              file("keep", "keep", 1),
              TarEntry{"dev", S_IFCHR | 0600, "", "", false, {}, makedev(1, 3)}};
  l1.back().mtime = 1600000001;
  l1[24].xattrs = {{"user.k", "v"}};

  Layer l2 = {dir("./", 0700, 2),
              dir("etc/", 0755, 2),
              file("etc/passwd", "root:x:0:0\nuser:x:1000:1000", 2),
              dir("bin/", 0755, 2),
              marker("bin/.wh.ls", 2),
              dir("usr/", 0755, 2),
              dir("usr/lib/", 0750, 2),
              marker("usr/lib/.wh..wh..opq", 2),
              file("usr/lib/c", "new c", 2),
              dir("opt/", 0755, 2),
              marker("opt/.wh.dir", 2),
              dir("var/", 0755, 2),
              dir("var/log/", 0700, 2),
              dir("new/", 0755, 2),
              file("new/file", "file", 2),
              dir("new/sub/", 0755, 2),
              file("new/sub/deep", "deep", 2),
              file("hl2", "replaced", 2)};
  l2[12].xattrs = {{"user.v", "1"}};

  Layer l3 = {dir("./", 0755, 3),
              dir("opt/", 0755, 3),
              dir("opt/dir/", 0711, 3),
              file("opt/dir/z", "z", 3),
              dir("etc/", 0755, 3),
              marker("etc/.wh.hosts", 3),
              dir("new/", 0755, 3),
              marker("new/.wh..wh..opq", 3),
              file("new/only", "only", 3),
              dir("usr/", 0755, 3),
              dir("usr/lib/", 0750, 3),
              file("usr/lib/d", blob(200000, 'd'), 3),
              dir("bin/", 0755, 3),
              file("bin/ls", "ls again", 3, 0755),
              marker(".wh.keep", 3),
              marker(".wh.dev", 3),
              marker(".wh.nonexistent", 3),
              symlink("lnk", "/bin/ls", 3)};
  return {l1, l2, l3};
}

void sys(bool ok, const std::string& what) {
  if (!ok) FAIL(what << ": " << std::strerror(errno));
}

void clear_xattrs(const fs::path& p) {
  char names[4096];
  ssize_t len = ::llistxattr(p.c_str(), names, sizeof(names));
  for (ssize_t pos = 0; pos < len;) {
    std::string n = names + pos;
    pos += ssize_t(n.size()) + 1;
    ::lremovexattr(p.c_str(), n.c_str());
  }
}

// Applies one layer to a real directory the way an OCI runtime unpacks it:
// first the layer's whiteouts against what is below, then its entries.
void apply_layer(const fs::path& root, const Layer& layer, std::map<std::string, TarEntry>& attrs) {
  auto rel_of = [](std::string p) {
    while (p.size() > 1 && p.back() == '/') p.pop_back();
    if (p == "./" || p == ".") return std::string();
    return p;
  };
  auto forget = [&](const std::string& rel) {
    for (auto it = attrs.begin(); it != attrs.end();)
      it = (it->first == rel || it->first.rfind(rel + "/", 0) == 0) ? attrs.erase(it) : std::next(it);
  };
  for (const auto& e : layer) {
    fs::path p(rel_of(e.path));
    std::string base = p.filename().string(), parent = p.parent_path().string();
    if (base == ".wh..wh..opq") {
      for (const auto& child : fs::directory_iterator(root / parent)) {
        forget((fs::path(parent) / child.path().filename()).string());
        fs::remove_all(child.path());
      }
    } else if (base.rfind(".wh.", 0) == 0) {
      std::string victim = (fs::path(parent) / base.substr(4)).string();
      forget(victim);
      fs::remove_all(root / victim);
    }
  }
  for (const auto& e : layer) {
    std::string rel = rel_of(e.path);
    if (fs::path(rel).filename().string().rfind(".wh.", 0) == 0) continue;
    fs::path p = root / rel;
    struct stat st;
    bool exists = ::lstat(p.c_str(), &st) == 0;
    if (S_ISDIR(e.mode)) {
      if (exists && !S_ISDIR(st.st_mode)) fs::remove_all(p);
      if (!exists || !S_ISDIR(st.st_mode)) fs::create_directories(p);
      clear_xattrs(p);
    } else {
      if (exists) {
        forget(rel);
        fs::remove_all(p);
      }
      if (e.hardlink) {
        sys(::link((root / e.link).c_str(), p.c_str()) == 0, "link " + rel);
        attrs[rel] = attrs.at(e.link);
        continue;
      } else if (S_ISLNK(e.mode)) {
        sys(::symlink(e.link.c_str(), p.c_str()) == 0, "symlink " + rel);
      } else if (S_ISREG(e.mode)) {
        int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
        sys(fd >= 0 && ::write(fd, e.data.data(), e.data.size()) == ssize_t(e.data.size()), "write " + rel);
        ::close(fd);
      } else {
        sys(::mknod(p.c_str(), e.mode, e.rdev) == 0, "mknod " + rel);
      }
    }
    sys(::lchown(p.c_str(), e.uid, e.gid) == 0, "lchown " + rel);
    if (!S_ISLNK(e.mode)) sys(::chmod(p.c_str(), e.mode & 07777) == 0, "chmod " + rel);
    for (const auto& [k, v] : e.xattrs) sys(::lsetxattr(p.c_str(), k.c_str(), v.data(), v.size(), 0) == 0, "xattr");
    attrs[rel] = e;
  }
}

// mtimes last, children before parents, so directory times stick.
void apply_mtimes(const fs::path& root, const std::map<std::string, TarEntry>& attrs) {
  for (auto it = attrs.rbegin(); it != attrs.rend(); ++it) {
    struct timespec ts[2] = {{0, UTIME_OMIT}, {time_t(it->second.mtime), it->second.mtime_nsec}};
    sys(::utimensat(AT_FDCWD, (root / it->first).c_str(), ts, AT_SYMLINK_NOFOLLOW) == 0, "utimensat " + it->first);
  }
}

}  // namespace

TEST_CASE("builder: merge oracle: three tar layers stack like overlayfs", "[builder][kernel][merge]") {
  TempDir work("builder-merge");
  const fs::path blobs = work / "blobs", expected = work / "expected", mnt = work / "mnt";
  fs::create_directories(blobs);
  fs::create_directories(expected);
  fs::create_directories(mnt);

  auto all = layers();
  std::map<std::string, TarEntry> attrs;
  std::vector<std::string> boots;
  for (size_t i = 0; i < all.size(); ++i) {
    INFO("layer " << i);
    bool gzip = i != 1;
    std::string tar = (work / ("layer" + std::to_string(i) + (gzip ? ".tar.gz" : ".tar"))).string();
    write_tar(tar, all[i], gzip);
    std::string boot = (work / ("layer" + std::to_string(i) + ".boot")).string();
    std::string out;
    int rc = run({nydus_image(), "create", "-t", "tar-rafs", "-B", boot, "-D", blobs, "-c", "zstd", "-S", "0x10000", tar},
                 &out);
    INFO(out);
    REQUIRE(rc == 0);
    boots.push_back(boot);
    apply_layer(expected, all[i], attrs);
  }
  apply_mtimes(expected, attrs);

  std::string out;
  const fs::path merged = work / "merged.boot", raw = work / "merged.img";
  std::vector<std::string> argv{nydus_image(), "merge", "-B", merged, "-D", blobs};
  argv.insert(argv.end(), boots.begin(), boots.end());
  int rc = run(argv, &out);
  INFO(out);
  REQUIRE(rc == 0);
  rc = run({nydus_image(), "check", "-B", merged, "-D", blobs}, &out);
  INFO(out);
  REQUIRE(rc == 0);
  rc = run({nydus_image(), "inspect", "-B", merged}, &out);
  REQUIRE(rc == 0);
  CHECK(out.find("extra_devices      3") != std::string::npos);  // every layer's blob stays referenced
  rc = run({nydus_image(), "export", "--block", "-B", merged, "-D", blobs, "-O", raw}, &out);
  INFO(out);
  REQUIRE(rc == 0);

  ErofsMount m(raw, mnt);
  INFO(m.error());
  REQUIRE(m.ok());
  auto diffs = compare_trees(expected, mnt);
  for (const auto& d : diffs) UNSCOPED_INFO(d);
  CHECK(diffs.empty());
  // Spot checks of the semantics the comparison covers.
  CHECK_FALSE(fs::exists(mnt / "usr/lib/a"));
  CHECK(fs::exists(mnt / "usr/lib/sub") == false);
  CHECK(read_all(mnt / "usr/lib/c") == "new c");
  CHECK(fs::exists(mnt / "opt/dir/z"));
  CHECK_FALSE(fs::exists(mnt / "opt/dir/x"));
  CHECK_FALSE(fs::exists(mnt / "new/file"));
  CHECK(fs::read_symlink(mnt / "lnk") == "/bin/ls");
  CHECK(fs::hard_link_count(mnt / "hl1") == 2);
  CHECK_FALSE(fs::exists(mnt / "keep"));
}

TEST_CASE("builder: reference image: export and merge of a bootstrap built by the Rust nydus-image", "[builder][kernel][merge]") {
  const fs::path fixture = fs::path(NYDUS_TESTDATA_DIR) / "rafs-v6-2.2";
  const std::string blob_id = "be7d77eeb719f70884758d1aa800ed0fb09d701aaec469964e9d54325f0d5fef";
  TempDir work("builder-fixture");
  const fs::path blobs = work / "blobs", mnt = work / "mnt", upper = work / "upper";
  fs::create_directories(blobs);
  fs::create_directories(mnt);
  fs::create_directories(upper);
  fs::copy_file(fixture / blob_id, blobs / blob_id);
  { std::ofstream(upper / "added") << "added by an upper layer"; }

  std::string out;
  const fs::path up = work / "upper.boot", merged = work / "merged.boot", raw = work / "merged.img";
  REQUIRE(run({nydus_image(), "create", "-B", up, "-D", blobs, "-S", "0x100000", upper}, &out) == 0);
  REQUIRE(run({nydus_image(), "merge", "-B", merged, "-D", blobs, fixture / "rafs-v6-2.2.boot", up}, &out) == 0);
  INFO(out);
  REQUIRE(run({nydus_image(), "check", "-B", merged, "-D", blobs}, &out) == 0);
  REQUIRE(run({nydus_image(), "export", "--block", "-B", merged, "-D", blobs, "-O", raw}, &out) == 0);
  ErofsMount m(raw, mnt);
  INFO(m.error());
  REQUIRE(m.ok());
  CHECK(read_all(mnt / "lib.rs").rfind("// Copyright (C) 2020 Alibaba Cloud", 0) == 0);
  CHECK(fs::file_size(mnt / "lib.rs") == 16931);
  CHECK(fs::file_size(mnt / "sync_io.rs") == 13400);
  CHECK(read_all(mnt / "added") == "added by an upper layer");
}
