// The system API's HTTP shell; the wire contract is in system_api.h.
#include "snapshotter/system_api.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <spdlog/spdlog.h>

namespace nydus::snapshotter {
namespace {

nlohmann::json optional_ms(const std::optional<double>& ms) {
  return ms ? nlohmann::json(*ms) : nlohmann::json(nullptr);
}

// The optional string field `name` of `body`; absent or null -> "".
Result<std::string> optional_string(const nlohmann::json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return std::string();
  if (!it->is_string()) {
    return make_error(ErrorKind::kInvalidArgument, "\"{}\" must be a string", name);
  }
  return it->get<std::string>();
}

// The new binary must be something exec() can start: checked here so a typo
// is a 400 to the operator instead of N failed daemon upgrades.
Status check_executable(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    int err = errno;
    return make_error(ErrorKind::kInvalidArgument, "nydusd_path {}: {}", path, std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    return make_error(ErrorKind::kInvalidArgument, "nydusd_path {} is not a regular file", path);
  }
  if (::access(path.c_str(), X_OK) != 0) {
    return make_error(ErrorKind::kInvalidArgument, "nydusd_path {} is not executable", path);
  }
  return ok_status();
}

HttpResponse handle_daemons(SystemBackend& backend) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& view : backend.daemons()) out.push_back(daemon_view_to_json(view));
  return json_response(200, out);
}

HttpResponse handle_records(SystemBackend& backend) {
  return json_response(200, backend.daemon_records());
}

HttpResponse handle_upgrade(SystemBackend& backend, const HttpRequest& request) {
  auto parsed = parse_upgrade_request(request.body);
  if (!parsed.ok()) return error_response(parsed.error());
  const UpgradeRequest& upgrade = parsed.value();
  spdlog::info("system api: upgrade to {} (version '{}', policy '{}')", upgrade.nydusd_path,
                 upgrade.version, upgrade.policy);

  auto results = backend.upgrade(upgrade);
  if (!results.ok()) {
    spdlog::warn("system api: upgrade refused: {}", results.error().message());
    return error_response(results.error());
  }

  nlohmann::json daemons = nlohmann::json::array();
  std::vector<std::string> failed;
  for (const auto& r : results.value()) {
    daemons.push_back(upgrade_result_to_json(r));
    if (!r.ok) failed.push_back(fmt::format("{} ({})", r.id, r.error));
  }
  nlohmann::json body = {
      {"ok", failed.empty()},
      {"failed", failed.size()},
      {"daemons", std::move(daemons)},
  };
  if (failed.empty()) {
    body["message"] = fmt::format("upgraded {} daemon(s) to {}", results->size(), upgrade.nydusd_path);
    return json_response(200, body);
  }
  // A partial upgrade is a server-side failure: 500 with the usual error
  // fields, so a client that only reads {"code","message"} still learns what
  // failed, and the per-daemon results for those that read more.
  body["code"] = error_kind_name(ErrorKind::kInternal);
  body["message"] = fmt::format("upgrade to {} failed for {} of {} daemon(s): {}",
                                upgrade.nydusd_path, failed.size(), results->size(),
                                fmt::join(failed, "; "));
  spdlog::warn("system api: {}", body["message"].get<std::string>());
  return json_response(500, body);
}

}  // namespace

nlohmann::json daemon_view_to_json(const DaemonView& view) {
  return {
      {"id", view.id},
      {"pid", view.pid},
      {"state", view.state},
      {"api_socket", view.api_socket},
      {"supervisor", view.supervisor},
      {"mountpoints", view.mountpoints},
      {"binary_path", view.binary_path},
      {"version", view.version},
      {"fs_driver", view.fs_driver},
      {"recovery_count", view.recovery_count},
      {"last_failover_ms", optional_ms(view.last_failover_ms)},
      {"last_upgrade_ms", optional_ms(view.last_upgrade_ms)},
  };
}

nlohmann::json upgrade_result_to_json(const DaemonUpgradeResult& result) {
  return {
      {"id", result.id},
      {"ok", result.ok},
      {"error", result.error},
      {"old_pid", result.old_pid},
      {"new_pid", result.new_pid},
      {"switch_ms", result.switch_ms},
  };
}

Result<UpgradeRequest> parse_upgrade_request(const std::string& body) {
  if (body.empty()) {
    return make_error(ErrorKind::kInvalidArgument,
                      "empty body: expected {{\"nydusd_path\":\"/abs/path\"}}");
  }
  nlohmann::json json = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) {
    return make_error(ErrorKind::kInvalidArgument, "malformed JSON body");
  }
  if (!json.is_object()) {
    return make_error(ErrorKind::kInvalidArgument, "body must be a JSON object");
  }
  UpgradeRequest request;
  auto path = json.find("nydusd_path");
  if (path == json.end() || !path->is_string() || path->get<std::string>().empty()) {
    return make_error(ErrorKind::kInvalidArgument, "\"nydusd_path\" (a non-empty string) is required");
  }
  request.nydusd_path = path->get<std::string>();
  if (request.nydusd_path.front() != '/') {
    return make_error(ErrorKind::kInvalidArgument, "nydusd_path {} is not absolute",
                      request.nydusd_path);
  }
  NYDUS_TRY(check_executable(request.nydusd_path));
  NYDUS_ASSIGN_OR_RETURN(request.version, optional_string(json, "version"));
  NYDUS_ASSIGN_OR_RETURN(request.policy, optional_string(json, "policy"));
  return request;
}

Router make_system_api_router(SystemBackend& backend) {
  Router router;  // wrong method -> 405, as the reference's gorilla/mux answers
  router.add("GET", "/api/v1/daemons", [&backend](const HttpRequest&) {
    return handle_daemons(backend);
  });
  router.add("GET", "/api/v1/daemons/records", [&backend](const HttpRequest&) {
    return handle_records(backend);
  });
  auto upgrade = [&backend](const HttpRequest& request) { return handle_upgrade(backend, request); };
  router.add("PUT", "/api/v1/nydusd/upgrade", upgrade);
  router.add("PUT", "/api/v1/daemons/upgrade", upgrade);
  return router;
}

SystemApiServer::~SystemApiServer() { stop(); }

void SystemApiServer::stop() {
  if (!server_) return;
  server_->stop();
  server_.reset();
  // HttpServer leaves the file for nydusd's crash detection; the system
  // socket has no such use, and a stale file would look like a live API.
  if (::unlink(socket_path_.c_str()) != 0 && errno != ENOENT) {
    spdlog::warn("system api: remove {}: {}", socket_path_, std::strerror(errno));
  }
}

Result<std::unique_ptr<SystemApiServer>> start_system_api(const std::string& socket_path,
                                                          SystemBackend& backend) {
  HttpServerOptions options;
  options.socket_mode = 0600;  // upgrades exec binaries: root's business only
  options.body_limit = kSystemApiBodyLimit;
  auto server = std::make_unique<HttpServerThread>(socket_path, make_system_api_router(backend),
                                                   options, /*threads=*/1);
  if (auto st = server->start(); !st.ok()) {
    return std::move(st).error().wrap(fmt::format("system api on {}", socket_path));
  }
  spdlog::info("system api listening on {}", socket_path);
  return std::unique_ptr<SystemApiServer>(new SystemApiServer(socket_path, std::move(server)));
}

}  // namespace nydus::snapshotter
