// The per-file metrics and hot-config endpoints of a real nydusd: what the
// kernel's reads of a file leave in GET /api/v1/metrics/files and /pattern,
// keyed by the st_ino the kernel shows, and how each endpoint refuses bad
// input.
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "tests/integration/nydusd/nydusd_support.h"
#include "tests/support/temp_dir.h"

using namespace nydus;
using namespace nydus::testing;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::unique_ptr<NydusdProcess> start_sample(const TempDir& tmp, bool accounting) {
  auto config = json::parse(v1_config(sample_dir(), (tmp / "cache").string()));
  config["iostats_files"] = accounting;
  config["access_pattern"] = accounting;
  config["latest_read_files"] = accounting;
  std::string config_path = (tmp / "config.json").string();
  std::ofstream(config_path) << config.dump();
  fs::create_directories(tmp / "mnt");
  return NydusdProcess::start_and_wait(tmp.path(), {"--mountpoint", (tmp / "mnt").string(), "--config",
                                                    config_path, "--bootstrap", sample_boot()});
}

}  // namespace

TEST_CASE("metrics/files and metrics/pattern count the reads of each file by its st_ino", "[nydusd]") {
  TempDir tmp("nydusd-files");
  auto daemon = start_sample(tmp, true);
  fs::path file = tmp / "mnt/lib.rs";
  struct stat st {};
  REQUIRE(::stat(file.c_str(), &st) == 0);
  std::string bytes = read_file(file);
  REQUIRE(bytes.size() == 16931);
  const std::string ino = std::to_string(st.st_ino);

  auto info = daemon->get_json("/api/v1/metrics");
  CHECK(info["files_account_enabled"] == true);
  auto files = daemon->get_json("/api/v1/metrics/files");
  REQUIRE(files.contains(ino));
  CHECK(files[ino]["data_read"].get<uint64_t>() == bytes.size());
  // No-open mode: the kernel sends no OPEN, so only the reads count.
  CHECK(files[ino]["total_fops"].get<uint64_t>() >= 1);

  auto pattern = daemon->get_json("/api/v1/metrics/pattern?id=/");
  bool seen = false;
  for (const auto& entry : pattern) {
    if (entry["ino"].get<uint64_t>() == st.st_ino) {
      seen = true;
      CHECK(entry["nr_read"].get<uint64_t>() >= 1);
      CHECK(entry["first_access_time_secs"].get<int64_t>() > 0);
    }
  }
  CHECK(seen);

  // latest=true hands out the nodes read since the last call, then forgets them.
  auto latest = daemon->get_json("/api/v1/metrics/files?latest=true");
  CHECK(latest.dump().find(ino) != std::string::npos);
  CHECK(daemon->get_json("/api/v1/metrics/files?latest=true").empty());

  CHECK(daemon->call("GET", "/api/v1/metrics/files?latest=maybe").status == 400);
  CHECK(daemon->call("GET", "/api/v1/metrics/files?id=/missing").status == 404);
  CHECK(daemon->call("GET", "/api/v1/metrics/pattern?id=/missing").status == 404);
  CHECK(daemon->call("PUT", "/api/v1/metrics/files").status == 400);  // wrong method
}

TEST_CASE("metrics/files refuses when the mount's config has accounting off", "[nydusd]") {
  TempDir tmp("nydusd-nofiles");
  auto daemon = start_sample(tmp, false);
  auto r = daemon->call("GET", "/api/v1/metrics/files");
  CHECK(r.status == 400);
  CHECK_THAT(r.body, Catch::Contains("iostats_files"));
  CHECK(daemon->call("GET", "/api/v1/metrics/pattern").status == 400);
  CHECK(daemon->call("GET", "/api/v1/metrics/files?latest=true").status == 400);
}

TEST_CASE("config endpoint keeps hot-reloadable keys per mount and refuses others", "[nydusd]") {
  TempDir tmp("nydusd-hotcfg");
  auto daemon = start_sample(tmp, false);
  CHECK(daemon->get_json("/api/v1/config?id=/").empty());
  CHECK(daemon->call("PUT", "/api/v1/config?id=/", R"({"proxy_url":"http://proxy:80"})").status == 204);
  CHECK(daemon->get_json("/api/v1/config?id=/")["proxy_url"] == "http://proxy:80");

  CHECK(daemon->call("PUT", "/api/v1/config?id=/", R"({"work_dir":"/tmp"})").status == 400);
  CHECK(daemon->call("PUT", "/api/v1/config?id=/", R"({"proxy_url":7})").status == 400);
  CHECK(daemon->call("PUT", "/api/v1/config?id=/", "{oops").status == 400);
  CHECK(daemon->call("PUT", "/api/v1/config?id=/", "{}").status == 400);
  CHECK(daemon->call("PUT", "/api/v1/config?id=/missing", R"({"proxy_url":"x"})").status == 404);
  CHECK(daemon->call("GET", "/api/v1/config").status == 400);  // id is required
  CHECK(daemon->call("GET", "/api/v1/config?id=/missing").status == 404);
  CHECK(daemon->call("GET", "/api/v1/daemon/events").status == 200);
  // A refused update leaves the earlier value.
  CHECK(daemon->get_json("/api/v1/config?id=/")["proxy_url"] == "http://proxy:80");
}
