#include "nydusd/daemon/version.h"

#include <fmt/format.h>

#ifndef NYDUS_PACKAGE_VERSION
#define NYDUS_PACKAGE_VERSION "0.0.0"
#endif
#ifndef NYDUS_GIT_COMMIT
#define NYDUS_GIT_COMMIT "unknown"
#endif
#ifndef NYDUS_BUILD_TIME
#define NYDUS_BUILD_TIME "unknown"
#endif
#ifndef NYDUS_BUILD_PROFILE
#define NYDUS_BUILD_PROFILE "unknown"
#endif

namespace nydus::daemon {

const BuildInfo& build_info() {
  static const BuildInfo info{
      std::string("v") + NYDUS_PACKAGE_VERSION,
      NYDUS_GIT_COMMIT,
      NYDUS_BUILD_TIME,
      NYDUS_BUILD_PROFILE,
#if defined(__clang__)
      "clang " __clang_version__,
#elif defined(__GNUC__)
      "gcc " __VERSION__,
#else
      "unknown",
#endif
  };
  return info;
}

std::string version_text() {
  const auto& info = build_info();
  return fmt::format(
      "Version: \t{}\nGit Commit: \t{}\nBuild Time: \t{}\nProfile: \t{}\nCompiler: \t{}\n",
      info.package_ver, info.git_commit, info.build_time, info.profile, info.compiler);
}

nlohmann::json version_json() {
  const auto& info = build_info();
  return {{"package_ver", info.package_ver},
          {"git_commit", info.git_commit},
          {"build_time", info.build_time},
          {"profile", info.profile},
          {"rustc", info.compiler}};
}

}  // namespace nydus::daemon
