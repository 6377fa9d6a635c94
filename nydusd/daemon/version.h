// What `nydusd --version` and GET /api/v1/daemon report about this build.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace nydus::daemon {

struct BuildInfo {
  std::string package_ver;  // "v0.1.0"
  std::string git_commit;   // NYDUS_GIT_COMMIT from CMake
  std::string build_time;   // configure time, UTC
  std::string profile;      // CMAKE_BUILD_TYPE
  std::string compiler;     // reported in the reference's "rustc" slot
};

const BuildInfo& build_info();

// The reference's lines: "Version:", "Git Commit:", "Build Time:", "Profile:",
// and "Compiler:" where the reference has "Rustc:".
std::string version_text();

// {"package_ver","git_commit","build_time","profile","rustc"}
nlohmann::json version_json();

}  // namespace nydus::daemon
