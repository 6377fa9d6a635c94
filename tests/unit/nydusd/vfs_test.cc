#include <catch2/catch.hpp>

#include <errno.h>
#include <unistd.h>

#include <cstring>
#include <map>

#include "nydusd/fuse/vfs.h"
#include "tests/support/temp_dir.h"

using namespace nydus;
using namespace nydus::fuse;

namespace {

const std::string kSampleDir = std::string(NYDUS_TESTDATA_DIR) + "/rafs-v6-2.2";
const std::string kSampleBoot = kSampleDir + "/rafs-v6-2.2.boot";

std::shared_ptr<RafsMount> sample_mount(const std::string& mountpoint, const std::string& work_dir,
                                        bool with_store = true) {
  auto bootstrap = rafs::Bootstrap::open(kSampleBoot);
  REQUIRE(bootstrap.ok());
  auto mount = std::make_shared<RafsMount>();
  mount->mountpoint = mountpoint;
  mount->source = kSampleBoot;
  mount->bootstrap = *bootstrap;
  if (with_store) {
    storage::StorageConfig config;
    config.backend.dir = kSampleDir;
    config.cache.work_dir = work_dir;
    config.validate = true;
    auto store = storage::BlobStore::open(config, *bootstrap);
    REQUIRE(store.ok());
    mount->store = *store;
  }
  mount->stats = std::make_shared<FsIoStats>(mountpoint);
  return mount;
}

struct Dirent {
  uint64_t ino;
  uint64_t off;
  uint32_t type;
  std::string name;
};

// Decodes fuse_dirent / fuse_direntplus records.
std::vector<Dirent> parse_dirents(const std::string& buf, bool plus) {
  constexpr size_t kEntryOut = 128;  // sizeof(struct fuse_entry_out)
  std::vector<Dirent> out;
  size_t pos = 0;
  while (pos < buf.size()) {
    if (plus) pos += kEntryOut;
    Dirent d;
    uint32_t namelen;
    std::memcpy(&d.ino, buf.data() + pos, 8);
    std::memcpy(&d.off, buf.data() + pos + 8, 8);
    std::memcpy(&namelen, buf.data() + pos + 16, 4);
    std::memcpy(&d.type, buf.data() + pos + 20, 4);
    d.name.assign(buf.data() + pos + 24, namelen);
    out.push_back(d);
    pos += (24 + namelen + 7) & ~size_t{7};
  }
  return out;
}

}  // namespace

TEST_CASE("vfs path normalization", "[vfs]") {
  CHECK(*normalize_vfs_path("/") == "/");
  CHECK(*normalize_vfs_path("//a//b/") == "/a/b");
  CHECK_FALSE(normalize_vfs_path("a/b").ok());
  CHECK_FALSE(normalize_vfs_path("/a/../b").ok());
  CHECK_FALSE(normalize_vfs_path("/./b").ok());
  CHECK_FALSE(normalize_vfs_path("").ok());
  CHECK_FALSE(normalize_vfs_path("/" + std::string(256, 'x')).ok());
}

