// The filesystem nydusd serves over FUSE: RAFS images mounted at paths of a
// virtual tree (VFS). A pseudo filesystem of plain directories holds the
// mount points; each image is a RafsMount with a mount index 1..255, and its
// nodes have the ids of node_id.h. A dedicated daemon (--bootstrap) mounts
// its image at "/", which shadows the pseudo root; a shared daemon mounts
// images at sub-paths through the control API.
//
// Operations are the do_<op> helpers of the libfuse examples: each returns 0
// or an errno and fills its out-parameters; the FUSE callbacks (session.cc)
// turn that into exactly one reply. They never throw (a bad image yields EIO
// with a log line), and an unknown node id yields ESTALE.
//
// st_ino is the node id, so inode numbers stay unique across the images of
// one FUSE filesystem (du, tar and find identify files by st_dev + st_ino);
// its low 56 bits are the nid, which is also what the kernel's EROFS driver
// reports for the same image.
//
// RAFS needs no per-node or per-handle state: node ids are derived from the
// image, lookups are not counted (FORGET is a no-op), and files are served
// without open handles. This is what lets another process take the FUSE
// connection over with nothing but the mount table.
//
// Thread safety: every method may be called concurrently. `mu_` guards the
// pseudo tree and the mount table; a request takes it shared only to resolve
// its node to a shared_ptr<RafsMount>, and does the image and blob I/O
// without it. Mount changes take it exclusively.
#pragma once

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "nydusd/fuse/fs_metrics.h"
#include "nydusd/fuse/libfuse.h"
#include "nydusd/fuse/node_id.h"
#include "nydusd/rafs/bootstrap.h"
#include "nydusd/storage/storage.h"

namespace nydus::fuse {

struct FsOptions {
  double entry_timeout = 5.0;  // seconds the kernel may cache names
  double attr_timeout = 5.0;   // seconds the kernel may cache attributes
  bool enable_xattr = true;
};

// One mounted image: immutable once mounted (remount installs a new object
// under the same index). In-flight requests hold it by shared_ptr.
struct RafsMount {
  std::string mountpoint;  // normalized VFS path, "/" or "/a/b"
  std::string source;      // the bootstrap path (for logs)
  std::shared_ptr<const rafs::Bootstrap> bootstrap;
  std::shared_ptr<storage::BlobStore> store;  // null: data reads fail with EIO
  FsOptions options;
  std::shared_ptr<FsIoStats> stats;  // kept across remounts
};

// "/a//b/" -> "/a/b"; "." and ".." components, a relative path or a name
// longer than 255 bytes -> kInvalidArgument.
Result<std::string> normalize_vfs_path(std::string_view path);

class Vfs {
 public:
  Vfs();
  Vfs(const Vfs&) = delete;
  Vfs& operator=(const Vfs&) = delete;

  // --- Mount table -------------------------------------------------------

  struct MountEntry {
    uint8_t index = 0;
    std::shared_ptr<RafsMount> mount;
    uint64_t root_node = 0;    // the node id the kernel knows the mount's root by
    uint64_t parent_node = 0;  // pseudo directory holding it (0 for "/")
    std::string name;          // last path component ("" for "/")
    // umount only: the pseudo directories it removed, deepest first, as
    // (parent node, name): the kernel's entries to invalidate.
    std::vector<std::pair<uint64_t, std::string>> removed_dirs;
  };

  // Mounts `mount` at mount->mountpoint (normalized by the caller). The index
  // is `index` when given (a successor restoring saved node ids) or the next
  // free one, round robin. kAlreadyExists if the path is mounted, kTooLarge
  // when all 255 indexes are used.
  Result<MountEntry> mount(std::shared_ptr<RafsMount> mount, std::optional<uint8_t> index = {});
  // Installs `mount` in place of the image at its mountpoint, keeping the index.
  // Returns the entry of the replaced mount.
  Result<MountEntry> remount(std::shared_ptr<RafsMount> mount);
  // Removes the mount at `mountpoint`, and its pseudo directory with every
  // ancestor left empty (no mount, no children; never the root), as the
  // reference does. Returns the removed mount with those directories.
  Result<MountEntry> umount(std::string_view mountpoint);

  std::optional<MountEntry> find_mount(std::string_view mountpoint) const;

  // The round-robin index allocator (saved across a takeover so a successor
  // hands out the same indexes its predecessor would have).
  unsigned next_index() const;
  void set_next_index(unsigned index);  // out of 1..255 -> 1
  std::vector<MountEntry> mounts() const;

  // --- Operations (errno-returning helpers) ------------------------------

