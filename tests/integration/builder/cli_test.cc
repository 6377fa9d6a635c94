// The nydus-image command line as users and scripts see it.
#include <catch2/catch.hpp>

#include "tests/integration/builder/oracle_support.h"
#include "tests/support/temp_dir.h"

using namespace nydus::builder::testing;
using nydus::testing::TempDir;

TEST_CASE("builder: command line prints version and help and fails cleanly", "[builder][cli]") {
  std::string out;
  REQUIRE(run({nydus_image(), "--version"}, &out) == 0);
  CHECK(out.find("Version:") != std::string::npos);
  CHECK(out.find("Git Commit:") != std::string::npos);
  REQUIRE(run({nydus_image(), "--help"}, &out) == 0);
  for (const char* sub : {"create", "merge", "check", "inspect", "export"}) CHECK(out.find(sub) != std::string::npos);
  REQUIRE(run({nydus_image(), "create", "--help"}, &out) == 0);
  CHECK(out.find("--whiteout-spec") != std::string::npos);

  TempDir work("builder-cli");
  fs::create_directories(work / "src");
  // No file data: a bootstrap and no blob.
  REQUIRE(run({nydus_image(), "create", "-B", work / "empty.boot", "-D", work / "blobs", work / "src"}, &out) == 0);
  CHECK(fs::is_empty(work / "blobs"));
  REQUIRE(run({nydus_image(), "check", "-B", work / "empty.boot"}, &out) == 0);
  CHECK(out.find("OK") != std::string::npos);

  CHECK(run({nydus_image(), "create", "-c", "gzip", "-B", work / "x.boot", "-D", work / "blobs", work / "src"}, &out) != 0);
  CHECK(out.find("unsupported compressor") != std::string::npos);
  CHECK(run({nydus_image(), "create", "-S", "0x3000", "-B", work / "x.boot", "-D", work / "blobs", work / "src"}, &out) != 0);
  CHECK(run({nydus_image(), "create", "--fs-version", "5", "-B", work / "x.boot", "-D", work / "blobs", work / "src"}, &out) != 0);
  CHECK(run({nydus_image(), "create", "-t", "tar-rafs", "-B", work / "x.boot", "-D", work / "blobs", work / "missing.tar"}, &out) != 0);
  CHECK_FALSE(fs::exists(work / "x.boot"));
  CHECK(run({nydus_image(), "export", "-B", work / "empty.boot", "-D", work / "blobs", "-O", work / "x.img"}, &out) != 0);
  CHECK(out.find("--block") != std::string::npos);
}