TEST_CASE("an image mounted at / is served at FUSE_ROOT_ID", "[vfs]") {
  testing::TempDir tmp;
  Vfs vfs;
  auto entry = vfs.mount(sample_mount("/", tmp.path().string()));
  REQUIRE(entry.ok());
  CHECK(entry->index == 1);
  CHECK(entry->root_node == kRootNodeId);

  struct stat root {};
  double timeout = 0;
  REQUIRE(vfs.do_getattr(kRootNodeId, &root, &timeout) == 0);
  CHECK(S_ISDIR(root.st_mode));
  CHECK(timeout == 5.0);

  fuse_entry_param lib{};
  REQUIRE(vfs.do_lookup(kRootNodeId, "lib.rs", &lib) == 0);
  CHECK(node_mount_index(lib.ino) == 1);
  CHECK(lib.attr.st_size == 16931);
  CHECK(lib.attr.st_ino == lib.ino);
  CHECK(S_ISREG(lib.attr.st_mode));

  fuse_entry_param sync{};
  REQUIRE(vfs.do_lookup(kRootNodeId, "sync_io.rs", &sync) == 0);
  CHECK(sync.attr.st_size == 13400);

  std::vector<uint8_t> data;
  REQUIRE(vfs.do_read(lib.ino, 0, 1 << 20, &data) == 0);
  CHECK(data.size() == 16931);
  CHECK(std::string(data.begin(), data.begin() + 2) == "//");
  std::vector<uint8_t> tail;
  REQUIRE(vfs.do_read(lib.ino, 16900, 4096, &tail) == 0);
  CHECK(tail.size() == 31);
  CHECK(std::equal(tail.begin(), tail.end(), data.begin() + 16900));
  std::vector<uint8_t> beyond;
  REQUIRE(vfs.do_read(lib.ino, 20000, 4096, &beyond) == 0);
  CHECK(beyond.empty());

  fuse_entry_param missing{};
  CHECK(vfs.do_lookup(kRootNodeId, "nope", &missing) == ENOENT);
  CHECK(missing.entry_timeout > 0);  // negative entries may be cached
  CHECK(vfs.do_lookup(kRootNodeId, std::string(300, 'x').c_str(), &missing) == ENAMETOOLONG);

  std::string value;
  CHECK(vfs.do_getxattr(lib.ino, "user.none", &value) == ENODATA);
  std::string names;
  CHECK(vfs.do_listxattr(lib.ino, &names) == 0);
  CHECK(vfs.do_access(lib.ino, R_OK) == 0);
  CHECK(vfs.do_access(lib.ino, W_OK) == EROFS);
  std::string target;
  CHECK(vfs.do_readlink(lib.ino, &target) != 0);
  struct statvfs st {};
  CHECK(vfs.do_statfs(kRootNodeId, &st) == 0);
  CHECK(st.f_namemax == 255);
}

TEST_CASE("readdir and readdirplus list the image's entries with resumable offsets", "[vfs]") {
  testing::TempDir tmp;
  Vfs vfs;
  REQUIRE(vfs.mount(sample_mount("/", tmp.path().string())).ok());
  for (bool plus : {false, true}) {
    std::string buf;
    REQUIRE(vfs.do_readdir(kRootNodeId, 0, 4096, plus, &buf) == 0);
    auto entries = parse_dirents(buf, plus);
    std::map<std::string, Dirent> by_name;
    for (const auto& e : entries) by_name[e.name] = e;
    CHECK(by_name.size() == 4);
    CHECK(by_name.count(".") == 1);
    CHECK(by_name.count("..") == 1);
    REQUIRE(by_name.count("lib.rs") == 1);
    CHECK(by_name["lib.rs"].type == (S_IFREG >> 12));
    // Resuming after the first entry returns the rest.
    std::string rest;
    REQUIRE(vfs.do_readdir(kRootNodeId, entries[0].off, 4096, plus, &rest) == 0);
    CHECK(parse_dirents(rest, plus).size() == entries.size() - 1);
    // Past the end: empty.
    std::string end;
    REQUIRE(vfs.do_readdir(kRootNodeId, entries.back().off, 4096, plus, &end) == 0);
    CHECK(end.empty());
  }
  // A buffer too small for everything returns what fits.
  std::string small;
  REQUIRE(vfs.do_readdir(kRootNodeId, 0, 64, false, &small) == 0);
  CHECK(parse_dirents(small, false).size() < 4);
}

