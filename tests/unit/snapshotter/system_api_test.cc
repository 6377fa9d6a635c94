// The system API's HTTP layer over a real unix socket. The backend is a
// recording test implementation of SystemBackend (the other side of the
// seam); the HTTP shell under test is the real one.
#include "snapshotter/system_api.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <mutex>

#include <catch2/catch.hpp>

#include "common/http.h"
#include "tests/support/temp_dir.h"

namespace fs = std::filesystem;
using nydus::ErrorKind;
using nydus::HttpClient;
using nydus::snapshotter::DaemonUpgradeResult;
using nydus::snapshotter::DaemonView;
using nydus::snapshotter::start_system_api;
using nydus::snapshotter::SystemBackend;
using nydus::snapshotter::UpgradeRequest;
using nlohmann::json;

namespace {

class RecordingBackend : public SystemBackend {
 public:
  std::vector<DaemonView> views;
  json records = json::object();
  // What upgrade() answers; an Error refuses the whole request.
  nydus::Result<std::vector<DaemonUpgradeResult>> upgrade_answer{std::vector<DaemonUpgradeResult>{}};
  std::vector<UpgradeRequest> upgrade_calls;

  std::vector<DaemonView> daemons() override { return views; }
  json daemon_records() override { return records; }
  nydus::Result<std::vector<DaemonUpgradeResult>> upgrade(const UpgradeRequest& request) override {
    upgrade_calls.push_back(request);
    return upgrade_answer;
  }
};

// A backend, a server on a temp socket and a client to it.
struct Fixture {
  nydus::testing::TempDir dir{"system-api-test"};
  RecordingBackend backend;
  std::string sock = (dir / "run" / "system.sock").string();  // parent created by the server
  std::unique_ptr<nydus::snapshotter::SystemApiServer> server;
  std::unique_ptr<HttpClient> client;
  std::string exe = (dir / "nydusd-new").string();

  Fixture() {
    auto started = start_system_api(sock, backend);
    REQUIRE(started.ok());
    server = std::move(started).value();
    client = std::make_unique<HttpClient>(sock);
    std::ofstream(exe) << "#!/bin/sh\n";
    fs::permissions(exe, fs::perms::owner_all);
  }
  ~Fixture() {
    client.reset();
    server.reset();
  }

  nydus::HttpResponse call(const std::string& method, const std::string& path,
                           const std::string& body = {}) {
    auto resp = client->request(method, path, body);
    REQUIRE(resp.ok());
    return std::move(resp).value();
  }
};

DaemonView sample_view() {
  DaemonView v;
  v.id = "d1";
  v.pid = 4242;
  v.state = "RUNNING";
  v.api_socket = "/run/nydus/d1/api.sock";
  v.supervisor = "/run/nydus/supervisor/d1.sock";
  v.mountpoints = {"/mnt/a", "/mnt/b"};
  v.binary_path = "/usr/bin/nydusd";
  v.version = "v0.1.0";
  v.fs_driver = "fusedev";
  v.recovery_count = 2;
  v.last_failover_ms = 12.5;
  return v;
}

void require_error_body(const nydus::HttpResponse& resp, int status, const std::string& code) {
  REQUIRE(resp.status == status);
  json body = json::parse(resp.body);
  REQUIRE(body.at("code") == code);
  REQUIRE(body.at("message").is_string());
  REQUIRE_FALSE(body.at("message").get<std::string>().empty());
}

}  // namespace

TEST_CASE("system api socket is 0600 and removed on stop", "[system_api]") {
  Fixture f;
  struct stat st {};
  REQUIRE(::stat(f.sock.c_str(), &st) == 0);
  REQUIRE(S_ISSOCK(st.st_mode));
  REQUIRE((st.st_mode & 0777) == 0600);
  f.client.reset();
  f.server->stop();
  REQUIRE_FALSE(fs::exists(f.sock));
  f.server->stop();  // idempotent
}

TEST_CASE("system api start fails on an unusable path", "[system_api]") {
  nydus::testing::TempDir dir{"system-api-test"};
  RecordingBackend backend;
  std::ofstream(dir / "file") << "x";
  // The parent is a regular file: neither mkdir nor bind can succeed.
  auto started = start_system_api((dir / "file" / "system.sock").string(), backend);
  REQUIRE_FALSE(started.ok());
  REQUIRE(started.error().message().find("system api") != std::string::npos);
}

