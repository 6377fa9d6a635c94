#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include "nydusd/daemon/config.h"
#include "tests/support/temp_dir.h"

using namespace nydus;
using namespace nydus::daemon;

namespace {

std::string v1(const std::string& backend_type, const std::string& dir, const std::string& extra = "") {
  return R"({"device":{"backend":{"type":")" + backend_type + R"(","config":{"dir":")" + dir +
         R"("}},"cache":{"type":"blobcache","config":{"work_dir":"/tmp/cache"}}},"mode":"direct",)" +
         R"("digest_validate":true)" + extra + "}";
}

}  // namespace

TEST_CASE("v1 config as the reference snapshotter writes it", "[config]") {
  auto config = parse_fs_config(v1("localfs", "/blobs",
                                   R"(,"iostats_files":false,"enable_xattr":true,"amplify_io":1048576,)"
                                   R"("fs_prefetch":{"enable":true,"threads_count":4,"merging_size":131072})"));
  REQUIRE(config.ok());
  CHECK(config->version == 1);
  CHECK(config->storage.backend.type == "localfs");
  CHECK(config->storage.backend.dir == "/blobs");
  CHECK_FALSE(config->storage.backend.blob_file);
  CHECK(config->storage.cache.type == "blobcache");
  CHECK(config->storage.cache.work_dir == "/tmp/cache");
  CHECK(config->storage.validate);
  CHECK(config->storage.prefetch.enable);
  CHECK(config->storage.prefetch.threads == 4);
  CHECK(config->storage.prefetch.prefetch_all);  // v1 default
  CHECK(config->entry_timeout == kDefaultEntryTimeoutSecs);
  CHECK(config->mode == "direct");
}

TEST_CASE("v2 config with localfs, blobcache and rafs settings", "[config]") {
  auto config = parse_fs_config(R"({
    "version": 2, "id": "img",
    "backend": {"type": "localfs", "localfs": {"blob_file": "/blobs/one"}},
    "cache": {"type": "blobcache", "filecache": {"work_dir": "/var/cache"}},
    "rafs": {"mode": "cached", "validate": true, "entry_timeout": 10, "attr_timeout": 2.5,
             "prefetch": {"enable": true, "threads": 2, "files": ["/etc", "/bin/sh"]}}
  })");
  REQUIRE(config.ok());
  CHECK(config->version == 2);
  CHECK(config->storage.backend.blob_file == "/blobs/one");
  CHECK(config->storage.cache.work_dir == "/var/cache");
  CHECK(config->storage.validate);
  CHECK(config->mode == "cached");
  CHECK(config->entry_timeout == 10);
  CHECK(config->attr_timeout == 2.5);
  CHECK(config->storage.prefetch.enable);
  CHECK(config->storage.prefetch.threads == 2);
  CHECK_FALSE(config->storage.prefetch.prefetch_all);  // v2 default
  CHECK(config->prefetch_files == std::vector<std::string>{"/etc", "/bin/sh"});
}

TEST_CASE("v2 also reads the cache section under \"blobcache\" and no cache at all", "[config]") {
  auto with = parse_fs_config(R"({"version":2,"backend":{"type":"localfs","localfs":{"dir":"/b"}},
    "cache":{"type":"blobcache","blobcache":{"work_dir":"/w"}}})");
  REQUIRE(with.ok());
  CHECK(with->storage.cache.work_dir == "/w");
  auto without = parse_fs_config(R"({"version":2,"backend":{"type":"localfs","localfs":{"dir":"/b"}}})");
  REQUIRE(without.ok());
  CHECK(without->storage.cache.type.empty());
}

