// nydusctl against a real nydusd serving the sample image (LABEL
// integration): info and every metrics kind as tables and as JSON,
// set-log-level, and the errors for a missing or wrong socket.
#include <signal.h>

#include <filesystem>
#include <fstream>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "tests/integration/nydusd/nydusd_support.h"
#include "tests/support/temp_dir.h"

using namespace nydus::testing;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct CtlResult {
  int status;
  std::string output;
};

// Runs build/bin/nydusctl with `args`; stdout and stderr together.
CtlResult nydusctl(const TempDir& tmp, std::vector<std::string> args) {
  static int n = 0;
  std::string log = (tmp / ("nydusctl-" + std::to_string(++n) + ".log")).string();
  args.insert(args.begin(), bin_path("nydusctl"));
  int status = run_tool(args, log);
  return {status, read_text(log)};
}

std::unique_ptr<NydusdProcess> start_sample(const TempDir& tmp) {
  std::string config_path = (tmp / "config.json").string();
  std::ofstream(config_path) << v1_config(sample_dir(), (tmp / "cache").string());
  fs::create_directories(tmp / "mnt");
  return NydusdProcess::start_and_wait(tmp.path(), {"--mountpoint", (tmp / "mnt").string(), "--config",
                                                    config_path, "--bootstrap", sample_boot()});
}

}  // namespace

TEST_CASE("nydusctl info and metrics against a running nydusd", "[nydusctl]") {
  TempDir tmp("nydusctl-test");
  auto daemon = start_sample(tmp);
  const std::string sock = daemon->apisock();
  // Read a file so the fs metrics have something to count.
  std::string bytes = read_file(tmp / "mnt/lib.rs");
  REQUIRE_FALSE(bytes.empty());

  auto info = nydusctl(tmp, {"--sock", sock, "info"});
  INFO(info.output);
  REQUIRE(info.status == 0);
  CHECK(info.output.find("FIELD") != std::string::npos);
  CHECK(info.output.find("RUNNING") != std::string::npos);

  auto info_json = nydusctl(tmp, {"--sock", sock, "--json", "info"});
  INFO(info_json.output);
  REQUIRE(info_json.status == 0);
  json parsed = json::parse(info_json.output);
  CHECK(parsed["state"] == "RUNNING");
  CHECK(parsed["version"].is_object());
  // --json given after the subcommand works too.
  CHECK(nydusctl(tmp, {"info", "--sock", sock, "--json"}).status == 0);

  auto metrics = nydusctl(tmp, {"--sock", sock, "metrics"});
  INFO(metrics.output);
  REQUIRE(metrics.status == 0);
  CHECK(metrics.output.find("data_read") != std::string::npos);

  auto metrics_json = nydusctl(tmp, {"--sock", sock, "--json", "metrics", "--kind", "fs"});
  INFO(metrics_json.output);
  REQUIRE(metrics_json.status == 0);
  CHECK(json::parse(metrics_json.output)["data_read"].get<uint64_t>() >= bytes.size());

  for (const char* kind : {"backend", "blobcache", "inflight"}) {
    auto r = nydusctl(tmp, {"--sock", sock, "metrics", "--kind", kind});
    INFO(kind << ": " << r.output);
    CHECK(r.status == 0);
  }
  auto inflight = nydusctl(tmp, {"--sock", sock, "metrics", "--kind", "inflight"});
  CHECK(inflight.output.find("no requests in flight") != std::string::npos);
}

TEST_CASE("nydusctl set-log-level changes the level of a running nydusd", "[nydusctl]") {
  TempDir tmp("nydusctl-test");
  auto daemon = start_sample(tmp);
  auto r = nydusctl(tmp, {"--sock", daemon->apisock(), "set-log-level", "warn"});
  INFO(r.output);
  CHECK(r.status == 0);
  CHECK(r.output.find("log level set to warn") != std::string::npos);
  // An unknown level is a usage error, caught before any request.
  CHECK(nydusctl(tmp, {"--sock", daemon->apisock(), "set-log-level", "loud"}).status == 2);
}

TEST_CASE("nydusctl reports a missing or wrong socket and usage errors", "[nydusctl]") {
  TempDir tmp("nydusctl-test");
  auto missing = nydusctl(tmp, {"--sock", (tmp / "no-such.sock").string(), "info"});
  CHECK(missing.status == 1);
  CHECK(missing.output.find("does not exist") != std::string::npos);

  std::ofstream(tmp / "plain-file") << "x";
  auto not_sock = nydusctl(tmp, {"--sock", (tmp / "plain-file").string(), "metrics"});
  CHECK(not_sock.status == 1);
  CHECK(not_sock.output.find("not a unix socket") != std::string::npos);

  // A socket file nobody listens on (a crashed server's leftover).
  {
    TempDir d("nydusctl-dead");
    auto daemon = start_sample(d);
    std::string sock = daemon->apisock();
    REQUIRE(daemon->process().kill(SIGKILL).ok());
    daemon->wait_exit();
    if (fs::exists(sock)) {
      auto dead = nydusctl(tmp, {"--sock", sock, "info"});
      INFO(dead.output);
      CHECK(dead.status == 1);
      CHECK(dead.output.find(sock) != std::string::npos);
    }
  }

  CHECK(nydusctl(tmp, {"info"}).status == 2);                       // no --sock
  CHECK(nydusctl(tmp, {"--sock", "/x", "daemons"}).status == 2);    // daemons needs --system
  CHECK(nydusctl(tmp, {"--system", "/x", "upgrade"}).status == 2);  // --nydusd-path required
  CHECK(nydusctl(tmp, {"--sock", "/x", "metrics", "--kind", "disk"}).status == 2);
  CHECK(nydusctl(tmp, {}).status == 2);
  auto help = nydusctl(tmp, {"--help"});
  CHECK(help.status == 0);
  for (const char* cmd : {"info", "metrics", "set-log-level", "daemons", "records", "upgrade"}) {
    CHECK(help.output.find(cmd) != std::string::npos);
  }
}
