// nydusctl --system against the real system API server (snapshotter/
// system_api) over a backend test double: the table and JSON output of
// daemons and records, and the exit status of upgrades. LABEL unit: no
// privileges needed.
#include <filesystem>
#include <fstream>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "snapshotter/system_api.h"
#include "tests/integration/nydusd/nydusd_support.h"
#include "tests/support/temp_dir.h"

using namespace nydus::testing;
using namespace nydus::snapshotter;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

class Backend : public SystemBackend {
 public:
  std::vector<DaemonView> views;
  nydus::Result<std::vector<DaemonUpgradeResult>> answer{std::vector<DaemonUpgradeResult>{}};
  std::vector<DaemonView> daemons() override { return views; }
  json daemon_records() override { return json::array({{{"id", "d1"}, {"state", "RUNNING"}}}); }
  nydus::Result<std::vector<DaemonUpgradeResult>> upgrade(const UpgradeRequest&) override { return answer; }
};

struct Fixture {
  TempDir tmp{"nydusctl-system-test"};
  Backend backend;
  std::string sock = (tmp / "system.sock").string();
  std::unique_ptr<SystemApiServer> server;
  std::string exe = (tmp / "nydusd-new").string();
  int n = 0;

  Fixture() {
    DaemonView v;
    v.id = "daemon-one";
    v.pid = 1234;
    v.state = "RUNNING";
    v.fs_driver = "fusedev";
    v.mountpoints = {"/mnt/one"};
    v.recovery_count = 3;
    v.last_failover_ms = 17.25;
    v.binary_path = "/usr/bin/nydusd";
    backend.views.push_back(v);
    auto started = start_system_api(sock, backend);
    REQUIRE(started.ok());
    server = std::move(started).value();
    std::ofstream(exe) << "#!/bin/sh\n";
    fs::permissions(exe, fs::perms::owner_all);
  }

  std::pair<int, std::string> ctl(std::vector<std::string> args) {
    std::string log = (tmp / ("ctl-" + std::to_string(++n) + ".log")).string();
    args.insert(args.begin(), {bin_path("nydusctl"), "--system", sock});
    int status = run_tool(args, log);
    return {status, read_text(log)};
  }
};

}  // namespace

TEST_CASE("nydusctl daemons prints a table or the JSON of the system API", "[nydusctl]") {
  Fixture f;
  auto [status, out] = f.ctl({"daemons"});
  INFO(out);
  REQUIRE(status == 0);
  CHECK(out.find("RECOVERIES") != std::string::npos);
  CHECK(out.find("daemon-one") != std::string::npos);
  CHECK(out.find("1234") != std::string::npos);
  CHECK(out.find("17.2") != std::string::npos);
  CHECK(out.find("/mnt/one") != std::string::npos);

  auto [js, jout] = f.ctl({"--json", "daemons"});
  INFO(jout);
  REQUIRE(js == 0);
  json parsed = json::parse(jout);
  REQUIRE(parsed.size() == 1);
  CHECK(parsed[0]["recovery_count"] == 3);

  auto [rs, rout] = f.ctl({"records"});
  INFO(rout);
  REQUIRE(rs == 0);
  CHECK(json::parse(rout)[0]["id"] == "d1");
}

TEST_CASE("nydusctl upgrade exits 0 only when every daemon upgraded", "[nydusctl]") {
  Fixture f;
  DaemonUpgradeResult ok;
  ok.id = "daemon-one";
  ok.ok = true;
  ok.old_pid = 1234;
  ok.new_pid = 5678;
  ok.switch_ms = 12.5;
  f.backend.answer = std::vector<DaemonUpgradeResult>{ok};
  auto [status, out] = f.ctl({"upgrade", "--nydusd-path", f.exe, "--version", "v2"});
  INFO(out);
  CHECK(status == 0);
  CHECK(out.find("5678") != std::string::npos);

  DaemonUpgradeResult bad = ok;
  bad.ok = false;
  bad.error = "takeover failed";
  f.backend.answer = std::vector<DaemonUpgradeResult>{bad};
  auto [fstatus, fout] = f.ctl({"upgrade", "--nydusd-path", f.exe});
  INFO(fout);
  CHECK(fstatus == 1);
  CHECK(fout.find("FAILED") != std::string::npos);
  CHECK(fout.find("takeover failed") != std::string::npos);
  CHECK(fout.find("HTTP 500") != std::string::npos);

  // Refused by the server's validation: the 400 message is shown.
  auto [rstatus, rout] = f.ctl({"upgrade", "--nydusd-path", "relative/nydusd"});
  INFO(rout);
  CHECK(rstatus == 1);
  CHECK(rout.find("not absolute") != std::string::npos);
}
