// The snapshotter's side of nydusd's control API (HTTP/1.1 on --apisock,
// reference-nydusd.md §2, reference-snapshotter.md §4.2), behind an
// interface so unit tests replace the other process with a fake.
//
// Calls used:
//   GET    /api/v1/daemon                       -> {"id","version":{...},"state"}
//   POST   /api/v1/mount?mountpoint=/<snapID>   body {"source","fs_type":"rafs","config":"<json string>"}
//   DELETE /api/v1/mount?mountpoint=/<snapID>
//   PUT    /api/v1/daemon/{start,exit,fuse/sendfd,fuse/takeover}   (failover and upgrade; no body)
//   PUT    /api/v2/blobs                         body: a BlobCacheEntry (fscache daemons)
//   DELETE /api/v2/blobs?domain_id=D&blob_id=B
// Success is 200 or 204; errors carry {"code","message"}.
//
// Liveness: connect_watch() opens a connection that is never written to.
// nydusd's server never closes an idle connection, so its hang-up means the
// API server (normally the whole process) is gone.
//
// Thread safety: an HttpDaemonClient may be used from several threads
// (HttpClient serializes requests).
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "common/http.h"
#include "common/result.h"
#include "common/unique_fd.h"

namespace nydus::snapshotter {

// nydusd's reported states (DIED is ours: the process is gone).
inline constexpr std::string_view kStateInit = "INIT";
inline constexpr std::string_view kStateReady = "READY";
inline constexpr std::string_view kStateRunning = "RUNNING";

// One API request may take this long (the reference: 30 s).
inline constexpr std::chrono::milliseconds kDaemonRequestTimeout{30000};

struct DaemonInfo {
  std::string id;
  std::string state;
  nlohmann::json version = nlohmann::json::object();  // {"package_ver","git_commit",...}
};

class DaemonClient {
 public:
  virtual ~DaemonClient() = default;
  virtual const std::string& api_socket() const = 0;

  // GET /api/v1/daemon. A missing or refusing socket is kNotReady (the
  // daemon is not serving yet, or any more).
  virtual Result<DaemonInfo> get_info(std::chrono::milliseconds timeout = kDaemonRequestTimeout) = 0;
  // POST /api/v1/mount (shared daemons): `vpath` is "/<snapID>".
  virtual Status mount(const std::string& vpath, const std::string& bootstrap, const std::string& config_json) = 0;
  // DELETE /api/v1/mount.
  virtual Status umount(const std::string& vpath) = 0;

  // fscache (singleton) daemons: bind a bootstrap (PUT /api/v2/blobs) and
  // unbind it (DELETE /api/v2/blobs; an unknown one is kNotFound).
  virtual Status bind_blob(const nlohmann::json& entry) = 0;
  virtual Status unbind_blob(const std::string& domain_id, const std::string& blob_id) = 0;

  // For failover and hot upgrade.
  virtual Status start() = 0;     // PUT /api/v1/daemon/start
  virtual Status exit() = 0;      // PUT /api/v1/daemon/exit (stop serving, never unmount)
  virtual Status send_fd() = 0;   // PUT /api/v1/daemon/fuse/sendfd
  virtual Status takeover() = 0;  // PUT /api/v1/daemon/fuse/takeover

  // A fresh idle connection to watch for hang-up (see the header comment).
  virtual Result<UniqueFd> connect_watch() = 0;
};

// Makes the client of a daemon's API socket.
class DaemonClientFactory {
 public:
  virtual ~DaemonClientFactory() = default;
  virtual std::unique_ptr<DaemonClient> make(const std::string& api_socket) = 0;
};

// The real client over a unix socket.
class HttpDaemonClient final : public DaemonClient {
 public:
  explicit HttpDaemonClient(std::string api_socket);
  const std::string& api_socket() const override { return api_socket_; }
  Result<DaemonInfo> get_info(std::chrono::milliseconds timeout) override;
  Status mount(const std::string& vpath, const std::string& bootstrap, const std::string& config_json) override;
  Status umount(const std::string& vpath) override;
  Status bind_blob(const nlohmann::json& entry) override;
  Status unbind_blob(const std::string& domain_id, const std::string& blob_id) override;
  Status start() override;
  Status exit() override;
  Status send_fd() override;
  Status takeover() override;
  Result<UniqueFd> connect_watch() override;

 private:
  Status put_no_body(const std::string& path);

  std::string api_socket_;
  HttpClient http_;
};

class HttpDaemonClientFactory final : public DaemonClientFactory {
 public:
  std::unique_ptr<DaemonClient> make(const std::string& api_socket) override {
    return std::make_unique<HttpDaemonClient>(api_socket);
  }
};

// Decodes a GET /api/v1/daemon body. A body without a string "state" is
// kCorrupt.
Result<DaemonInfo> parse_daemon_info(const nlohmann::json& body);

}  // namespace nydus::snapshotter