TEST_CASE("system api GET daemons lists every DaemonView field", "[system_api]") {
  Fixture f;
  f.backend.views.push_back(sample_view());
  DaemonView second;
  second.id = "d2";
  second.last_upgrade_ms = 3.0;
  f.backend.views.push_back(second);

  auto resp = f.call("GET", "/api/v1/daemons");
  REQUIRE(resp.status == 200);
  REQUIRE(resp.content_type == "application/json");
  json body = json::parse(resp.body);
  REQUIRE(body.is_array());
  REQUIRE(body.size() == 2);
  const json& d = body[0];
  CHECK(d["id"] == "d1");
  CHECK(d["pid"] == 4242);
  CHECK(d["state"] == "RUNNING");
  CHECK(d["api_socket"] == "/run/nydus/d1/api.sock");
  CHECK(d["supervisor"] == "/run/nydus/supervisor/d1.sock");
  CHECK(d["mountpoints"] == json::array({"/mnt/a", "/mnt/b"}));
  CHECK(d["binary_path"] == "/usr/bin/nydusd");
  CHECK(d["version"] == "v0.1.0");
  CHECK(d["fs_driver"] == "fusedev");
  CHECK(d["recovery_count"] == 2);
  CHECK(d["last_failover_ms"] == 12.5);
  CHECK(d["last_upgrade_ms"].is_null());
  CHECK(body[1]["last_failover_ms"].is_null());
  CHECK(body[1]["last_upgrade_ms"] == 3.0);
}

TEST_CASE("system api GET daemons with no daemons is an empty array", "[system_api]") {
  Fixture f;
  auto resp = f.call("GET", "/api/v1/daemons");
  REQUIRE(resp.status == 200);
  REQUIRE(json::parse(resp.body) == json::array());
}

TEST_CASE("system api GET daemons records returns the backend records", "[system_api]") {
  Fixture f;
  f.backend.records = {{"daemons", {{{"id", "d1"}, {"pid", 7}}}}};
  auto resp = f.call("GET", "/api/v1/daemons/records");
  REQUIRE(resp.status == 200);
  REQUIRE(json::parse(resp.body) == f.backend.records);
}

TEST_CASE("system api unknown path is 404 and wrong method is 405", "[system_api]") {
  Fixture f;
  require_error_body(f.call("GET", "/api/v1/nope"), 404, "NotFound");
  require_error_body(f.call("POST", "/api/v1/daemons"), 405, "InvalidArgument");
  require_error_body(f.call("PUT", "/api/v1/daemons/records", "{}"), 405, "InvalidArgument");
  require_error_body(f.call("GET", "/api/v1/nydusd/upgrade"), 405, "InvalidArgument");
  require_error_body(f.call("POST", "/api/v1/daemons/upgrade", "{}"), 405, "InvalidArgument");
  REQUIRE(f.backend.upgrade_calls.empty());
}

TEST_CASE("system api upgrade on both routes passes the request to the backend", "[system_api]") {
  Fixture f;
  DaemonUpgradeResult r;
  r.id = "d1";
  r.ok = true;
  r.old_pid = 10;
  r.new_pid = 20;
  r.switch_ms = 42.5;
  f.backend.upgrade_answer = std::vector<DaemonUpgradeResult>{r};

  for (const char* path : {"/api/v1/nydusd/upgrade", "/api/v1/daemons/upgrade"}) {
    f.backend.upgrade_calls.clear();
    json req = {{"nydusd_path", f.exe}, {"version", "v9"}, {"policy", "rolling"}};
    auto resp = f.call("PUT", path, req.dump());
    REQUIRE(resp.status == 200);
    json body = json::parse(resp.body);
    CHECK(body["ok"] == true);
    CHECK(body["failed"] == 0);
    REQUIRE(body["daemons"].size() == 1);
    CHECK(body["daemons"][0]["id"] == "d1");
    CHECK(body["daemons"][0]["ok"] == true);
    CHECK(body["daemons"][0]["error"] == "");
    CHECK(body["daemons"][0]["old_pid"] == 10);
    CHECK(body["daemons"][0]["new_pid"] == 20);
    CHECK(body["daemons"][0]["switch_ms"] == 42.5);
    REQUIRE(f.backend.upgrade_calls.size() == 1);
    CHECK(f.backend.upgrade_calls[0].nydusd_path == f.exe);
    CHECK(f.backend.upgrade_calls[0].version == "v9");
    CHECK(f.backend.upgrade_calls[0].policy == "rolling");
  }
}

