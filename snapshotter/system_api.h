// The snapshotter's system API: HTTP/1.1 on the unix socket `system.address`
// (default /run/containerd-nydus/system.sock, mode 0600). Operators and tools
// (nydusctl --system, the demo) use it to list daemons and hot-upgrade nydusd.
//
// This module is only the HTTP shell: it parses and validates requests,
// calls SystemBackend (snapshotter/system_backend.h) and renders answers.
//
// Routes (a wrong method on a known path -> 405, an unknown path -> 404, a
// body over kSystemApiBodyLimit -> 413; every error body is
// {"code":"<ErrorKind name>","message":"..."}):
//
//   GET /api/v1/daemons          200, JSON array of DaemonView objects:
//       {"id","pid","state","api_socket","supervisor","mountpoints":[..],
//        "binary_path","version","fs_driver","recovery_count",
//        "last_failover_ms","last_upgrade_ms"}   (the *_ms are null if never)
//   GET /api/v1/daemons/records  200, the backend's raw records (JSON as stored).
//       (The reference answers 501 here; we serve what we have.)
//   PUT /api/v1/nydusd/upgrade   (the name the reference's docs use) and
//   PUT /api/v1/daemons/upgrade  (the name the reference registers):
//       request  {"nydusd_path":"/abs/path", "version":"..", "policy":".."}
//                version and policy are optional strings.
//       400  malformed JSON, a non-object body, a missing/non-string/relative
//            nydusd_path, a path that is not a regular file executable by us,
//            a non-string version/policy.
//       backend refusal (an Error from SystemBackend::upgrade, e.g. another
//            upgrade running) -> that error's HTTP status and body.
//       otherwise the body is
//          {"ok":bool, "failed":N, "daemons":[{"id","ok","error","old_pid",
//           "new_pid","switch_ms"}], "message":".."}
//       with status 200 when every daemon upgraded (or there were none), and
//       500 when any daemon failed, because a partial upgrade is a server-side
//       failure the caller must notice; "message" names the failed daemons and
//       each failed entry's "error" says which step failed (that daemon's old
//       nydusd still serves). 500 also keeps reference clients working: they
//       treat any non-200 as failure.
//
// Threading: the server runs on one io thread of its own, so backend calls
// are serialized (an upgrade blocks listing until it finishes, as in the
// reference). The backend must outlive the SystemApiServer.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "common/http.h"
#include "common/result.h"
#include "snapshotter/system_backend.h"

namespace nydus::snapshotter {

// Bodies are small JSON objects; anything bigger is a mistake or an attack.
inline constexpr std::uint64_t kSystemApiBodyLimit = 64 * 1024;

// JSON renderings, shared with nydusctl's --json output and tests.
nlohmann::json daemon_view_to_json(const DaemonView& view);
nlohmann::json upgrade_result_to_json(const DaemonUpgradeResult& result);

// Parses and validates an upgrade request body (see the header comment).
// Errors are kInvalidArgument. Checks the file system for nydusd_path.
Result<UpgradeRequest> parse_upgrade_request(const std::string& body);

// The routes above as a Router over `backend` (no socket; `backend` must
// outlive the Router).
Router make_system_api_router(SystemBackend& backend);

// A running system API server. RAII: the destructor stops the server, joins
// its thread and removes the socket file.
class SystemApiServer {
 public:
  ~SystemApiServer();
  SystemApiServer(const SystemApiServer&) = delete;
  SystemApiServer& operator=(const SystemApiServer&) = delete;

  const std::string& socket_path() const { return socket_path_; }
  // Stops serving and removes the socket file; idempotent.
  void stop();

 private:
  friend Result<std::unique_ptr<SystemApiServer>> start_system_api(const std::string&,
                                                                   SystemBackend&);
  SystemApiServer(std::string socket_path, std::unique_ptr<HttpServerThread> server)
      : socket_path_(std::move(socket_path)), server_(std::move(server)) {}

  std::string socket_path_;
  std::unique_ptr<HttpServerThread> server_;
};

// Creates the parent directory if needed, removes a stale socket file, binds
// `socket_path` with mode 0600 and serves on a thread of its own. Errors
// (bind failure, ...) come back before any thread starts. Ownership of the
// socket's uid/gid (system.uid/gid) is left to the caller (chown after start).
Result<std::unique_ptr<SystemApiServer>> start_system_api(const std::string& socket_path,
                                                          SystemBackend& backend);

}  // namespace nydus::snapshotter
