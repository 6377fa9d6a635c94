#include "nydusd/storage/backend.h"

#include <filesystem>

#include <catch2/catch.hpp>

#include "tests/support/temp_dir.h"
#include "tests/unit/storage/test_backend.h"

using nydus::ErrorKind;
using nydus::rafs::BlobInfo;
using nydus::storage::BackendConfig;
using nydus::storage::open_backend;
using nydus::storage::StorageMetrics;
using namespace nydus::storage::testing;

namespace {

std::vector<BlobInfo> sample_blobs() {
  BlobInfo b;
  b.blob_id = kSampleBlobId;
  return {b};
}

}  // namespace

TEST_CASE("localfs backend: reads ranges and counts them", "[storage][backend]") {
  StorageMetrics metrics;
  BackendConfig cfg;
  cfg.dir = kSampleDir;
  auto backend = open_backend(cfg, sample_blobs(), &metrics);
  REQUIRE(backend.ok());
  CHECK((*backend)->type() == "localfs");

  std::vector<uint8_t> buf(4);
  // The zstd frame magic of the first chunk (spec §20).
  REQUIRE((*backend)->read(kSampleBlobId, 0, buf).ok());
  CHECK(buf == std::vector<uint8_t>{0x28, 0xB5, 0x2F, 0xFD});
  CHECK(metrics.backend_read_count == 1);
  CHECK(metrics.backend_read_bytes == 4);

  auto past = (*backend)->read(kSampleBlobId, 14554 - 2, buf);
  REQUIRE_FALSE(past.ok());
  CHECK(past.error().kind() == ErrorKind::kCorrupt);
  CHECK(metrics.backend_read_errors == 1);

  auto unknown = (*backend)->read("feed", 0, buf);
  REQUIRE_FALSE(unknown.ok());
}

TEST_CASE("localfs backend: a single blob_file", "[storage][backend]") {
  BackendConfig cfg;
  cfg.blob_file = kSampleDir + "/" + kSampleBlobId;
  auto backend = open_backend(cfg, sample_blobs(), nullptr);
  REQUIRE(backend.ok());
  std::vector<uint8_t> buf(4);
  REQUIRE((*backend)->read(kSampleBlobId, 0, buf).ok());

  // One file cannot serve two blobs.
  auto blobs = sample_blobs();
  blobs.push_back(blobs[0]);
  blobs[1].blob_id = "other";
  auto two = open_backend(cfg, blobs, nullptr);
  REQUIRE_FALSE(two.ok());
  CHECK(two.error().kind() == ErrorKind::kInvalidArgument);
}

TEST_CASE("backend config errors are clear at open", "[storage][backend]") {
  nydus::testing::TempDir dir;
  BackendConfig cfg;

  SECTION("missing blob dir") {
    cfg.dir = (dir / "nope").string();
    auto b = open_backend(cfg, sample_blobs(), nullptr);
    REQUIRE_FALSE(b.ok());
    CHECK(b.error().kind() == ErrorKind::kNotFound);
    CHECK_THAT(b.error().message(), Catch::Contains((dir / "nope").string()));
  }
  SECTION("blob missing from the dir") {
    cfg.dir = dir.path().string();
    auto b = open_backend(cfg, sample_blobs(), nullptr);
    REQUIRE_FALSE(b.ok());
    CHECK(b.error().kind() == ErrorKind::kNotFound);
    CHECK_THAT(b.error().message(), Catch::Contains(kSampleBlobId));
  }
  SECTION("missing blob_file") {
    cfg.blob_file = (dir / "blob").string();
    auto b = open_backend(cfg, sample_blobs(), nullptr);
    REQUIRE_FALSE(b.ok());
    CHECK(b.error().kind() == ErrorKind::kNotFound);
  }
  SECTION("neither dir nor blob_file") {
    auto b = open_backend(cfg, sample_blobs(), nullptr);
    REQUIRE_FALSE(b.ok());
    CHECK(b.error().kind() == ErrorKind::kInvalidArgument);
  }
  SECTION("unknown type") {
    cfg.type = "oss";
    cfg.dir = kSampleDir;
    auto b = open_backend(cfg, sample_blobs(), nullptr);
    REQUIRE_FALSE(b.ok());
    CHECK(b.error().kind() == ErrorKind::kUnsupported);
    CHECK_THAT(b.error().message(), Catch::Contains("oss"));
  }
  SECTION("blob id that escapes the dir") {
    cfg.dir = kSampleDir;
    auto blobs = sample_blobs();
    blobs[0].blob_id = "../rafs-v6-2.2/" + kSampleBlobId;
    auto b = open_backend(cfg, blobs, nullptr);
    REQUIRE_FALSE(b.ok());
    CHECK(b.error().kind() == ErrorKind::kCorrupt);
  }
}
