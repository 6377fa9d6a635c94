#include "nydusd/daemon/version.h"

#include <fmt/format.h>

namespace nydus::daemon {

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
