// Mounts: a guard that unmounts, a mountinfo parser, mount point checks.
//
// Nothing here touches the mounted filesystem itself: a FUSE mount whose
// daemon is dead or hung answers stat() with ENOTCONN or not at all, and
// failover code must still be able to ask "is it mounted?" and to unmount.
// So is_mountpoint() reads /proc/self/mountinfo instead of stat'ing the path,
// only the parent directory is resolved, and unmounting uses
// UMOUNT_NOFOLLOW (a symlink in the last component is never followed).
//
// Thread safety: free functions; a MountGuard is used by one owner at a time.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace nydus {

// One line of /proc/<pid>/mountinfo (proc(5)). Path-like fields have the
// kernel's octal escapes (\040 space, \011 tab, \012 newline, \134 backslash)
// decoded; option strings are kept as the kernel wrote them, since a decoded
// ',' would make them ambiguous.
struct MountInfo {
  int mount_id = 0;
  int parent_id = 0;
  unsigned major = 0;
  unsigned minor = 0;
  std::string root;           // root of the mount within its filesystem
  std::string mount_point;    // relative to this process's root
  std::string mount_options;  // per-mount options, e.g. "rw,relatime"
  std::vector<std::string> optional_fields;  // e.g. "shared:1", "master:2"
  std::string fs_type;        // "fuse.nydusd", "erofs", "tmpfs", ...
  std::string source;         // device or "none"
  std::string super_options;  // per-superblock options
};

// Parses mountinfo text. A malformed line is kCorrupt naming its number.
Result<std::vector<MountInfo>> parse_mountinfo(std::string_view text);

// Reads and parses /proc/self/mountinfo (or another mountinfo file).
Result<std::vector<MountInfo>> read_mountinfo(const std::string& path = "/proc/self/mountinfo");

// Decodes the kernel's \ooo octal escapes; other backslashes stay as they are.
std::string decode_mountinfo_escapes(std::string_view field);

// The mount points at or below `root` (lexically normalized), deepest first,
// so detaching them in order never trips over a parent. Empty when mountinfo
// cannot be read.
std::vector<std::string> mounts_below(const std::string& root);

// The absolute form of `path` as mountinfo would print it: made absolute,
// lexically normalized, the parent directory resolved with realpath(3), the
// last component kept as is (not followed, not stat'ed).
Result<std::string> mountinfo_path(const std::string& path);

// Whether something is mounted exactly at `path` (see mountinfo_path). False
// when mountinfo cannot be read.
bool is_mountpoint(const std::string& path);

// Unmounts `path`: umount2(UMOUNT_NOFOLLOW); when busy (EBUSY), detaches it
// lazily (MNT_DETACH) as the last resort. A path that is not a mount point
// (EINVAL) or does not exist is already unmounted: success.
Status unmount(const std::string& path);

// umount2(MNT_DETACH | UMOUNT_NOFOLLOW): the mount disappears from the tree at
// once and is torn down when its last user is gone. Not a mount point is
// kNotFound.
Status lazy_unmount(const std::string& path);

// Owns one mount point: the destructor unmounts it (see unmount()) unless the
// guard was dismissed. Exit and upgrade paths dismiss, because a daemon that
// exits or hands over must never unmount. Move-only.
class MountGuard {
 public:
  MountGuard() = default;
  explicit MountGuard(std::string mountpoint) : mountpoint_(std::move(mountpoint)) {}
  MountGuard(const MountGuard&) = delete;
  MountGuard& operator=(const MountGuard&) = delete;
  MountGuard(MountGuard&& other) noexcept : mountpoint_(std::move(other.mountpoint_)) {
    other.mountpoint_.clear();
  }
  MountGuard& operator=(MountGuard&& other) noexcept;
  ~MountGuard();

  // mount(2) and guard the result.
  static Result<MountGuard> mount(const std::string& source, const std::string& target,
                                  const std::string& fs_type, unsigned long flags = 0,
                                  const std::string& data = "");

  const std::string& mountpoint() const { return mountpoint_; }
  bool active() const { return !mountpoint_.empty(); }

  // Keep the mount; the guard becomes empty.
  void dismiss() { mountpoint_.clear(); }

  // Unmount now and report how it went; the guard is empty afterwards
  // whatever the result (a failed unmount is not retried by the destructor).
  Status unmount();

 private:
  std::string mountpoint_;
};

}  // namespace nydus
