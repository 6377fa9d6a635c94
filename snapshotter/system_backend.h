// What the system API (system.sock) asks of the snapshotter's daemon side.
//
// The HTTP layer (system_api.{h,cc}) only parses requests and renders
// answers; the daemon manager and the recovery code implement this
// interface. Keeping the seam here lets the HTTP layer be tested for its
// status codes and bodies on its own, and the real implementation end to end.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"

namespace nydus::snapshotter {

// One daemon as GET /api/v1/daemons shows it.
struct DaemonView {
  std::string id;
  int pid = 0;
  std::string state;        // INIT, READY, RUNNING, DIED, FAILED, ...
  std::string api_socket;
  std::string supervisor;   // "" without failover
  std::vector<std::string> mountpoints;
  std::string binary_path;
  std::string version;
  std::string fs_driver;    // "fusedev" or "fscache"
  uint64_t recovery_count = 0;
  std::optional<double> last_failover_ms;
  std::optional<double> last_upgrade_ms;
};

// PUT /api/v1/nydusd/upgrade (and /api/v1/daemons/upgrade).
struct UpgradeRequest {
  std::string nydusd_path;  // validated by the HTTP layer: absolute, regular, executable
  std::string version;      // optional, informational
  std::string policy;       // optional, "" means the default (rolling)
};

// The outcome for one daemon. ok=false: the old daemon still serves
// (rollback) and `error` says which step failed.
struct DaemonUpgradeResult {
  std::string id;
  bool ok = false;
  std::string error;
  int old_pid = 0;
  int new_pid = 0;
  double switch_ms = 0;  // from the fresh save to the new daemon serving
};

class SystemBackend {
 public:
  virtual ~SystemBackend() = default;
  virtual std::vector<DaemonView> daemons() = 0;
  // The raw daemon records as stored (GET /api/v1/daemons/records).
  virtual nlohmann::json daemon_records() = 0;
  // Upgrades every daemon; an Error means the request as a whole was
  // refused (e.g. another upgrade is running: kBusy/409-style), while
  // per-daemon failures are in the results.
  virtual Result<std::vector<DaemonUpgradeResult>> upgrade(const UpgradeRequest& request) = 0;
};

}  // namespace nydus::snapshotter