TEST_CASE("sub-mounts live under pseudo directories with their own indexes", "[vfs]") {
  testing::TempDir tmp;
  Vfs vfs;
  auto a = vfs.mount(sample_mount("/images/a", (tmp / "a").string()));
  auto b = vfs.mount(sample_mount("/images/b", (tmp / "b").string()));
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  CHECK(a->index != b->index);
  CHECK(a->name == "a");
  CHECK(a->parent_node == b->parent_node);

  struct stat root {};
  double timeout;
  REQUIRE(vfs.do_getattr(kRootNodeId, &root, &timeout) == 0);
  CHECK(S_ISDIR(root.st_mode));

  fuse_entry_param images{}, ea{}, file{};
  REQUIRE(vfs.do_lookup(kRootNodeId, "images", &images) == 0);
  CHECK(node_mount_index(images.ino) == kPseudoIndex);
  REQUIRE(vfs.do_lookup(images.ino, "a", &ea) == 0);
  CHECK(ea.ino == a->root_node);
  CHECK(node_mount_index(ea.ino) == a->index);
  REQUIRE(vfs.do_lookup(ea.ino, "lib.rs", &file) == 0);
  CHECK(node_mount_index(file.ino) == a->index);

  std::string buf;
  REQUIRE(vfs.do_readdir(images.ino, 0, 4096, true, &buf) == 0);
  auto entries = parse_dirents(buf, true);
  REQUIRE(entries.size() == 4);
  CHECK(entries[2].name == "a");
  CHECK(entries[3].name == "b");

  CHECK(vfs.mount(sample_mount("/images/a", (tmp / "c").string())).error().kind() ==
        ErrorKind::kAlreadyExists);
  CHECK(vfs.mount(sample_mount("/", (tmp / "c").string())).error().kind() ==
        ErrorKind::kFailedPrecondition);

  // Unmount: the image's node ids go stale and its now empty pseudo
  // directory goes too (as in the reference); "images" still holds "b".
  auto removed = vfs.umount("/images/a");
  REQUIRE(removed.ok());
  CHECK(removed->removed_dirs == std::vector<std::pair<uint64_t, std::string>>{{images.ino, "a"}});
  struct stat st {};
  CHECK(vfs.do_getattr(file.ino, &st, &timeout) == ESTALE);
  CHECK(vfs.do_getattr(ea.ino, &st, &timeout) == ESTALE);
  fuse_entry_param again{};
  CHECK(vfs.do_lookup(images.ino, "a", &again) == ENOENT);
  REQUIRE(vfs.do_readdir(images.ino, 0, 4096, true, &buf) == 0);
  entries = parse_dirents(buf, true);
  REQUIRE(entries.size() == 3);
  CHECK(entries[2].name == "b");
  CHECK(vfs.umount("/images/a").error().kind() == ErrorKind::kNotFound);
  CHECK(vfs.pseudo_entries().size() == 2);
  // The last mount under "images" takes "images" with it; the root stays.
  removed = vfs.umount("/images/b");
  REQUIRE(removed.ok());
  CHECK(removed->removed_dirs.size() == 2);
  CHECK(removed->removed_dirs.back() == std::pair<uint64_t, std::string>{kRootNodeId, "images"});
  CHECK(vfs.do_lookup(kRootNodeId, "images", &again) == ENOENT);
  CHECK(vfs.pseudo_entries().empty());
  CHECK(vfs.do_getattr(kRootNodeId, &st, &timeout) == 0);
  // A new mount at the same path gets fresh pseudo inos (never reused).
  auto back = vfs.mount(sample_mount("/images/a", (tmp / "d").string()));
  REQUIRE(back.ok());
  CHECK(back->parent_node != images.ino);
}

TEST_CASE("unknown node ids are errors, never crashes", "[vfs]") {
  Vfs vfs;
  struct stat st {};
  double timeout;
  CHECK(vfs.do_getattr(42, &st, &timeout) == ESTALE);
  CHECK(vfs.do_getattr(*make_node_id(9, 128), &st, &timeout) == ESTALE);
  std::vector<uint8_t> data;
  CHECK(vfs.do_read(*make_node_id(200, 1), 0, 10, &data) == ESTALE);
  CHECK(vfs.do_read(kRootNodeId, 0, 10, &data) == EISDIR);
  std::string buf;
  CHECK(vfs.do_readdir(77, 0, 4096, false, &buf) == ESTALE);
  fuse_entry_param e{};
  CHECK(vfs.do_lookup(kRootNodeId, "x", &e) == ENOENT);
}

TEST_CASE("explicit mount indexes (restore) and index exhaustion", "[vfs]") {
  testing::TempDir tmp;
  Vfs vfs;
  auto m = vfs.mount(sample_mount("/x", tmp.path().string(), false), 42);
  REQUIRE(m.ok());
  CHECK(m->index == 42);
  CHECK(vfs.mount(sample_mount("/y", tmp.path().string(), false), 42).error().kind() ==
        ErrorKind::kAlreadyExists);
  CHECK_FALSE(vfs.mount(sample_mount("/y", tmp.path().string(), false), 0).ok());
  // A mount without a blob store answers reads with EIO.
  fuse_entry_param file{};
  REQUIRE(vfs.do_lookup(m->root_node, "lib.rs", &file) == 0);
  std::vector<uint8_t> data;
  CHECK(vfs.do_read(file.ino, 0, 100, &data) == EIO);
}

