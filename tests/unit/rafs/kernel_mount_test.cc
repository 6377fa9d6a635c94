// Kernel cross-check (integration: needs root and an EROFS kernel with
// file-backed mounts, >= 6.12): builds the uncompressed blob cache of the
// reference image with BlobReader, mounts the bootstrap with mount(2)
// directly (mount(8) would attach a loop device, and then `device=` must be
// a block device, §18), and compares the kernel's view of every inode -
// names, inode numbers, modes, sizes, mtimes, ownership, rdev, xattrs,
// symlink targets and file contents - with the reader's.
#include <dirent.h>
#include <errno.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <map>
#include <set>

#include "nydusd/rafs/blob_reader.h"
#include "tests/support/temp_dir.h"
#include "tests/unit/rafs/sample_image.h"

using namespace nydus;
using namespace nydus::rafs;
using namespace nydus::rafs::testing;

namespace {

// Unmounts on scope exit; TempDir lazily detaches anything left behind.
class MountGuard {
 public:
  explicit MountGuard(std::string path) : path_(std::move(path)) {}
  MountGuard(const MountGuard&) = delete;
  MountGuard& operator=(const MountGuard&) = delete;
  ~MountGuard() { umount2(path_.c_str(), 0); }

 private:
  std::string path_;
};

std::set<std::string> kernel_names(const std::string& dir) {
  std::set<std::string> names;
  DIR* d = opendir(dir.c_str());
  REQUIRE(d != nullptr);
  while (dirent* e = readdir(d)) names.insert(e->d_name);
  closedir(d);
  return names;
}

std::map<std::string, std::string> kernel_xattrs(const std::string& path) {
  std::map<std::string, std::string> out;
  char names[65536];
  ssize_t n = llistxattr(path.c_str(), names, sizeof(names));
  REQUIRE(n >= 0);
  for (ssize_t i = 0; i < n; i += ssize_t(strlen(names + i)) + 1) {
    char value[65536];
    ssize_t v = lgetxattr(path.c_str(), names + i, value, sizeof(value));
    REQUIRE(v >= 0);
    out[names + i] = std::string(value, size_t(v));
  }
  return out;
}

std::string kernel_file(const std::string& path) {
  auto r = read_file(path, 1ull << 32);
  REQUIRE(r.ok());
  return std::string(r->begin(), r->end());
}

// Walks the reader's tree and checks each inode against the mounted kernel view.
// Returns the number of inodes compared.
size_t compare_with_kernel(std::shared_ptr<const Bootstrap> b, BlobReader& reader, const std::string& mnt) {
  size_t compared = 0;
  std::vector<std::pair<uint64_t, std::string>> stack{{b->root_nid(), mnt}};
  while (!stack.empty()) {
    auto [nid, path] = stack.back();
    stack.pop_back();
    INFO("path " << path << " nid " << nid);
    auto a = b->getattr(nid);
    REQUIRE(a.ok());
    struct stat st;
    REQUIRE(lstat(path.c_str(), &st) == 0);
    ++compared;
    CHECK(st.st_ino == nid);
    CHECK(st.st_mode == a->mode);
    CHECK(uint64_t(st.st_size) == a->size);
    CHECK(st.st_nlink == a->nlink);
    CHECK(st.st_uid == a->uid);
    CHECK(st.st_gid == a->gid);
    CHECK(uint64_t(st.st_mtim.tv_sec) == a->mtime);
    CHECK(uint64_t(st.st_mtim.tv_nsec) == a->mtime_nsec);
    if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) CHECK(st.st_rdev == a->rdev);

    auto xattrs = b->xattrs(nid);
    REQUIRE(xattrs.ok());
    std::map<std::string, std::string> ours;
    for (const Xattr& x : *xattrs) ours[x.name] = x.value;
    CHECK(kernel_xattrs(path) == ours);

    if (S_ISREG(st.st_mode)) {
      auto data = reader.read(nid);
      REQUIRE(data.ok());
      CHECK(kernel_file(path) == std::string(data->begin(), data->end()));
    } else if (S_ISLNK(st.st_mode)) {
      char target[4097];
      ssize_t n = ::readlink(path.c_str(), target, sizeof(target));
      REQUIRE(n >= 0);
      CHECK(std::string(target, size_t(n)) == *b->readlink(nid));
    } else if (S_ISDIR(st.st_mode)) {
      std::set<std::string> names;
      REQUIRE(b->readdir(nid, 0, [&](const DirEntry& e, uint64_t) {
                 names.insert(e.name);
                 if (e.name != "." && e.name != "..") stack.push_back({e.nid, path + "/" + e.name});
                 return true;
               }).ok());
      CHECK(kernel_names(path) == names);
    }
  }
  return compared;
}

}  // namespace

TEST_CASE("rafs: the kernel's view of the sample image matches the reader's", "[rafs][kernel]") {
  nydus::testing::TempDir dir("rafs-kernel");
  auto b = *Bootstrap::open(kSampleBoot);
  BlobReader reader(b, kSampleDir);
  const std::string cache = (dir / "blob-cache").string();
  REQUIRE(reader.write_uncompressed_blob(0, cache).ok());

  const std::string mnt = (dir / "mnt").string();
  REQUIRE(mkdir(mnt.c_str(), 0755) == 0);
  const std::string options = "device=" + cache;
  if (mount(kSampleBoot.c_str(), mnt.c_str(), "erofs", MS_RDONLY, options.c_str()) != 0) {
    const int err = errno;
    // No EROFS, or no file-backed mounts (kernel < 6.12): nothing to compare against.
    if (err == ENODEV || err == ENOTBLK) {
      WARN("kernel cannot mount file-backed EROFS (" << strerror(err) << "); cross-check skipped");
      return;
    }
    FAIL("mount erofs " << kSampleBoot << " with " << options << ": " << strerror(err));
  }
  MountGuard guard(mnt);

  CHECK(compare_with_kernel(b, reader, mnt) == 3);
  CHECK(kernel_file(mnt + "/lib.rs").rfind("// Copyright (C) 2020 Alibaba Cloud", 0) == 0);
}
