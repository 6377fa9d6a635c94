// The control API as a pure Router over a real Daemon that has mounted nothing
// in the kernel (no privileges needed): every endpoint with good and bad input.
#include <catch2/catch.hpp>

#include <spdlog/spdlog.h>

#include <fcntl.h>

#include <fstream>
#include <sstream>

#include "common/fd_passing.h"
#include "nydusd/daemon/api.h"
#include "nydusd/daemon/cli.h"
#include "nydusd/daemon/takeover.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_supervisor.h"

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

// A daemon created from `options` and its API router, over a temporary
// directory.
struct DaemonApi {
  void start(const DaemonOptions& options) {
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

struct Fixture : DaemonApi {
  Fixture() {
    DaemonOptions options;
    options.mountpoint = (tmp / "mnt").string();
    options.id = "daemon-1";
    options.supervisor = (tmp / "supervisor.sock").string();
    start(options);
  }
};

void check_error(const HttpResponse& r, int status) {
  INFO(r.body);
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

// ---------------------------------------------------------------------------
// Singleton (fscache) mode, without the kernel: a daemon started with
// --upgrade binds nothing in /dev/cachefiles, so the blob API, the takeover
// of a saved fscache state and the save can be driven here. Serving is
// tested in the VM (tests/vm/fscache_e2e_test.cc).

namespace {

json blob_entry(const std::string& id, const std::string& domain, const std::string& work_dir,
                const std::string& boot = kSampleBoot) {
  return {{"type", "bootstrap"},
          {"id", id},
          {"domain_id", domain},
          {"config_v2",
           {{"version", 2},
            {"id", id},
            {"backend", {{"type", "localfs"}, {"localfs", {{"dir", kSampleDir}}}}},
            {"cache", {{"type", "fscache"}, {"fscache", {{"work_dir", work_dir}}}}},
            {"metadata_path", boot}}}};
}

struct SingletonFixture : DaemonApi {
  SingletonFixture() {
    DaemonOptions options;
    options.mode = DaemonMode::kSingleton;
    options.upgrade = true;
    options.id = "fsc-1";
    options.supervisor = (tmp / "supervisor.sock").string();
    options.fscache.threads = 2;
    start(options);
  }
};

}  // namespace

TEST_CASE("singleton: PUT DELETE GET /api/v2/blobs with good and hostile input", "[api][fscache]") {
  SingletonFixture f;
  const std::string work = (f.tmp / "work").string();
  auto info = f.get_json("/api/v1/daemon");
  CHECK(info["mode"] == "singleton");
  CHECK(info["state"] == "INIT");
  CHECK(info["fscache"]["bootstraps"] == 0);
  CHECK(info["fscache"]["metrics"].is_null());

  // Hostile bodies: 4xx with {"code","message"}, nothing bound.
  check_error(call(*f.router, "PUT", "/api/v2/blobs"), 400);
  check_error(call(*f.router, "PUT", "/api/v2/blobs", "{not json"), 400);
  check_error(call(*f.router, "PUT", "/api/v2/blobs", "[]"), 400);
  check_error(call(*f.router, "PUT", "/api/v2/blobs", "{}"), 400);
  check_error(call(*f.router, "PUT", "/api/v2/blobs", std::string("\0\xff\x01", 3)), 400);
  auto bad = blob_entry("a/b", "dom", work);
  check_error(call(*f.router, "PUT", "/api/v2/blobs", bad.dump()), 400);
  bad = blob_entry("img", "dom", work);
  bad["type"] = "datablob";
  check_error(call(*f.router, "PUT", "/api/v2/blobs", bad.dump()), 400);
  bad = blob_entry("img", "dom", work);
  bad["config_v2"]["backend"] = 7;
  check_error(call(*f.router, "PUT", "/api/v2/blobs", bad.dump()), 400);
  check_error(call(*f.router, "PUT", "/api/v2/blobs", blob_entry("img", "dom", work, "/nonexistent.boot").dump()), 404);
  const std::string garbage = (f.tmp / "garbage.boot").string();
  std::ofstream(garbage) << std::string(8192, 'x');
  auto r = call(*f.router, "PUT", "/api/v2/blobs", blob_entry("img", "dom", work, garbage).dump());
  INFO(r.body);
  check_error(r, 400);
  CHECK(f.get_json("/api/v2/blobs")["blobs"].empty());

  // Bind, refuse a duplicate, list (all, per domain).
  CHECK(call(*f.router, "PUT", "/api/v2/blobs", blob_entry("img", "dom", work).dump()).status == 204);
  check_error(call(*f.router, "PUT", "/api/v2/blobs", blob_entry("img", "dom", work).dump()), 409);
  CHECK(call(*f.router, "PUT", "/api/v2/blobs", blob_entry("img2", "", work).dump()).status == 204);
  auto listed = f.get_json("/api/v2/blobs");
  REQUIRE(listed["blobs"].size() == 2);
  CHECK(listed["blobs"][0]["id"] == "img");
  CHECK(f.get_json("/api/v2/blobs?domain_id=dom")["blobs"].size() == 1);
  CHECK(f.get_json("/api/v2/blobs?domain_id=other")["blobs"].empty());
  info = f.get_json("/api/v1/daemon");
  CHECK(info["fscache"]["bootstraps"] == 2);
  CHECK(info["fscache"]["data_blobs"] == 2);  // the sample's one blob, in two domains

  // Unbind: bad queries are 4xx, the cull form is 501, unknown is 404.
  check_error(call(*f.router, "DELETE", "/api/v2/blobs"), 400);
  check_error(call(*f.router, "DELETE", "/api/v2/blobs?domain_id=dom", "{}"), 400);
  check_error(call(*f.router, "DELETE", "/api/v2/blobs?blob_id=img"), 501);
  check_error(call(*f.router, "DELETE", "/api/v2/blobs?domain_id=dom&blob_id=a/b"), 400);
  check_error(call(*f.router, "DELETE", "/api/v2/blobs?domain_id=nosuch"), 404);
  check_error(call(*f.router, "DELETE", "/api/v2/blobs?domain_id=dom&blob_id=nosuch"), 404);
  CHECK(call(*f.router, "DELETE", "/api/v2/blobs?domain_id=dom&blob_id=img").status == 204);
  CHECK(call(*f.router, "DELETE", "/api/v2/blobs?domain_id=img2").status == 204);
  CHECK(f.get_json("/api/v2/blobs")["blobs"].empty());

  // No FUSE mounts in this mode; nothing bound yet to save; Start needs READY.
  check_error(call(*f.router, "POST", "/api/v1/mount?mountpoint=/x", mount_body(work)), 501);
  check_error(call(*f.router, "DELETE", "/api/v1/mount?mountpoint=/x"), 501);
  check_error(call(*f.router, "PUT", "/api/v1/daemon/fuse/sendfd"), 503);
  check_error(call(*f.router, "PUT", "/api/v1/daemon/start"), 400);
  // Nobody listens on the supervisor socket: a clear error, still INIT.
  check_error(call(*f.router, "PUT", "/api/v1/daemon/fuse/takeover"), 404);
  CHECK(f.daemon->state() == DaemonState::kInit);
}

TEST_CASE("singleton: takeover binds the saved entries and adopts the fd -- save sends them back", "[api][fscache]") {
  SingletonFixture f;
  const std::string work = (f.tmp / "work").string();
  testing::TestSupervisor sup(f.daemon->options().supervisor.value());
  REQUIRE(sup.start().ok());

  // What a predecessor saved: two entries and its /dev/cachefiles fd (here a
  // character device that is not one: nothing reads it before Start).
  SavedState saved;
  saved.mode = "singleton";
  saved.daemon_id = "fsc-1";
  saved.writer_version = "test";
  saved.fscache.cache_dir = "/var/cache/x";
  saved.fscache.tag = "t1";
  saved.fscache.threads = 3;
  saved.fscache.blobs.push_back({"dom", "img", blob_entry("img", "dom", work).dump()});
  saved.fscache.blobs.push_back({"", "img2", blob_entry("img2", "", work).dump()});
  auto bytes = encode_state(saved);
  UniqueFd null_fd(::open("/dev/null", O_RDWR | O_CLOEXEC));
  REQUIRE(null_fd);
  int fds[] = {null_fd.get()};
  REQUIRE(connect_and_send_message(sup.path(), bytes, fds, std::chrono::seconds(10)).ok());
  REQUIRE(sup.wait_saves(1, std::chrono::seconds(10)));

  // A state whose entry no longer binds fails the takeover, retryable, with
  // nothing kept.
  SavedState broken = saved;
  broken.fscache.blobs.push_back({"dom", "gone", blob_entry("gone", "dom", work, "/nonexistent.boot").dump()});
  sup.set_bytes(encode_state(broken));
  sup.serve_next();
  check_error(call(*f.router, "PUT", "/api/v1/daemon/fuse/takeover"), 404);
  CHECK(f.daemon->state() == DaemonState::kInit);
  CHECK(f.get_json("/api/v2/blobs")["blobs"].empty());
  // A FUSE state is refused by a singleton daemon.
  SavedState fuse_state;
  fuse_state.fuse.proto_major = 7;
  fuse_state.fuse.proto_minor = 38;
  fuse_state.fuse.max_write = 131072;
  sup.set_bytes(encode_state(fuse_state));
  sup.serve_next();
  check_error(call(*f.router, "PUT", "/api/v1/daemon/fuse/takeover"), 400);
  CHECK(f.daemon->state() == DaemonState::kInit);

  sup.set_bytes(bytes);
  sup.serve_next();
  auto r = call(*f.router, "PUT", "/api/v1/daemon/fuse/takeover");
  INFO(r.body);
  REQUIRE(r.status == 204);
  CHECK(f.daemon->state() == DaemonState::kReady);
  auto info = f.get_json("/api/v1/daemon");
  CHECK(info["state"] == "READY");
  CHECK(info["takeovers"] == 1);
  CHECK(info["fscache"]["dir"] == "/var/cache/x");
  CHECK(info["fscache"]["tag"] == "t1");
  CHECK(info["fscache"]["threads"] == 3);  // without --fscache: the adopted session's count
  CHECK(f.get_json("/api/v2/blobs")["blobs"].size() == 2);
  check_error(call(*f.router, "PUT", "/api/v1/daemon/fuse/takeover"), 400);  // READY: not again

  // Save: the entries (bind order) and a dup of the adopted fd.
  REQUIRE(call(*f.router, "PUT", "/api/v1/daemon/fuse/sendfd").status == 204);
  REQUIRE(sup.wait_saves(2, std::chrono::seconds(10)));
  CHECK(sup.has_fd());
  auto back = sup.bytes();
  auto decoded = decode_state(back);
  REQUIRE(decoded.ok());
  CHECK(decoded->mode == "singleton");
  CHECK(decoded->daemon_id == "fsc-1");
  CHECK(decoded->fscache.cache_dir == "/var/cache/x");
  REQUIRE(decoded->fscache.blobs.size() == 2);
  CHECK(decoded->fscache.blobs[0].blob_id == "img");
  CHECK(decoded->fscache.blobs[1].blob_id == "img2");
  CHECK(json::parse(decoded->fscache.blobs[0].json)["domain_id"] == "dom");
  // A bind re-saves at once.
  REQUIRE(call(*f.router, "PUT", "/api/v2/blobs", blob_entry("img3", "dom", work).dump()).status == 204);
  REQUIRE(sup.wait_saves(3, std::chrono::seconds(10)));
  CHECK(decode_state(sup.bytes())->fscache.blobs.size() == 3);
  REQUIRE(call(*f.router, "DELETE", "/api/v2/blobs?domain_id=dom").status == 204);
  REQUIRE(sup.wait_saves(4, std::chrono::seconds(10)));
  CHECK(decode_state(sup.bytes())->fscache.blobs.size() == 1);

  // Exit from READY: no Start, so no `restore` and no reads were ever made.
  REQUIRE(call(*f.router, "PUT", "/api/v1/daemon/exit").status == 204);
  CHECK(f.daemon->state() == DaemonState::kStopped);
}

TEST_CASE("singleton command line: options, defaults and clear errors", "[cli][fscache]") {
  testing::TempDir tmp;
  auto parse = [](std::vector<std::string> args, std::string* err_text = nullptr) {
    std::vector<const char*> argv = {"nydusd"};
    for (const auto& a : args) argv.push_back(a.c_str());
    std::ostringstream out, err;
    auto outcome = parse_cli(static_cast<int>(argv.size()), argv.data(), out, err);
    if (err_text) *err_text = err.str();
    return outcome;
  };
  const std::string dir = (tmp / "cache").string();
  auto ok = parse({"singleton", "--fscache", dir, "--fscache-tag", "t1", "--fscache-threads", "8", "--apisock",
                   (tmp / "api.sock").string(), "--id", "d1", "--supervisor", (tmp / "sup.sock").string()});
  REQUIRE(ok.options);
  const auto& d = ok.options->daemon;
  CHECK(d.mode == DaemonMode::kSingleton);
  CHECK(d.fscache.dir == dir);
  CHECK(d.fscache.tag == "t1");
  CHECK(d.fscache.threads == 8);
  CHECK(d.id == "d1");
  CHECK_FALSE(d.upgrade);
  auto defaults = parse({"singleton", "-F", dir});
  REQUIRE(defaults.options);
  CHECK(defaults.options->daemon.fscache.threads == fscache::kDefaultThreads);
  // A successor may omit --fscache: the dir comes from the saved state.
  auto upgrade = parse({"singleton", "--upgrade", "--apisock", (tmp / "api.sock").string()});
  REQUIRE(upgrade.options);
  CHECK(upgrade.options->daemon.upgrade);

  // --config preloads {"blobs":[...]}, checked before anything starts.
  const std::string config = (tmp / "blobs.json").string();
  std::ofstream(config) << json{{"blobs", {blob_entry("img", "dom", (tmp / "work").string())}}}.dump();
  auto preload = parse({"singleton", "--fscache", dir, "--config", config});
  REQUIRE(preload.options);
  REQUIRE(preload.options->daemon.fscache.preload.size() == 1);
  CHECK(preload.options->daemon.fscache.preload[0].id == "img");

  std::string err;
  CHECK(parse({"singleton"}, &err).exit_code == 1);
  CHECK_THAT(err, Catch::Contains("--fscache"));
  CHECK(parse({"singleton", "--fscache-tag", "t"}, &err).exit_code == 2);
  CHECK(parse({"singleton", "--fscache", dir, "--fscache-threads", "0"}, &err).exit_code == 2);
  CHECK(parse({"singleton", "--fscache", dir, "--fscache-threads", "1025"}, &err).exit_code == 2);
  CHECK(parse({"singleton", "--fscache", dir, "--id", "x"}, &err).exit_code == 2);  // --id needs --supervisor
  CHECK(parse({"singleton", "--upgrade"}, &err).exit_code == 1);                  // needs --apisock
  CHECK(parse({"singleton", "--fscache", dir, "--mountpoint", "/m"}, &err).exit_code == 2);
  std::ofstream(config) << "{\"blobs\": [{\"type\": \"bootstrap\"";
  CHECK(parse({"singleton", "--fscache", dir, "--config", config}, &err).exit_code == 1);
  CHECK_THAT(err, Catch::Contains("blobs.json"));
  std::ofstream(config) << json{{"blobs", {blob_entry("img", "dom", "/w", "/nonexistent.boot")}}}.dump();
  CHECK(parse({"singleton", "--fscache", dir, "--config", config}, &err).exit_code == 1);
  CHECK_THAT(err, Catch::Contains("nonexistent.boot"));
  CHECK(parse({"singleton", "--fscache", dir, "--config", (tmp / "missing.json").string()}, &err).exit_code == 1);
}

TEST_CASE("a fuse daemon refuses to take over a singleton state", "[api][fscache]") {
  Fixture f;
  testing::TestSupervisor sup(f.daemon->options().supervisor.value());
  REQUIRE(sup.start().ok());
  SavedState saved;
  saved.mode = "singleton";
  saved.fscache.cache_dir = "/var/cache/x";
  auto bytes = encode_state(saved);
  UniqueFd null_fd(::open("/dev/null", O_RDWR | O_CLOEXEC));
  REQUIRE(null_fd);
  int fds[] = {null_fd.get()};
  REQUIRE(connect_and_send_message(sup.path(), bytes, fds, std::chrono::seconds(10)).ok());
  REQUIRE(sup.wait_saves(1, std::chrono::seconds(10)));
  sup.serve_next();
  auto r = call(*f.router, "PUT", "/api/v1/daemon/fuse/takeover");
  check_error(r, 400);
  CHECK(r.body.find("singleton") != std::string::npos);
  CHECK(f.daemon->state() == DaemonState::kInit);
}
