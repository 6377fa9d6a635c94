// The mounts the Snapshotter core hands out, actually mounted by the kernel
// (as containerd's mount.All would), in the spirit of containerd's
// snapshots testsuite: layers stack, deletions and renames in upper layers
// hide lower content, views are read-only. LABEL integration (needs root).
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <map>

#include <catch2/catch.hpp>

#include "tests/support/temp_dir.h"
#include "tests/unit/snapshotter/snapshotter_backends.h"

using namespace nydus::snapshotter;
using namespace nydus::snapshotter::testing;
namespace fs = std::filesystem;

namespace {

template <typename T>
T must(nydus::Result<T> r) {
  if (!r.ok()) FAIL(r.error().message());
  return std::move(r).value();
}
void must(const nydus::Status& s) {
  if (!s.ok()) FAIL(s.error().message());
}

// Mounts like containerd's mount.All for the shapes we return; unmounts
// (lazily) when destroyed.
class Mounted {
 public:
  Mounted(const std::vector<Mount>& mounts, const fs::path& target) : target_(target) {
    fs::create_directories(target);
    REQUIRE(mounts.size() == 1);
    const Mount& m = mounts[0];
    if (m.type == "bind") {
      bool ro = std::find(m.options.begin(), m.options.end(), "ro") != m.options.end();
      REQUIRE(::mount(m.source.c_str(), target.c_str(), nullptr, MS_BIND | MS_REC, nullptr) == 0);
      if (ro) {
        REQUIRE(::mount(nullptr, target.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC, nullptr) == 0);
      }
    } else {
      std::string data;
      for (const auto& o : m.options) data += (data.empty() ? "" : ",") + o;
      INFO("mount -t " << m.type << " -o " << data);
      REQUIRE(::mount(m.source.c_str(), target.c_str(), m.type.c_str(), 0, data.c_str()) == 0);
    }
  }
  ~Mounted() { ::umount2(target_.c_str(), MNT_DETACH); }
  const fs::path& path() const { return target_; }

 private:
  fs::path target_;
};

void write_file(const fs::path& path, const std::string& content) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary);
  REQUIRE(out.good());
  out << content;
}

using Tree = std::map<std::string, std::string>;

// Regular files (content), directories ("<dir>") and symlinks ("-> target")
// below `root`, printed one per line so that a mismatch is readable.
std::string dump(const Tree& t) {
  std::string out;
  for (const auto& [k, v] : t) out += k + " = " + v + "\n";
  return out;
}

Tree tree(const fs::path& root) {
  Tree out;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
    std::string rel = it->path().lexically_relative(root).string();
    if (it->is_symlink()) {
      out[rel] = "-> " + fs::read_symlink(it->path()).string();
    } else if (it->is_directory()) {
      out[rel] = "<dir>";
    } else {
      std::ifstream in(it->path(), std::ios::binary);
      out[rel] = std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    }
  }
  return out;
}

struct Fixture {
  nydus::testing::TempDir dir{"nydus-overlay"};
  CoreBackend sn{dir.path() / "root"};
  fs::path work(const std::string& name) const { return dir.path() / "work" / name; }
};

}  // namespace

TEST_CASE("overlay: layers stack, and a view shows the committed result") {
  Fixture f;
  {
    Mounted m(must(f.sn.prepare("preparing")), f.work("preparing"));
    write_file(m.path() / "foo", "foo\n");
    fs::create_directories(m.path() / "a/b/c");
    fs::create_symlink("foo", m.path() / "link");
  }
  must(f.sn.commit("committed", "preparing"));
  {
    Mounted m(must(f.sn.prepare("next", "committed")), f.work("next"));
    CHECK(dump(tree(m.path())) ==
          dump({{"foo", "foo\n"}, {"a", "<dir>"}, {"a/b", "<dir>"}, {"a/b/c", "<dir>"}, {"link", "-> foo"}}));
    write_file(m.path() / "bar", "bar\n");
    write_file(m.path() / "foo", "bar\n");
    fs::remove_all(m.path() / "a/b");
    auto u = must(f.sn.usage("next"));
    CHECK(u.inodes >= 3);  // upper root, bar, foo (+ a and the whiteout)
  }
  must(f.sn.commit("committed-next", "next"));
  {
    Mounted v(must(f.sn.view("nextnext", "committed-next")), f.work("view"));
    CHECK(dump(tree(v.path())) == dump({{"foo", "bar\n"}, {"bar", "bar\n"}, {"a", "<dir>"}, {"link", "-> foo"}}));
  }
  must(f.sn.remove("nextnext"));
  must(f.sn.remove("committed-next"));
  must(f.sn.remove("committed"));
}