TEST_CASE("system api upgrade without version and policy leaves them empty", "[system_api]") {
  Fixture f;
  auto resp = f.call("PUT", "/api/v1/nydusd/upgrade", json{{"nydusd_path", f.exe}}.dump());
  REQUIRE(resp.status == 200);
  REQUIRE(json::parse(resp.body)["daemons"] == json::array());
  REQUIRE(f.backend.upgrade_calls.size() == 1);
  CHECK(f.backend.upgrade_calls[0].version.empty());
  CHECK(f.backend.upgrade_calls[0].policy.empty());
}

TEST_CASE("system api upgrade with bad input is 400 and never reaches the backend", "[system_api]") {
  Fixture f;
  std::string dir = f.dir.path().string();
  std::string not_exec = (f.dir / "not-exec").string();
  std::ofstream(not_exec) << "x";
  fs::permissions(not_exec, fs::perms::owner_read | fs::perms::owner_write);

  std::vector<std::string> bodies = {
      "",
      "{not json",
      "[1,2]",
      "\"just a string\"",
      json::object().dump(),
      json{{"nydusd_path", 5}}.dump(),
      json{{"nydusd_path", ""}}.dump(),
      json{{"nydusd_path", "relative/nydusd"}}.dump(),
      json{{"nydusd_path", dir + "/missing"}}.dump(),
      json{{"nydusd_path", dir}}.dump(),  // a directory
      json{{"nydusd_path", f.exe}, {"version", 3}}.dump(),
      json{{"nydusd_path", f.exe}, {"policy", json::array()}}.dump(),
  };
  // access(X_OK) succeeds for root only on a file with some x bit; this one
  // has none, so it is refused for root too.
  bodies.push_back(json{{"nydusd_path", not_exec}}.dump());

  for (const auto& body : bodies) {
    INFO("body: " << body);
    require_error_body(f.call("PUT", "/api/v1/nydusd/upgrade", body), 400, "InvalidArgument");
  }
  REQUIRE(f.backend.upgrade_calls.empty());
}

TEST_CASE("system api upgrade with a partial failure is 500 naming the failed daemon", "[system_api]") {
  Fixture f;
  DaemonUpgradeResult good;
  good.id = "d1";
  good.ok = true;
  DaemonUpgradeResult bad;
  bad.id = "d2";
  bad.ok = false;
  bad.error = "takeover: new daemon did not become ready";
  bad.old_pid = 30;
  f.backend.upgrade_answer = std::vector<DaemonUpgradeResult>{good, bad};

  auto resp = f.call("PUT", "/api/v1/daemons/upgrade", json{{"nydusd_path", f.exe}}.dump());
  REQUIRE(resp.status == 500);
  json body = json::parse(resp.body);
  CHECK(body["ok"] == false);
  CHECK(body["failed"] == 1);
  CHECK(body["code"] == "Internal");
  std::string message = body["message"];
  CHECK(message.find("d2") != std::string::npos);
  CHECK(message.find("did not become ready") != std::string::npos);
  CHECK(message.find("d1") == std::string::npos);
  REQUIRE(body["daemons"].size() == 2);
  CHECK(body["daemons"][1]["ok"] == false);
  CHECK(body["daemons"][1]["old_pid"] == 30);

  // request_json turns it into an Error that carries the message.
  auto r = f.client->request_json("PUT", "/api/v1/daemons/upgrade", json{{"nydusd_path", f.exe}});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message().find("d2") != std::string::npos);
}

TEST_CASE("system api upgrade refused by the backend answers its error status", "[system_api]") {
  Fixture f;
  f.backend.upgrade_answer = nydus::Error(ErrorKind::kAlreadyExists, "an upgrade is already running");
  auto resp = f.call("PUT", "/api/v1/nydusd/upgrade", json{{"nydusd_path", f.exe}}.dump());
  require_error_body(resp, 409, "AlreadyExists");
  CHECK(json::parse(resp.body)["message"] == "an upgrade is already running");
}

TEST_CASE("system api oversized body is 413", "[system_api]") {
  Fixture f;
  std::string big(nydus::snapshotter::kSystemApiBodyLimit + 1, ' ');
  auto resp = f.client->request("PUT", "/api/v1/nydusd/upgrade", big);
  REQUIRE(resp.ok());
  REQUIRE(resp->status == 413);
  REQUIRE(f.backend.upgrade_calls.empty());
  // The server closed that connection; the client reconnects for the next.
  REQUIRE(f.call("GET", "/api/v1/daemons").status == 200);
}
