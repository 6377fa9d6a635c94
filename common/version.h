// What this build is: stamped once by CMake (common/CMakeLists.txt) and used
// by every binary's --version and by nydusd's API and saved state.
#pragma once

#include <string>

namespace nydus {

struct BuildInfo {
  std::string version;      // "0.1.0" (PROJECT_VERSION)
  std::string package_ver;  // "v0.1.0", as the reference prints it
  std::string git_commit;   // short commit at configure time, or "unknown"
  std::string build_time;   // configure time, UTC
  std::string profile;      // CMAKE_BUILD_TYPE
  std::string compiler;     // "gcc 12.2.0"
};

const BuildInfo& build_info();

}  // namespace nydus