  int do_lookup(uint64_t parent, const char* name, fuse_entry_param* entry) const;
  int do_getattr(uint64_t node, struct stat* attr, double* timeout) const;
  int do_readlink(uint64_t node, std::string* target) const;
  // Reads up to `size` bytes at `offset` of regular file `node` into `out`
  // (resized to what was read; short at EOF).
  int do_read(uint64_t node, uint64_t offset, size_t size, std::vector<uint8_t>* out) const;
  // Fills `buf` with at most `size` bytes of fuse_dirent (or fuse_direntplus
  // when `plus`) records of directory `node`, starting after offset `offset`.
  int do_readdir(uint64_t node, uint64_t offset, size_t size, bool plus, std::string* buf) const;
  int do_statfs(uint64_t node, struct statvfs* st) const;
  // Value of xattr `name`; ENODATA when absent.
  int do_getxattr(uint64_t node, const char* name, std::string* value) const;
  // All names, each NUL-terminated.
  int do_listxattr(uint64_t node, std::string* names) const;
  int do_access(uint64_t node, int mask) const;

  // Statistics of the mount serving `node`; null for the pseudo fs.
  std::shared_ptr<FsIoStats> stats_for(uint64_t node) const;

  // Invalidation walk for unmount: calls `inval_inode(node)` and
  // `inval_entry(parent_node, name)` for the mount's tree, children before
  // parents, ending with the mount root's entry in its pseudo parent. A
  // subtree is skipped when inval_inode of its directory reports the kernel
  // does not know it (returns -ENOENT). Bounded: each directory once.
  void walk_for_invalidation(const MountEntry& entry,
                             const std::function<int(uint64_t node)>& inval_inode,
                             const std::function<int(uint64_t parent, const std::string& name)>&
                                 inval_entry) const;

  // The pseudo tree (ino, parent, name) in creation order, for saving the
  // VFS across a takeover. The root (ino 1) is not listed.
  struct PseudoEntry {
    uint64_t ino;
    uint64_t parent;
    std::string name;
  };
  std::vector<PseudoEntry> pseudo_entries() const;
  // A successor recreates its predecessor's pseudo tree (same inos) before
  // restoring mounts, so the kernel's node ids of pseudo directories stay
  // valid. Only on a VFS without mounts (kFailedPrecondition); replaces the
  // pseudo tree there. Entries in ino order with existing parents, else
  // kInvalidArgument and the tree is left empty.
  Status restore_pseudo(const std::vector<PseudoEntry>& entries);

 private:
  struct PseudoDir {
    uint64_t ino = 0;
    uint64_t parent = 0;
    std::string name;
    std::map<std::string, uint64_t, std::less<>> children;
    std::optional<uint8_t> mount_index;  // an image is mounted here
  };

  // What a node id resolves to: a pseudo directory, or a nid of a mount.
  struct Resolved {
    const PseudoDir* pseudo = nullptr;  // valid only under mu_ (copied out below)
    std::shared_ptr<RafsMount> mount;
    uint8_t index = 0;
    uint64_t nid = 0;
    uint64_t pseudo_ino = 0;
  };

  // Resolves a node id under the shared lock. ESTALE for an unknown id.
  int resolve_locked(uint64_t node, Resolved* out) const;
  int resolve(uint64_t node, Resolved* out) const;

  // Walks/creates the pseudo directories of `path` (exclusive lock held).
  PseudoDir& ensure_pseudo_path_locked(const std::string& path);
  const PseudoDir* find_pseudo_path_locked(std::string_view path) const;
  MountEntry entry_for_locked(const PseudoDir& dir, uint8_t index) const;

  int rafs_entry(const std::shared_ptr<RafsMount>& mount, uint8_t index, uint64_t nid,
                 fuse_entry_param* entry) const;
  int pseudo_child_entry(uint64_t parent_ino, const char* name, fuse_entry_param* entry) const;
  void fill_pseudo_attr(uint64_t ino, struct stat* attr) const;
  int pseudo_readdir(uint64_t ino, uint64_t offset, size_t size, bool plus, std::string* buf) const;
  int rafs_readdir(const Resolved& dir, uint64_t offset, size_t size, bool plus,
                   std::string* buf) const;

  mutable std::shared_mutex mu_;
  std::map<uint64_t, PseudoDir> pseudo_;                     // guarded by mu_; ino -> dir
  std::array<std::shared_ptr<RafsMount>, kMaxMountIndex + 1> mounts_;  // guarded by mu_
  std::array<uint64_t, kMaxMountIndex + 1> mount_dirs_{};    // guarded by mu_; index -> pseudo ino
  uint64_t next_pseudo_ino_ = kRootNodeId + 1;               // guarded by mu_
  unsigned next_index_ = 1;                                  // guarded by mu_
  std::chrono::system_clock::time_point created_;
};

// The attributes of a RAFS inode as FUSE reports them, st_ino = `node_id`.
void fill_stat(const rafs::InodeAttr& attr, uint64_t node_id, struct stat* st);

}  // namespace nydus::fuse