TEST_CASE("remount keeps the index and swaps the image", "[vfs]") {
  testing::TempDir tmp;
  Vfs vfs;
  auto first = vfs.mount(sample_mount("/m", tmp.path().string()));
  REQUIRE(first.ok());
  auto replacement = sample_mount("/m", tmp.path().string());
  auto old = vfs.remount(replacement);
  REQUIRE(old.ok());
  CHECK(old->index == first->index);
  CHECK(vfs.find_mount("/m")->mount == replacement);
  CHECK(vfs.remount(sample_mount("/other", tmp.path().string())).error().kind() ==
        ErrorKind::kNotFound);
}

TEST_CASE("the invalidation walk goes children first and ends at the mount's entry", "[vfs]") {
  testing::TempDir tmp;
  Vfs vfs;
  auto entry = vfs.mount(sample_mount("/sub", tmp.path().string()));
  REQUIRE(entry.ok());
  std::vector<std::string> log;
  vfs.walk_for_invalidation(
      *entry,
      [&](uint64_t node) {
        log.push_back("inode " + std::to_string(node));
        return 0;
      },
      [&](uint64_t parent, const std::string& name) {
        log.push_back("entry " + std::to_string(parent) + "/" + name);
        return 0;
      });
  REQUIRE(log.size() == 6);  // root inode, 2 x (file inode, its entry), the mount entry
  CHECK(log.front() == "inode " + std::to_string(entry->root_node));
  CHECK(log.back() == "entry " + std::to_string(entry->parent_node) + "/sub");

  // A root the kernel does not know: nothing below it is touched.
  std::vector<std::string> short_log;
  vfs.walk_for_invalidation(
      *entry, [&](uint64_t) { short_log.push_back("inode"); return -ENOENT; },
      [&](uint64_t, const std::string& name) { short_log.push_back(name); return 0; });
  CHECK(short_log == std::vector<std::string>{"inode", "sub"});
}

TEST_CASE("a successor restores the pseudo tree and mounts with the same node ids", "[vfs][takeover]") {
  testing::TempDir tmp;
  Vfs old_vfs;
  // Created out of path order, with a removed mount in between: inos that a
  // fresh mount sequence would not reproduce.
  REQUIRE(old_vfs.mount(sample_mount("/z/one", (tmp / "1").string(), false)).ok());
  REQUIRE(old_vfs.mount(sample_mount("/a/two", (tmp / "2").string(), false)).ok());
  REQUIRE(old_vfs.umount("/z/one").ok());
  auto two = old_vfs.find_mount("/a/two");
  REQUIRE(two);

  Vfs vfs;
  REQUIRE(vfs.restore_pseudo(old_vfs.pseudo_entries()).ok());
  auto restored = vfs.mount(sample_mount("/a/two", (tmp / "3").string(), false), two->index);
  REQUIRE(restored.ok());
  CHECK(restored->root_node == two->root_node);
  CHECK(restored->parent_node == two->parent_node);
  CHECK(vfs.pseudo_entries().size() == old_vfs.pseudo_entries().size());
  fuse_entry_param a{};
  REQUIRE(vfs.do_lookup(kRootNodeId, "a", &a) == 0);
  fuse_entry_param old_a{};
  REQUIRE(old_vfs.do_lookup(kRootNodeId, "a", &old_a) == 0);
  CHECK(a.ino == old_a.ino);
  // The removed mount's pseudo directories are gone in both.
  fuse_entry_param z{};
  CHECK(vfs.do_lookup(kRootNodeId, "z", &z) == ENOENT);
  CHECK(old_vfs.do_lookup(kRootNodeId, "z", &z) == ENOENT);
  // With mounts present it refuses; bad entries are refused.
  CHECK(vfs.restore_pseudo({}).error().kind() == ErrorKind::kFailedPrecondition);
  Vfs other;
  CHECK_FALSE(other.restore_pseudo({{5, 99, "orphan"}}).ok());
  CHECK_FALSE(other.restore_pseudo({{5, 1, "a/b"}}).ok());
  CHECK(other.restore_pseudo({{5, 1, "ok"}}).ok());
}
