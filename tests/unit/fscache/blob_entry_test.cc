// nydusd/fscache/blob_entry.h: BlobCacheEntry JSON (PUT /api/v2/blobs).
#include <catch2/catch.hpp>

#include <fstream>

#include "nydusd/fscache/blob_entry.h"
#include "tests/support/temp_dir.h"

using namespace nydus;
using namespace nydus::fscache;

namespace {

const char* kEntry = R"({
  "type": "bootstrap",
  "id": "fsid1",
  "domain_id": "dom1",
  "config_v2": {
    "version": 2,
    "id": "fsid1",
    "backend": {"type": "localfs", "localfs": {"dir": "/blobs"}},
    "cache": {"type": "fscache", "fscache": {"work_dir": "/var/cache/fsc"}},
    "metadata_path": "/images/boot",
    "unknown_key": 1
  }
})";

}  // namespace

TEST_CASE("blob entry: a config_v2 bootstrap entry", "[fscache][entry]") {
  auto e = parse_blob_entry(kEntry);
  REQUIRE(e.ok());
  CHECK(e->type == "bootstrap");
  CHECK(e->id == "fsid1");
  CHECK(e->domain_id == "dom1");
  CHECK(e->effective_domain() == "dom1");
  CHECK(e->metadata_path == "/images/boot");
  CHECK(e->cache_mode == CacheMode::kFscache);
  CHECK(e->work_dir == "/var/cache/fsc");
  CHECK(e->storage.backend.type == "localfs");
  CHECK(e->storage.backend.dir == std::optional<std::string>("/blobs"));
  CHECK(e->storage.cache.type.empty());  // the kernel cache file is the cache
  CHECK(e->json["config_v2"]["unknown_key"] == 1);
}

TEST_CASE("blob entry: cache types and the legacy config form", "[fscache][entry]") {
  auto v2 = nlohmann::json::parse(kEntry);
  SECTION("filecache uses the storage blob cache") {
    v2["config_v2"]["cache"] = {{"type", "filecache"}, {"filecache", {{"work_dir", "/w"}}}, {"validate", true}};
    auto e = blob_entry_from_json(v2);
    REQUIRE(e.ok());
    CHECK(e->cache_mode == CacheMode::kBlobCache);
    CHECK(e->storage.cache.type == "blobcache");
    CHECK(e->storage.cache.work_dir == "/w");
    CHECK(e->storage.validate);
  }
  SECTION("dummycache needs no work_dir") {
    v2["config_v2"]["cache"] = {{"type", "dummycache"}};
    auto e = blob_entry_from_json(v2);
    REQUIRE(e.ok());
    CHECK(e->cache_mode == CacheMode::kNone);
  }
  SECTION("fscache without a work_dir") {
    v2["config_v2"]["cache"] = {{"type", "fscache"}};
    CHECK_FALSE(blob_entry_from_json(v2).ok());
  }
  SECTION("unknown cache type") {
    v2["config_v2"]["cache"] = {{"type", "memcache"}};
    CHECK_FALSE(blob_entry_from_json(v2).ok());
  }
  SECTION("legacy config") {
    nlohmann::json j = {{"type", "bootstrap"}, {"id", "x"}, {"domain_id", ""},
                        {"config", {{"id", "x"}, {"backend_type", "localfs"}, {"backend_config", {{"blob_file", "/b"}}},
                                    {"cache_type", "fscache"}, {"cache_config", {{"work_dir", "/w"}}},
                                    {"metadata_path", "/m"}}}};
    auto e = blob_entry_from_json(j);
    REQUIRE(e.ok());
    CHECK(e->storage.backend.blob_file == std::optional<std::string>("/b"));
    CHECK(e->effective_domain() == "x");  // no domain: the fsid names the volume
    CHECK(e->metadata_path == "/m");
  }
}

TEST_CASE("blob entry: invalid entries are refused with a reason", "[fscache][entry]") {
  auto base = nlohmann::json::parse(kEntry);
  auto refuse = [](const nlohmann::json& j, ErrorKind kind = ErrorKind::kInvalidArgument) {
    auto e = blob_entry_from_json(j);
    INFO(j.dump());
    REQUIRE_FALSE(e.ok());
    CHECK(e.error().kind() == kind);
  };
  auto j = base;
  j["type"] = "datablob";
  refuse(j);
  j = base;
  j["type"] = "other";
  refuse(j);
  j = base;
  j.erase("type");
  refuse(j);
  j = base;
  j["id"] = "a/b";
  refuse(j);
  j = base;
  j["id"] = "";
  refuse(j);
  j = base;
  j["domain_id"] = "d/1";
  refuse(j);
  j = base;
  j["domain_id"] = "d,1";
  refuse(j);
  j = base;
  j["id"] = 5;
  refuse(j);
  j = base;
  j["id"] = std::string(300, 'a');
  refuse(j);
  j = base;
  j.erase("config_v2");
  refuse(j);
  j = base;
  j["config_v2"].erase("metadata_path");
  refuse(j);
  j = base;
  j["config_v2"]["version"] = 1;
  refuse(j);
  j = base;
  j["config_v2"]["backend"] = {{"type", "registry"}, {"registry", {{"host", "h"}, {"repo", "r"}}}};
  refuse(j, ErrorKind::kUnsupported);
  j = base;
  j["config_v2"]["backend"] = {{"type", "ftp"}};
  refuse(j);
  j = base;
  j["config_v2"]["backend"] = {{"type", "localfs"}, {"localfs", nlohmann::json::object()}};
  refuse(j);
  CHECK_FALSE(parse_blob_entry("{not json").ok());
  CHECK_FALSE(parse_blob_entry("[]").ok());
}

TEST_CASE("blob entry: the singleton --config list", "[fscache][entry]") {
  auto list = parse_blob_entry_list(std::string(R"({"blobs":[)") + kEntry + "," + kEntry + "]}");
  REQUIRE(list.ok());
  CHECK(list->size() == 2);
  CHECK(parse_blob_entry_list("{}")->empty());
  auto bad = parse_blob_entry_list(R"({"blobs":[{"type":"bootstrap"}]})");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message().find("blobs[0]") != std::string::npos);
  CHECK_FALSE(parse_blob_entry_list(R"({"blobs":{}})").ok());
}

TEST_CASE("blob entry: paths are checked", "[fscache][entry]") {
  testing::TempDir dir("fscache-entry");
  std::string boot = (dir / "boot").string();
  std::ofstream(boot) << "x";
  auto e = make_bootstrap_entry("id1", "", boot, dir.path().string(), "fscache", (dir / "work").string());
  REQUIRE(e.ok());
  CHECK(check_blob_entry_paths(*e).ok());
  CHECK(std::filesystem::is_directory(dir / "work"));  // created

  auto not_file = make_bootstrap_entry("id1", "", dir.path().string(), dir.path().string(), "fscache", "/tmp");
  REQUIRE(not_file.ok());
  CHECK_FALSE(check_blob_entry_paths(*not_file).ok());
  auto missing = make_bootstrap_entry("id1", "", (dir / "nope").string(), dir.path().string(), "fscache", "/tmp");
  REQUIRE(missing.ok());
  CHECK_FALSE(check_blob_entry_paths(*missing).ok());
  auto no_blobdir = make_bootstrap_entry("id1", "", boot, (dir / "nope").string(), "fscache", "/tmp");
  REQUIRE(no_blobdir.ok());
  CHECK_FALSE(check_blob_entry_paths(*no_blobdir).ok());
}
