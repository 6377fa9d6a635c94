// The control API as a pure Router over a real Daemon that has mounted nothing
// in the kernel (no privileges needed): every endpoint with good and bad input.
#include <catch2/catch.hpp>

#include <spdlog/spdlog.h>

#include "nydusd/daemon/api.h"
#include "tests/support/temp_dir.h"

using namespace nydus;
using namespace nydus::daemon;
using nlohmann::json;

namespace {

const std::string kSampleDir = std::string(NYDUS_TESTDATA_DIR) + "/rafs-v6-2.2";
const std::string kSampleBoot = kSampleDir + "/rafs-v6-2.2.boot";

HttpResponse call(const Router& router, std::string method, std::string target,
                  std::string body = {}) {
  HttpRequest request;
  request.method = std::move(method);
  auto q = target.find('?');
  request.path = target.substr(0, q);
  if (q != std::string::npos) request.query = *parse_query(target.substr(q + 1));
  request.body = std::move(body);
  return router.dispatch(request);
}

std::string mount_body(const std::string& work_dir, const std::string& source = kSampleBoot,
                       const std::string& backend = "localfs") {
  json config = {{"device",
                  {{"backend", {{"type", backend}, {"config", {{"dir", kSampleDir}}}}},
                   {"cache", {{"type", "blobcache"}, {"config", {{"work_dir", work_dir}}}}}}},
                 {"digest_validate", true}};
  return json{{"source", source}, {"fs_type", "rafs"}, {"config", config.dump()}}.dump();
}

struct Fixture {
  Fixture() {
    DaemonOptions options;
    options.mountpoint = (tmp / "mnt").string();
    options.id = "daemon-1";
    options.supervisor = (tmp / "supervisor.sock").string();
    daemon = std::move(Daemon::create(options).value());
    router = std::make_unique<Router>(build_api_router(*daemon));
  }
  json get_json(const std::string& target) {
    auto r = call(*router, "GET", target);
    REQUIRE(r.status == 200);
    return json::parse(r.body);
  }
  testing::TempDir tmp;
  std::unique_ptr<Daemon> daemon;
  std::unique_ptr<Router> router;
};

void check_error(const HttpResponse& r, int status) {
  CHECK(r.status == status);
  auto body = json::parse(r.body);
  CHECK(body.contains("code"));
  CHECK(body.contains("message"));
}

}  // namespace

TEST_CASE("GET /api/v1/daemon reports version, id, supervisor and state", "[api]") {
  Fixture f;
  auto info = f.get_json("/api/v1/daemon");
  CHECK(info["state"] == "INIT");
  CHECK(info["id"] == "daemon-1");
  CHECK(info["supervisor"] == (f.tmp / "supervisor.sock").string());
  for (const char* key : {"package_ver", "git_commit", "build_time", "profile", "rustc"}) {
    CHECK(info["version"].contains(key));
  }
  CHECK(info["backend_collection"].is_object());
  CHECK(f.get_json("/api/v2/daemon")["backend_collection"].is_null());
}

TEST_CASE("routing: unknown path 404, wrong method 400", "[api]") {
  Fixture f;
  check_error(call(*f.router, "GET", "/api/v1/nothing"), 404);
  check_error(call(*f.router, "POST", "/api/v1/daemon"), 400);
  check_error(call(*f.router, "GET", "/api/v1/daemon/start"), 400);
  check_error(call(*f.router, "DELETE", "/api/v1/metrics"), 400);
}

TEST_CASE("PUT /api/v1/daemon sets the log level", "[api]") {
  Fixture f;
  auto before = spdlog::get_level();
  CHECK(call(*f.router, "PUT", "/api/v1/daemon", R"({"log_level":"debug"})").status == 204);
  CHECK(spdlog::get_level() == spdlog::level::debug);
  CHECK(call(*f.router, "PUT", "/api/v2/daemon", R"({"log_level":"info"})").status == 204);
  check_error(call(*f.router, "PUT", "/api/v1/daemon", R"({"log_level":"loud"})"), 400);
  check_error(call(*f.router, "PUT", "/api/v1/daemon", R"({"log_level":)"), 400);
  check_error(call(*f.router, "PUT", "/api/v1/daemon", R"({"level":"info"})"), 400);
  check_error(call(*f.router, "PUT", "/api/v1/daemon", ""), 400);
  spdlog::set_level(before);
}

