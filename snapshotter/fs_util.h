// File-system helpers of the snapshotter: disk usage as containerd computes
// it, mount-safe recursive removal, staged directories, and the overlayfs
// probe run once at start-up.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "common/result.h"
#include "snapshotter/snapshot_types.h"

namespace nydus::snapshotter {

// containerd's fs.DiskUsage: walks `root` without following symlinks; each
// distinct inode counts once, with its allocated size (st_blocks * 512).
Result<Usage> disk_usage(const std::filesystem::path& root);


// Removes `path` recursively. Anything mounted below it is detached first
// (MNT_DETACH), so the removal never descends into a mounted file system.
// A missing path is not an error.
Status remove_tree(const std::filesystem::path& path);

// A directory created under a temporary name ("<parent>/new-XXXXXX") and
// moved to its final name once complete. Until dismiss(), the destructor
// removes whatever the guard currently points at (the staged name, or the
// final name after rename_to), so a failure at any step leaves nothing.
class StagedDir {
 public:
  static Result<StagedDir> create(const std::filesystem::path& parent);
  StagedDir(StagedDir&& other) noexcept : path_(std::exchange(other.path_, {})) {}
  StagedDir& operator=(StagedDir&&) = delete;
  StagedDir(const StagedDir&) = delete;
  ~StagedDir();

  const std::filesystem::path& path() const { return path_; }
  // rename(2) to `target`; the guard then owns `target`.
  Status rename_to(const std::filesystem::path& target);
  // Keep the directory.
  void dismiss() { path_.clear(); }

 private:
  explicit StagedDir(std::filesystem::path path) : path_(std::move(path)) {}
  std::filesystem::path path_;
};

// Prefix of staged directory names; Cleanup reclaims leftovers.
inline constexpr std::string_view kStagingPrefix = "new-";

// True when the overlay module indexes by default
// (/sys/module/overlay/parameters/index is "Y"). containerd then mounts with
// index=off, so that an upper dir can be mounted again over other lowers.
bool overlay_index_enabled_by_default();

}  // namespace nydus::snapshotter
