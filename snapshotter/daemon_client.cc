#include "snapshotter/daemon_client.h"

#include "common/unix_socket.h"

namespace nydus::snapshotter {

using nlohmann::json;

Result<DaemonInfo> parse_daemon_info(const json& body) {
  if (!body.is_object() || !body.contains("state") || !body["state"].is_string()) {
    return make_error(ErrorKind::kCorrupt, "GET /api/v1/daemon: no \"state\" in {}", body.dump().substr(0, 200));
  }
  DaemonInfo info;
  info.state = body["state"].get<std::string>();
  if (body.contains("id") && body["id"].is_string()) info.id = body["id"].get<std::string>();
  if (body.contains("version") && body["version"].is_object()) info.version = body["version"];
  return info;
}

HttpDaemonClient::HttpDaemonClient(std::string api_socket) : api_socket_(std::move(api_socket)), http_(api_socket_) {}

Result<DaemonInfo> HttpDaemonClient::get_info(std::chrono::milliseconds timeout) {
  auto body = http_.request_json("GET", "/api/v1/daemon", std::nullopt, timeout);
  if (!body.ok()) return std::move(body).error().wrap(fmt::format("nydusd {}: GET /api/v1/daemon", api_socket_));
  return parse_daemon_info(*body);
}

Status HttpDaemonClient::mount(const std::string& vpath, const std::string& bootstrap, const std::string& config_json) {
  json body = {{"source", bootstrap}, {"fs_type", "rafs"}, {"config", config_json}};
  auto r = http_.request_json("POST", "/api/v1/mount?mountpoint=" + url_encode(vpath), body, kDaemonRequestTimeout);
  if (!r.ok()) return std::move(r).error().wrap(fmt::format("nydusd {}: mount {} at {}", api_socket_, bootstrap, vpath));
  return ok_status();
}

Status HttpDaemonClient::umount(const std::string& vpath) {
  auto r = http_.request_json("DELETE", "/api/v1/mount?mountpoint=" + url_encode(vpath), std::nullopt,
                              kDaemonRequestTimeout);
  if (!r.ok()) return std::move(r).error().wrap(fmt::format("nydusd {}: umount {}", api_socket_, vpath));
  return ok_status();
}

Status HttpDaemonClient::bind_blob(const json& entry) {
  auto r = http_.request_json("PUT", "/api/v2/blobs", entry, kDaemonRequestTimeout);
  if (!r.ok()) {
    return std::move(r).error().wrap(fmt::format("nydusd {}: binding {}", api_socket_, entry.value("id", "?")));
  }
  return ok_status();
}

Status HttpDaemonClient::unbind_blob(const std::string& domain_id, const std::string& blob_id) {
  auto r = http_.request_json("DELETE", fmt::format("/api/v2/blobs?domain_id={}&blob_id={}", url_encode(domain_id),
                                                    url_encode(blob_id)),
                              std::nullopt, kDaemonRequestTimeout);
  if (!r.ok()) return std::move(r).error().wrap(fmt::format("nydusd {}: unbinding {}", api_socket_, blob_id));
  return ok_status();
}

Status HttpDaemonClient::put_no_body(const std::string& path) {
  auto r = http_.request_json("PUT", path, std::nullopt, kDaemonRequestTimeout);
  if (!r.ok()) return std::move(r).error().wrap(fmt::format("nydusd {}: PUT {}", api_socket_, path));
  return ok_status();
}

Status HttpDaemonClient::start() { return put_no_body("/api/v1/daemon/start"); }
Status HttpDaemonClient::exit() { return put_no_body("/api/v1/daemon/exit"); }
Status HttpDaemonClient::send_fd() { return put_no_body("/api/v1/daemon/fuse/sendfd"); }
Status HttpDaemonClient::takeover() { return put_no_body("/api/v1/daemon/fuse/takeover"); }

Result<UniqueFd> HttpDaemonClient::connect_watch() { return connect_unix(api_socket_); }

}  // namespace nydus::snapshotter