TEST_CASE("state actions in the wrong state are 400 and change nothing", "[api]") {
  Fixture f;
  check_error(call(*f.router, "PUT", "/api/v1/daemon/start"), 400);
  CHECK(f.daemon->state() == DaemonState::kInit);
  // Strict bodies: action endpoints take none.
  check_error(call(*f.router, "PUT", "/api/v1/daemon/start", "{}"), 400);
  check_error(call(*f.router, "PUT", "/api/v1/daemon/exit", "{}"), 400);
  CHECK(f.daemon->state() == DaemonState::kInit);
}

TEST_CASE("sendfd is 503 before FUSE INIT -- a failed takeover leaves the state", "[api]") {
  Fixture f;
  check_error(call(*f.router, "PUT", "/api/v1/daemon/fuse/sendfd"), 503);
  // Nobody listens on the supervisor socket: a clear error, still INIT, retryable.
  check_error(call(*f.router, "PUT", "/api/v1/daemon/fuse/takeover"), 404);
  CHECK(f.daemon->state() == DaemonState::kInit);
  check_error(call(*f.router, "PUT", "/api/v1/daemon/fuse/takeover"), 404);
  CHECK(f.daemon->state() == DaemonState::kInit);
  auto info = f.get_json("/api/v1/daemon");
  CHECK(info["takeovers"] == 0);
  CHECK(info["requests_resent"] == 0);
  CHECK(info["last_restore_duration_ms"].is_null());
  check_error(call(*f.router, "PUT", "/api/v1/daemon/fuse/takeover", "x"), 400);
  check_error(call(*f.router, "PUT", "/api/v2/blobs", "{}"), 501);
  check_error(call(*f.router, "GET", "/api/v2/blobs"), 501);
}

TEST_CASE("sendfd and takeover without --supervisor are 400, never a crash", "[api]") {
  testing::TempDir tmp;
  DaemonOptions options;
  options.mountpoint = (tmp / "mnt").string();
  auto daemon = std::move(Daemon::create(options).value());
  auto router = build_api_router(*daemon);
  auto r = call(router, "PUT", "/api/v1/daemon/fuse/sendfd");
  check_error(r, 400);
  CHECK(r.body.find("supervisor") != std::string::npos);
  check_error(call(router, "PUT", "/api/v1/daemon/fuse/takeover"), 400);
  CHECK(daemon->state() == DaemonState::kInit);
}