TEST_CASE("bad configs are clear errors, never crashes", "[config]") {
  struct Case {
    const char* name;
    std::string text;
    ErrorKind kind;
    const char* message;
  };
  const Case cases[] = {
      {"malformed JSON", R"({"device": {)", ErrorKind::kInvalidArgument, "malformed"},
      {"not an object", "[1,2]", ErrorKind::kInvalidArgument, "object"},
      {"empty", "", ErrorKind::kInvalidArgument, "malformed"},
      {"unknown backend", v1("ftp", "/b"), ErrorKind::kInvalidArgument, "unknown backend type"},
      {"unsupported backend", v1("registry", "/b"), ErrorKind::kUnsupported, "not supported"},
      {"no device", R"({"mode":"direct"})", ErrorKind::kInvalidArgument, "device"},
      {"localfs without dir",
       R"({"device":{"backend":{"type":"localfs","config":{}}}})", ErrorKind::kInvalidArgument,
       "\"dir\" or \"blob_file\""},
      {"wrong type", v1("localfs", "/b", R"(,"digest_validate2":1,"enable_xattr":"yes")"),
       ErrorKind::kInvalidArgument, "enable_xattr must be a boolean"},
      {"bad mode", R"({"device":{"backend":{"type":"localfs","config":{"dir":"/b"}}},"mode":"fast"})",
       ErrorKind::kInvalidArgument, "mode"},
      {"unknown cache",
       R"({"device":{"backend":{"type":"localfs","config":{"dir":"/b"}},"cache":{"type":"memcache"}}})",
       ErrorKind::kInvalidArgument, "unknown cache type"},
      {"cache without work_dir",
       R"({"device":{"backend":{"type":"localfs","config":{"dir":"/b"}},"cache":{"type":"blobcache"}}})",
       ErrorKind::kInvalidArgument, "work_dir"},
      {"bad version", R"({"version":3})", ErrorKind::kInvalidArgument, "version must be 2"},
      {"v2 prefetch without enable",
       R"({"version":2,"backend":{"type":"localfs","localfs":{"dir":"/b"}},"rafs":{"prefetch":{"threads":2}}})",
       ErrorKind::kInvalidArgument, "enable is missing"},
      {"v2 relative prefetch file",
       R"({"version":2,"backend":{"type":"localfs","localfs":{"dir":"/b"}},"rafs":{"prefetch":{"enable":true,"files":["etc"]}}})",
       ErrorKind::kInvalidArgument, "absolute"},
      {"threads out of range",
       R"({"version":2,"backend":{"type":"localfs","localfs":{"dir":"/b"}},"rafs":{"prefetch":{"enable":true,"threads":0}}})",
       ErrorKind::kInvalidArgument, "threads"},
      {"negative timeout", v1("localfs", "/b", R"(,"entry_timeout":-1)"), ErrorKind::kInvalidArgument,
       "entry_timeout"},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    auto config = parse_fs_config(c.text);
    REQUIRE_FALSE(config.ok());
    CHECK(config.error().kind() == c.kind);
    CHECK_THAT(config.error().message(), Catch::Contains(c.message));
  }
}

TEST_CASE("secrets are blanked in the reported config", "[config]") {
  auto config = parse_fs_config(
      R"({"device":{"backend":{"type":"localfs","config":{"dir":"/b","auth":"dXNlcjpwYXNz"}}}})");
  REQUIRE(config.ok());
  CHECK(config->redacted["device"]["backend"]["config"]["auth"] == "");
  CHECK(config->redacted["device"]["backend"]["config"]["dir"] == "/b");
}

TEST_CASE("path checks name the missing directory", "[config]") {
  testing::TempDir tmp;
  auto ok = parse_fs_config(v1("localfs", tmp.path().string()));
  REQUIRE(ok.ok());
  CHECK(check_fs_config_paths(*ok).ok());
  auto missing = parse_fs_config(v1("localfs", (tmp / "nope").string()));
  REQUIRE(missing.ok());
  auto status = check_fs_config_paths(*missing);
  REQUIRE_FALSE(status.ok());
  CHECK_THAT(status.error().message(), Catch::Contains((tmp / "nope").string()));
}

TEST_CASE("config files: size cap and the file name in errors", "[config]") {
  testing::TempDir tmp;
  auto path = (tmp / "bad.json").string();
  std::ofstream(path) << "{not json";
  auto bad = load_fs_config_file(path);
  REQUIRE_FALSE(bad.ok());
  CHECK_THAT(bad.error().message(), Catch::Contains("bad.json"));

  auto big = (tmp / "big.json").string();
  {
    std::ofstream out(big);
    out << std::string(kMaxConfigFileSize + 1, ' ');
  }
  auto too_big = load_fs_config_file(big);
  REQUIRE_FALSE(too_big.ok());
  CHECK(too_big.error().kind() == ErrorKind::kTooLarge);
  CHECK_FALSE(load_fs_config_file((tmp / "absent.json").string()).ok());
}

TEST_CASE("prefetch lists: one absolute path a line, blank lines skipped", "[config]") {
  testing::TempDir tmp;
  auto path = (tmp / "list").string();
  std::ofstream(path) << "/etc/passwd\n\n  /usr/bin \n";
  auto files = load_prefetch_list(path);
  REQUIRE(files.ok());
  CHECK(*files == std::vector<std::string>{"/etc/passwd", "/usr/bin"});
  std::ofstream(path) << "relative/path\n";
  CHECK_FALSE(load_prefetch_list(path).ok());
}

TEST_CASE("per-file metrics switches: v1 top level and v2 under rafs", "[config]") {
  auto v1_on = parse_fs_config(v1("localfs", "/b", R"(,"iostats_files":true,"latest_read_files":true)"));
  REQUIRE(v1_on.ok());
  CHECK(v1_on->accounting.files);
  CHECK_FALSE(v1_on->accounting.access_pattern);
  CHECK(v1_on->accounting.latest_read_files);
  auto v2_on = parse_fs_config(R"({"version":2,"backend":{"type":"localfs","localfs":{"dir":"/b"}},
                                   "rafs":{"access_pattern":true}})");
  REQUIRE(v2_on.ok());
  CHECK(v2_on->accounting.access_pattern);
  CHECK_FALSE(v2_on->accounting.files);
  auto bad = parse_fs_config(v1("localfs", "/b", R"(,"access_pattern":"yes")"));
  REQUIRE_FALSE(bad.ok());
  CHECK_THAT(bad.error().message(), Catch::Contains("access_pattern"));
}