TEST_CASE("overlay: views are read-only, on one layer and on many") {
  Fixture f;
  {
    Mounted m(must(f.sn.prepare("p")), f.work("p"));
    write_file(m.path() / "x", "x");
  }
  must(f.sn.commit("c1", "p"));
  must(f.sn.prepare("p2", "c1"));
  must(f.sn.commit("c2", "p2"));
  for (const auto& parent : {"c1", "c2"}) {
    INFO(parent);
    std::string key = std::string("view-") + parent;
    Mounted v(must(f.sn.view(key, parent)), f.work(key));
    CHECK(tree(v.path()).at("x") == "x");
    std::ofstream out(v.path() / "testfile");
    CHECK_FALSE(out.good());
    CHECK(::mkdir((v.path() / "d").c_str(), 0755) != 0);
    CHECK(errno == EROFS);
  }
}

TEST_CASE("overlay: deleted and moved lower files stay hidden in children") {
  Fixture f;
  {
    Mounted m(must(f.sn.prepare("l1")), f.work("l1"));
    write_file(m.path() / "foo", "foo\n");
    write_file(m.path() / "foobar", "foobar\n");
    write_file(m.path() / "dir1/f1", "Hello");
    write_file(m.path() / "dir2/f2", "...");
  }
  must(f.sn.commit("c1", "l1"));
  {
    Mounted m(must(f.sn.prepare("l2", "c1")), f.work("l2"));
    fs::remove(m.path() / "foobar");
    // As containerd's testsuite: the new directory is created, the old one
    // removed (renaming a lower directory needs redirect_dir), and a lower
    // file is hard-linked into it before its old name goes.
    write_file(m.path() / "dir3/f1", "Hello");
    fs::remove_all(m.path() / "dir1");
    fs::create_hard_link(m.path() / "dir2/f2", m.path() / "dir3/f2");
    fs::remove(m.path() / "dir2/f2");
  }
  must(f.sn.commit("c2", "l2"));
  must(f.sn.prepare("l3", "c2"));
  must(f.sn.commit("c3", "l3"));
  Mounted v(must(f.sn.view("v", "c3")), f.work("v"));
  CHECK(dump(tree(v.path())) ==
        dump({{"foo", "foo\n"}, {"dir2", "<dir>"}, {"dir3", "<dir>"}, {"dir3/f1", "Hello"}, {"dir3/f2", "..."}}));
}

TEST_CASE("overlay: the volatile and index options are accepted by the kernel") {
  nydus::testing::TempDir dir("nydus-overlay");
  NoopRemoteMounter noop;
  auto root = dir / "root";
  fs::create_directories(root);
  auto store = must(MetaStore::open(root / "db"));
  SnapshotterOptions options;
  options.root = root;
  options.overlay_volatile = true;
  options.overlay_index_off = true;
  auto sn = must(Snapshotter::open(options, *store, noop));
  must(sn->prepare("a"));
  must(sn->commit("c", "a"));
  auto mounts = must(sn->prepare("b", "c"));
  CHECK(std::find(mounts[0].options.begin(), mounts[0].options.end(), "volatile") != mounts[0].options.end());
  CHECK(mounts[0].options.front() == "index=off");
  Mounted m(mounts, dir / "mnt");
  write_file(m.path() / "file", "data");
  std::string upper;
  for (const auto& o : mounts[0].options) {
    if (o.rfind("upperdir=", 0) == 0) upper = o.substr(9);
  }
  CHECK(fs::exists(fs::path(upper) / "file"));
}