TEST_CASE("mount API: bad input", "[api]") {
  Fixture f;
  auto work = (f.tmp / "cache").string();
  check_error(call(*f.router, "POST", "/api/v1/mount", mount_body(work)), 400);  // no mountpoint
  check_error(call(*f.router, "POST", "/api/v1/mount?mountpoint=/a", "{not json"), 400);
  check_error(call(*f.router, "POST", "/api/v1/mount?mountpoint=/a", "[]"), 400);
  check_error(call(*f.router, "POST", "/api/v1/mount?mountpoint=/a", R"({"fs_type":"rafs","config":"{}"})"),
              400);
  check_error(call(*f.router, "POST", "/api/v1/mount?mountpoint=/a",
                   R"({"source":"/x","fs_type":"rafs","config":"{oops"})"),
              400);
  check_error(call(*f.router, "POST", "/api/v1/mount?mountpoint=relative", mount_body(work)), 400);
  check_error(call(*f.router, "POST", "/api/v1/mount?mountpoint=/a", mount_body(work, kSampleBoot, "ftp")),
              400);
  check_error(
      call(*f.router, "POST", "/api/v1/mount?mountpoint=/a", mount_body(work, kSampleBoot, "registry")),
      501);
  check_error(call(*f.router, "POST", "/api/v1/mount?mountpoint=/a",
                   mount_body(work, (f.tmp / "missing.boot").string())),
              404);
  auto passthrough = json::parse(mount_body(work));
  passthrough["fs_type"] = "passthroughfs";
  check_error(call(*f.router, "POST", "/api/v1/mount?mountpoint=/a", passthrough.dump()), 501);
  auto bad_prefetch = json::parse(mount_body(work));
  bad_prefetch["prefetch_files"] = {"relative"};
  check_error(call(*f.router, "POST", "/api/v1/mount?mountpoint=/a", bad_prefetch.dump()), 400);
  CHECK(f.daemon->vfs().mounts().empty());
}

TEST_CASE("mount API: mount, report, remount, metrics, umount", "[api]") {
  Fixture f;
  auto work = (f.tmp / "cache").string();
  auto body = json::parse(mount_body(work));
  body["prefetch_files"] = {"/lib.rs"};
  REQUIRE(call(*f.router, "POST", "/api/v1/mount?mountpoint=/sub", body.dump()).status == 204);
  check_error(call(*f.router, "POST", "/api/v1/mount?mountpoint=/sub", body.dump()), 409);

  auto info = f.get_json("/api/v1/daemon");
  REQUIRE(info["backend_collection"].contains("/sub"));
  CHECK(info["backend_collection"]["/sub"]["backend_type"] == "Rafs");
  CHECK(info["backend_collection"]["/sub"]["config"]["digest_validate"] == true);

  auto fs = f.get_json("/api/v1/metrics?id=/sub");
  CHECK(fs["fop_hits"].size() == 15);
  CHECK(fs["fop_errors"].size() == 15);
  CHECK(fs["block_count_read"].size() == 8);
  CHECK(fs["read_latency_dist"].size() == 8);
  CHECK(fs.contains("data_read"));
  CHECK(f.get_json("/api/v1/metrics")["id"] == "/sub");  // the only one
  check_error(call(*f.router, "GET", "/api/v1/metrics?id=/nope"), 404);
  CHECK(f.get_json("/api/v1/metrics/backend?id=/sub").contains("read_count"));
  CHECK(f.get_json("/api/v1/metrics/blobcache?id=/sub").contains("underlying_files"));
  CHECK(call(*f.router, "GET", "/api/v1/metrics/inflight").status == 204);
  CHECK(f.get_json("/api/v1/daemon/backend?mountpoint=/sub")["blobs"].size() == 1);
  check_error(call(*f.router, "GET", "/api/v1/daemon/backend?mountpoint=/nope"), 404);

  REQUIRE(call(*f.router, "POST", "/api/v1/mount?mountpoint=/other", mount_body(work)).status == 204);
  check_error(call(*f.router, "GET", "/api/v1/metrics"), 404);  // two mounts: name one

  CHECK(call(*f.router, "PUT", "/api/v1/mount?mountpoint=/sub", mount_body(work)).status == 204);
  check_error(call(*f.router, "PUT", "/api/v1/mount?mountpoint=/nope", mount_body(work)), 404);

  check_error(call(*f.router, "DELETE", "/api/v1/mount?mountpoint=/sub", "{}"), 400);
  check_error(call(*f.router, "DELETE", "/api/v1/mount"), 400);
  CHECK(call(*f.router, "DELETE", "/api/v1/mount?mountpoint=/sub").status == 204);
  check_error(call(*f.router, "DELETE", "/api/v1/mount?mountpoint=/sub"), 404);
  CHECK_FALSE(f.get_json("/api/v1/daemon")["backend_collection"].contains("/sub"));
}

TEST_CASE("PUT /api/v1/daemon/exit stops the daemon without unmounting", "[api]") {
  Fixture f;
  CHECK(call(*f.router, "PUT", "/api/v1/daemon/exit").status == 204);
  CHECK(f.daemon->state() == DaemonState::kStopped);
  CHECK(f.daemon->exit_reason() == ExitReason::kExitForUpgrade);
  CHECK(f.get_json("/api/v1/daemon")["state"] == "STOPPED");
  check_error(call(*f.router, "POST", "/api/v1/mount?mountpoint=/a", mount_body((f.tmp / "c").string())),
              400);
}
