// Privileged tests of common/mount.h: real tmpfs mounts (root needed). Every
// mount is owned by a MountGuard, and the TempDir below it lazily detaches
// anything still mounted, so no test leaves a mount behind even when it fails.
#include "common/mount.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <catch2/catch.hpp>

#include "common/unique_fd.h"
#include "tests/support/temp_dir.h"

using nydus::ErrorKind;
using nydus::MountGuard;

namespace {

std::string make_dir(const nydus::testing::TempDir& dir, const std::string& name) {
  auto p = dir / name;
  std::filesystem::create_directories(p);
  return std::filesystem::canonical(p).string();
}

const nydus::MountInfo* find_mount(const std::vector<nydus::MountInfo>& mounts,
                                   const std::string& mp) {
  const nydus::MountInfo* found = nullptr;
  for (const auto& m : mounts) {
    if (m.mount_point == mp) found = &m;  // the last one is the top of a stack
  }
  return found;
}

}  // namespace

TEST_CASE("a guarded tmpfs shows up in mountinfo, escapes decoded, and goes away with the guard") {
  nydus::testing::TempDir dir("mount-guard");
  std::string mp = make_dir(dir, "mount point\twith tab");
  {
    auto g = MountGuard::mount("nydus test src", mp, "tmpfs", MS_NOSUID, "size=1m,mode=0750");
    REQUIRE(g.ok());
    CHECK(g->active());
    CHECK(g->mountpoint() == mp);
    CHECK(nydus::is_mountpoint(mp));

    auto mounts = nydus::read_mountinfo();
    REQUIRE(mounts.ok());
    auto* m = find_mount(*mounts, mp);
    REQUIRE(m != nullptr);
    CHECK(m->fs_type == "tmpfs");
    CHECK(m->source == "nydus test src");
    CHECK(m->root == "/");
    CHECK_THAT(m->mount_options, Catch::Contains("nosuid"));
    CHECK_THAT(m->super_options, Catch::Contains("size=1024k"));
    CHECK(m->mount_id > 0);
  }
  CHECK_FALSE(nydus::is_mountpoint(mp));
}

TEST_CASE("a dismissed guard leaves the mount, lazy_unmount removes it") {
  nydus::testing::TempDir dir("mount-dismiss");
  std::string mp = make_dir(dir, "m");
  {
    auto g = MountGuard::mount("none", mp, "tmpfs");
    REQUIRE(g.ok());
    g->dismiss();
  }
  MountGuard safety(mp);  // unmounts should a check below fail
  CHECK(nydus::is_mountpoint(mp));
  REQUIRE(nydus::lazy_unmount(mp).ok());
  CHECK_FALSE(nydus::is_mountpoint(mp));
  auto again = nydus::lazy_unmount(mp);
  REQUIRE_FALSE(again.ok());
  CHECK(again.error().kind() == ErrorKind::kNotFound);
}

TEST_CASE("a busy mount is detached lazily as the last resort") {
  nydus::testing::TempDir dir("mount-busy");
  std::string mp = make_dir(dir, "busy");
  auto g = MountGuard::mount("none", mp, "tmpfs");
  REQUIRE(g.ok());
  std::string file = mp + "/held";
  std::ofstream(file) << "still readable";
  nydus::UniqueFd held(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  REQUIRE(held);
  // The open file keeps the mount busy: a plain umount fails with EBUSY.
  REQUIRE(::umount2(mp.c_str(), 0) == -1);
  REQUIRE(errno == EBUSY);

  REQUIRE(g->unmount().ok());
  CHECK_FALSE(g->active());
  CHECK_FALSE(nydus::is_mountpoint(mp));
  char buf[32] = {};
  CHECK(::pread(held.get(), buf, sizeof(buf) - 1, 0) == 14);
  CHECK(std::string(buf) == "still readable");
}

TEST_CASE("unmount: not mounted is success, a symlink is never followed") {
  nydus::testing::TempDir dir("mount-edge");
  std::string plain = make_dir(dir, "plain");
  CHECK(nydus::unmount(plain).ok());
  CHECK(nydus::unmount(plain + "/missing").ok());

  std::string mp = make_dir(dir, "real");
  auto g = MountGuard::mount("none", mp, "tmpfs");
  REQUIRE(g.ok());
  std::string link = (dir / "link").string();
  std::filesystem::create_directory_symlink(mp, link);
  CHECK_FALSE(nydus::is_mountpoint(link));
  CHECK(nydus::unmount(link).ok());  // the link itself is not a mount point
  CHECK(nydus::is_mountpoint(mp));   // so the real mount stays

  // Moving a guard hands the mount over; assigning over a guard unmounts the
  // mount it held.
  MountGuard moved(std::move(*g));
  CHECK_FALSE(g->active());
  CHECK(moved.active());
  std::string mp2 = make_dir(dir, "second");
  auto g2 = MountGuard::mount("none", mp2, "tmpfs");
  REQUIRE(g2.ok());
  moved = std::move(*g2);
  CHECK_FALSE(nydus::is_mountpoint(mp));
  CHECK(nydus::is_mountpoint(mp2));
  CHECK(moved.mountpoint() == mp2);
}

TEST_CASE("a failed mount is an error naming the target") {
  nydus::testing::TempDir dir("mount-fail");
  std::string mp = make_dir(dir, "m");
  auto g = MountGuard::mount("none", mp, "no-such-fs-type");
  REQUIRE_FALSE(g.ok());
  CHECK_THAT(g.error().message(), Catch::Contains(mp));
  CHECK_FALSE(nydus::is_mountpoint(mp));
}
