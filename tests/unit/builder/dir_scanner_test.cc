// Directory sources: attributes, hard links, and OCI marker conversion only
// when --whiteout-spec oci asks for it.
#include "tools/nydus-image/dir_scanner.h"

#include <sys/xattr.h>
#include <unistd.h>

#include <fstream>

#include <catch2/catch.hpp>

#include "tests/support/temp_dir.h"

using namespace nydus::builder;
using nydus::testing::TempDir;
namespace fs = std::filesystem;

namespace {

void make_layer_dir(const fs::path& root) {
  fs::create_directories(root / "d");
  std::ofstream(root / "a") << "a";
  std::ofstream(root / ".wh.gone") << "";
  std::ofstream(root / "d" / ".wh..wh..opq") << "";
  std::ofstream(root / "d" / "kept") << "kept";
  REQUIRE(::link((root / "a").c_str(), (root / "d" / "a-link").c_str()) == 0);
  REQUIRE(::symlink("a", (root / "lnk").c_str()) == 0);
  REQUIRE(::setxattr((root / "a").c_str(), "user.x", "1", 1, 0) == 0);
}

}  // namespace

TEST_CASE("builder: directory scan keeps markers unless the spec is oci", "[builder][dir]") {
  TempDir dir("builder-dir");
  make_layer_dir(dir.path());

  auto plain = scan_directory(dir.path().string(), WhiteoutSpec::kNone);
  REQUIRE(plain.ok());
  const InodePtr& r = *plain;
  CHECK(r->children.count(".wh.gone") == 1);
  CHECK(r->children.at("d")->children.count(".wh..wh..opq") == 1);
  CHECK(r->children.at("a") == r->children.at("d")->children.at("a-link"));  // one inode
  CHECK(r->children.at("a")->xattrs.at("user.x") == "1");
  CHECK(r->children.at("a")->size == 1);
  CHECK(r->children.at("lnk")->symlink == "a");

  auto oci = scan_directory(dir.path().string(), WhiteoutSpec::kOci);
  REQUIRE(oci.ok());
  CHECK((*oci)->children.at("gone")->is_whiteout());
  CHECK((*oci)->children.count(".wh.gone") == 0);
  CHECK((*oci)->children.at("d")->xattrs.at("trusted.overlay.opaque") == "y");
  CHECK((*oci)->children.at("d")->children.count("kept") == 1);
}

TEST_CASE("builder: a missing or non-directory source is an error", "[builder][dir]") {
  TempDir dir("builder-dir");
  std::ofstream(dir / "file") << "x";
  CHECK_FALSE(scan_directory((dir / "missing").string(), WhiteoutSpec::kNone).ok());
  CHECK_FALSE(scan_directory((dir / "file").string(), WhiteoutSpec::kNone).ok());
}
