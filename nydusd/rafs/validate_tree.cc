// validate_tree(): an fsck for RAFS v6 bootstraps. Walks every directory
// reachable from the root with an explicit stack (never recursion on image
// data), visiting each directory once and each other inode once, and checks
// what a single accessor cannot: names sorted strictly by raw bytes (lookups
// depend on it), "." and ".." pointing at the directory and its parent,
// dirent file types matching the inodes, no directory reachable twice, and
// every symlink, xattr area and chunk index in the tree. A work budget
// bounds the walk even when hostile directories share blocks.
#include <sys/stat.h>

#include <unordered_set>

#include "nydusd/rafs/bootstrap_impl.h"

namespace nydus::rafs {

namespace {

uint8_t file_type_of(uint32_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG: return kFtRegular;
    case S_IFDIR: return kFtDirectory;
    case S_IFCHR: return kFtCharDevice;
    case S_IFBLK: return kFtBlockDevice;
    case S_IFIFO: return kFtFifo;
    case S_IFSOCK: return kFtSocket;
    case S_IFLNK: return kFtSymlink;
  }
  return kFtUnknown;
}

struct PendingDir {
  uint64_t nid;
  uint64_t parent;
  std::string path;
};

}  // namespace

Status BootstrapImpl::validate_tree() const {
  // A sane image has each directory block and chunk index array once;
  // twice the file size leaves room and still stops block-sharing loops.
  uint64_t budget = 2 * bytes_.size();
  const auto spend = [&](uint64_t n, const std::string& path) -> Status {
    if (n > budget) return corrupt("at {}: metadata walk exceeds twice the file size (blocks shared between inodes?)", path);
    budget -= n;
    return ok_status();
  };

  const uint64_t root = super_.root_nid;
  std::vector<PendingDir> stack{{root, root, "/"}};
  std::unordered_set<uint64_t> dirs_seen{root};
  std::unordered_set<uint64_t> others_seen;
  while (!stack.empty()) {
    PendingDir cur = std::move(stack.back());
    stack.pop_back();
    const auto at = [&](std::string_view name) {
      return cur.path == "/" ? "/" + std::string(name) : cur.path + "/" + std::string(name);
    };
    auto wrap = [&](Error e, const std::string& where) { return std::move(e).wrap(fmt::format("at {}", where)); };

    auto dir_r = load_dir(cur.nid);
    if (!dir_r.ok()) return wrap(std::move(dir_r).error(), cur.path);
    const InodeView dir = std::move(dir_r).value();
    NYDUS_TRY(spend(dir.attr.size, cur.path));
    if (auto x = xattrs_inode(dir); !x.ok()) return wrap(std::move(x).error(), cur.path);

    std::string prev;
    bool have_prev = false, have_dot = false, have_dotdot = false;
    const uint64_t nblocks = div_round_up(dir.attr.size, block_size());
    for (uint64_t blk = 0; blk < nblocks; ++blk) {
      auto b = dir_block(dir, blk);
      if (!b.ok()) return wrap(std::move(b).error(), cur.path);
      for (uint32_t i = 0; i < b->count; ++i) {
        auto entry = dir_entry(dir, *b, i);
        if (!entry.ok()) return wrap(std::move(entry).error(), cur.path);
        const auto& [de, name] = *entry;
        if (have_prev && name_compare(prev, name) >= 0) {
          return corrupt("dir nid {} ({}): \"{}\" follows \"{}\"; names must be strictly sorted by bytes", cur.nid,
                         cur.path, name, prev);
        }
        prev.assign(name);
        have_prev = true;
        if (name.find('/') != std::string_view::npos || name.find('\0') != std::string_view::npos) {
          return corrupt("dir nid {} ({}): entry name \"{}\" contains '/' or NUL", cur.nid, cur.path, name);
        }
        if (name == "." || name == "..") {
          const bool dot = name == ".";
          const uint64_t want = dot ? cur.nid : cur.parent;
          if (de.nid != want || de.file_type != kFtDirectory) {
            return corrupt("dir nid {} ({}): \"{}\" points at nid {} type {}, want nid {} type {}", cur.nid, cur.path,
                           name, de.nid, de.file_type, want, int(kFtDirectory));
          }
          (dot ? have_dot : have_dotdot) = true;
          continue;
        }
        const std::string path = at(name);
        auto child_r = load_inode(de.nid);
        if (!child_r.ok()) return wrap(std::move(child_r).error(), path);
        const InodeView& child = *child_r;
        if (de.file_type != file_type_of(child.attr.mode)) {
          return corrupt("at {}: dirent file type {} does not match the inode (nid {}, mode {:o})", path,
                         de.file_type, de.nid, child.attr.mode);
        }
        if (S_ISDIR(child.attr.mode)) {
          if (!dirs_seen.insert(de.nid).second) {
            return corrupt("at {}: directory nid {} is reachable twice (directory hard link or cycle)", path, de.nid);
          }
          stack.push_back({de.nid, cur.nid, path});
          continue;
        }
        if (!others_seen.insert(de.nid).second) continue;  // a hard link: checked already
        if (auto x = xattrs_inode(child); !x.ok()) return wrap(std::move(x).error(), path);
        if (S_ISLNK(child.attr.mode)) {
          NYDUS_TRY(spend(child.attr.size, path));
          if (auto t = readlink_inode(child); !t.ok()) return wrap(std::move(t).error(), path);
        } else if (S_ISREG(child.attr.mode)) {
          NYDUS_TRY(spend(div_round_up(child.attr.size, super_.chunk_size) * sizeof(ChunkAddr), path));
          if (auto m = map_inode(child, 0, child.attr.size); !m.ok()) return wrap(std::move(m).error(), path);
        }
      }
    }
    if (!have_dot || !have_dotdot) {
      return corrupt("dir nid {} ({}): missing \"{}\" entry", cur.nid, cur.path, have_dot ? ".." : ".");
    }
  }

  NYDUS_ASSIGN_OR_RETURN(auto prefetch, prefetch_nids());
  for (uint64_t nid : prefetch) {
    if (auto a = load_inode(nid); !a.ok()) return std::move(a).error().wrap("prefetch table");
  }
  return ok_status();
}

}  // namespace nydus::rafs
