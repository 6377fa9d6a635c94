// Unprivileged tests of common/mount.h: the mountinfo parser and mount point
// checks against the mounts that already exist. Tests that mount and unmount
// need root and live in tests/integration/common/mount_test.cc.
#include "common/mount.h"

#include <unistd.h>

#include <filesystem>

#include <catch2/catch.hpp>

#include "tests/support/temp_dir.h"

using nydus::ErrorKind;
using nydus::MountGuard;
using nydus::MountInfo;

TEST_CASE("parse_mountinfo reads every field and decodes octal escapes") {
  const char* text =
      "22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro\n"
      "36 22 0:32 /sub/dir /mnt/with\\040space\\011tab rw,nosuid shared:5 master:2 - "
      "fuse.nydusd my\\040source rw,user_id=0,group_id=0\n"
      "40 22 259:3 / /no/optional ro - erofs none ro\n"
      "41 22 0:50 / /back\\134slash rw - tmpfs tmpfs\n";
  auto res = nydus::parse_mountinfo(text);
  REQUIRE(res.ok());
  const auto& m = *res;
  REQUIRE(m.size() == 4);

  CHECK(m[0].mount_id == 22);
  CHECK(m[0].parent_id == 1);
  CHECK(m[0].major == 0);
  CHECK(m[0].minor == 21);
  CHECK(m[0].root == "/");
  CHECK(m[0].mount_point == "/");
  CHECK(m[0].mount_options == "rw,relatime");
  CHECK(m[0].optional_fields == std::vector<std::string>{"shared:1"});
  CHECK(m[0].fs_type == "ext4");
  CHECK(m[0].source == "/dev/vda1");
  CHECK(m[0].super_options == "rw,errors=remount-ro");

  CHECK(m[1].root == "/sub/dir");
  CHECK(m[1].mount_point == "/mnt/with space\ttab");
  CHECK(m[1].optional_fields == std::vector<std::string>{"shared:5", "master:2"});
  CHECK(m[1].fs_type == "fuse.nydusd");
  CHECK(m[1].source == "my source");
  CHECK(m[1].super_options == "rw,user_id=0,group_id=0");

  CHECK(m[2].major == 259);
  CHECK(m[2].minor == 3);
  CHECK(m[2].optional_fields.empty());
  CHECK(m[2].fs_type == "erofs");

  CHECK(m[3].mount_point == "/back\\slash");
  CHECK(m[3].super_options.empty());  // missing super options are tolerated
}

TEST_CASE("parse_mountinfo rejects malformed lines with their number") {
  auto bad = [](const std::string& text) {
    auto res = nydus::parse_mountinfo(text);
    REQUIRE_FALSE(res.ok());
    CHECK(res.error().kind() == ErrorKind::kCorrupt);
    return res.error().message();
  };
  CHECK_THAT(bad("22 1 0:21 / / rw\n"), Catch::Contains("line 1"));
  CHECK_THAT(bad("22 1 0:21 / / rw - ext4 /dev/vda1 rw\nx 1 0:21 / / rw shared:1 - a b c\n"),
             Catch::Contains("line 2"));
  bad("22 1 0-21 / / rw shared:1 - ext4 /dev/vda1 rw\n");
  bad("22 1 0:21 / / rw shared:1 shared:2 ext4 /dev/vda1 rw\n");
  bad("22 1 0:21 / / rw shared:1 x y z - ext4\n");
  CHECK(nydus::parse_mountinfo("").ok());
  CHECK(nydus::parse_mountinfo("\n\n").ok());
}

TEST_CASE("decode_mountinfo_escapes decodes only complete octal escapes") {
  CHECK(nydus::decode_mountinfo_escapes("a\\040b") == "a b");
  CHECK(nydus::decode_mountinfo_escapes("\\012") == "\n");
  CHECK(nydus::decode_mountinfo_escapes("end\\04") == "end\\04");
  CHECK(nydus::decode_mountinfo_escapes("x\\9y") == "x\\9y");
  CHECK(nydus::decode_mountinfo_escapes("") == "");
}

TEST_CASE("read_mountinfo sees the root mount and is_mountpoint agrees") {
  auto res = nydus::read_mountinfo();
  REQUIRE(res.ok());
  bool has_root = false;
  for (const auto& m : *res) has_root |= m.mount_point == "/";
  CHECK(has_root);
  CHECK(nydus::is_mountpoint("/"));
  CHECK(nydus::is_mountpoint("/proc"));
  CHECK(nydus::is_mountpoint("/proc/"));
  CHECK(nydus::is_mountpoint("/proc/../proc"));

  nydus::testing::TempDir dir("mountinfo");
  CHECK_FALSE(nydus::is_mountpoint(dir.path().string()));
  CHECK_FALSE(nydus::is_mountpoint((dir / "missing").string()));
  CHECK_FALSE(nydus::is_mountpoint((dir / "missing" / "deeper").string()));
  CHECK_FALSE(nydus::read_mountinfo((dir / "missing").string()).ok());
}

TEST_CASE("mountinfo_path resolves the parent only") {
  nydus::testing::TempDir dir("mountinfo-path");
  auto real = std::filesystem::canonical(dir.path());
  std::filesystem::create_directory(dir / "target");
  std::filesystem::create_directory_symlink(real / "target", dir / "link");

  auto p = nydus::mountinfo_path((dir / "link").string());
  REQUIRE(p.ok());
  CHECK(*p == (real / "link").string());  // the last component is not followed

  p = nydus::mountinfo_path((dir / "link" / "x" / "..").string() + "/");
  REQUIRE(p.ok());
  CHECK(*p == (real / "link").string());  // lexical normalization first

  auto cwd = std::filesystem::current_path();
  std::filesystem::current_path(dir.path());
  p = nydus::mountinfo_path("target");
  std::filesystem::current_path(cwd);
  REQUIRE(p.ok());
  CHECK(*p == (real / "target").string());

  CHECK(*nydus::mountinfo_path("/") == "/");
  CHECK_FALSE(nydus::mountinfo_path("").ok());
}

TEST_CASE("an empty or dismissed guard does nothing") {
  MountGuard empty;
  CHECK_FALSE(empty.active());
  CHECK(empty.unmount().ok());

  nydus::testing::TempDir dir("guard");
  MountGuard g(dir.path().string());
  CHECK(g.active());
  g.dismiss();
  CHECK_FALSE(g.active());
  MountGuard moved(std::move(g));
  CHECK_FALSE(moved.active());
}
