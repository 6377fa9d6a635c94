// What `nydusd --version` and GET /api/v1/daemon report about this build.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "common/version.h"

namespace nydus::daemon {

// The build stamp lives in common/version.h; nydusd code names it from here.
using ::nydus::BuildInfo;
using ::nydus::build_info;

// The reference's lines: "Version:", "Git Commit:", "Build Time:", "Profile:",
// and "Compiler:" where the reference has "Rustc:".
std::string version_text();

// {"package_ver","git_commit","build_time","profile","rustc"}
nlohmann::json version_json();

}  // namespace nydus::daemon
