#include "common/version.h"

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

namespace nydus {

const BuildInfo& build_info() {
  static const BuildInfo info{
      NYDUS_PACKAGE_VERSION,
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

}  // namespace nydus
