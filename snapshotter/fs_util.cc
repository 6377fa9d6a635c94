#include "snapshotter/fs_util.h"

#include "common/mount.h"

#include <sys/mount.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <utility>

#include <spdlog/spdlog.h>

namespace nydus::snapshotter {

namespace fs = std::filesystem;

Result<Usage> disk_usage(const fs::path& root) {
  std::set<std::pair<dev_t, ino_t>> seen;
  Usage usage;
  auto count = [&](const fs::path& p) -> Status {
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0) {
      // A file removed while we walk is simply gone.
      if (errno == ENOENT && p != root) return ok_status();
      return Error::from_errno(errno, fmt::format("disk usage: lstat {}", p.string()));
    }
    if (seen.emplace(st.st_dev, st.st_ino).second) usage.size += static_cast<int64_t>(st.st_blocks) * 512;
    return ok_status();
  };
  NYDUS_TRY(count(root));
  std::error_code ec;
  fs::recursive_directory_iterator it(root, fs::directory_options::none, ec), end;
  if (ec) return Error::from_errno(ec.value(), fmt::format("disk usage: reading {}", root.string()));
  for (; it != end; it.increment(ec)) {
    if (ec) break;
    NYDUS_TRY(count(it->path()));
  }
  if (ec) return Error::from_errno(ec.value(), fmt::format("disk usage: walking {}", root.string()));
  usage.inodes = static_cast<int64_t>(seen.size());
  return usage;
}


Status remove_tree(const fs::path& path) {
  for (const auto& mp : nydus::mounts_below(path.string())) {
    if (::umount2(mp.c_str(), MNT_DETACH) == 0) {
      spdlog::warn("detached leftover mount {} while removing {}", mp, path.string());
    } else if (errno != EINVAL && errno != ENOENT) {
      return Error::from_errno(errno, fmt::format("detaching {} before removing {}", mp, path.string()));
    }
  }
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) return Error::from_errno(ec.value(), fmt::format("removing {}", path.string()));
  return ok_status();
}

Result<StagedDir> StagedDir::create(const fs::path& parent) {
  std::string tmpl = (parent / (std::string(kStagingPrefix) + "XXXXXX")).string();
  if (::mkdtemp(tmpl.data()) == nullptr) {
    return Error::from_errno(errno, fmt::format("creating a staging directory in {}", parent.string()));
  }
  return StagedDir(fs::path(tmpl));
}

StagedDir::~StagedDir() {
  if (path_.empty()) return;
  auto st = remove_tree(path_);
  if (!st.ok()) spdlog::error("cleaning up staged directory: {}", st.error().message());
}

Status StagedDir::rename_to(const fs::path& target) {
  if (::rename(path_.c_str(), target.c_str()) != 0) {
    return Error::from_errno(errno, fmt::format("renaming {} to {}", path_.string(), target.string()));
  }
  path_ = target;
  return ok_status();
}

bool overlay_index_enabled_by_default() {
  std::ifstream in("/sys/module/overlay/parameters/index");
  char c = 0;
  return in.get(c) && c == 'Y';
}

}  // namespace nydus::snapshotter
