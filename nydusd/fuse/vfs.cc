#include "nydusd/fuse/vfs.h"

#include <errno.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <span>
#include <unordered_set>

#include <spdlog/spdlog.h>

namespace nydus::fuse {

namespace {

constexpr uint32_t kStatBlockSize = 4096;
constexpr uint32_t kNameMax = 255;

// EROFS directory file types -> S_IFMT bits (for fuse_dirent.type).
mode_t file_type_mode(uint8_t file_type) {
  switch (file_type) {
    case rafs::kFtRegular: return S_IFREG;
    case rafs::kFtDirectory: return S_IFDIR;
    case rafs::kFtCharDevice: return S_IFCHR;
    case rafs::kFtBlockDevice: return S_IFBLK;
    case rafs::kFtFifo: return S_IFIFO;
    case rafs::kFtSocket: return S_IFSOCK;
    case rafs::kFtSymlink: return S_IFLNK;
    default: return 0;
  }
}

bool is_dot_or_dotdot(std::string_view name) { return name == "." || name == ".."; }

// Logs an image error and maps it to an errno. Not-found errors are normal
// answers and are not logged.
int image_errno(const Error& error, std::string_view op, uint64_t node, const RafsMount& mount) {
  int err = error.to_errno();
  if (err != ENOENT && err != ENODATA && err != EINVAL && err != ENOTDIR && err != EISDIR) {
    spdlog::error("{} node {:#x} (mount {} image {}): {}", op, node, mount.mountpoint, mount.source,
                  error.message());
  }
  return err;
}

}  // namespace

Result<std::string> normalize_vfs_path(std::string_view path) {
  if (path.empty() || path[0] != '/') {
    return make_error(ErrorKind::kInvalidArgument, "mountpoint \"{}\" is not an absolute path", path);
  }
  std::string out;
  size_t pos = 0;
  while (pos < path.size()) {
    while (pos < path.size() && path[pos] == '/') ++pos;
    size_t end = path.find('/', pos);
    if (end == std::string_view::npos) end = path.size();
    std::string_view part = path.substr(pos, end - pos);
    pos = end;
    if (part.empty()) continue;
    if (is_dot_or_dotdot(part)) {
      return make_error(ErrorKind::kInvalidArgument, "mountpoint \"{}\" contains \".\" or \"..\"", path);
    }
    if (part.size() > kNameMax) {
      return make_error(ErrorKind::kInvalidArgument, "mountpoint \"{}\" has a name over {} bytes",
                        path, kNameMax);
    }
    out += '/';
    out += part;
  }
  return out.empty() ? std::string("/") : out;
}

void fill_stat(const rafs::InodeAttr& attr, uint64_t node_id, struct stat* st) {
  std::memset(st, 0, sizeof(*st));
  st->st_ino = node_id;
  st->st_mode = attr.mode;
  st->st_nlink = attr.nlink;
  st->st_uid = attr.uid;
  st->st_gid = attr.gid;
  st->st_size = static_cast<off_t>(attr.size);
  st->st_rdev = attr.rdev;
  st->st_blksize = kStatBlockSize;
  st->st_blocks = static_cast<blkcnt_t>((attr.size + 511) / 512);
  st->st_mtim.tv_sec = static_cast<time_t>(attr.mtime);
  st->st_mtim.tv_nsec = attr.mtime_nsec;
  st->st_atim = st->st_mtim;
  st->st_ctim = st->st_mtim;
}

Vfs::Vfs() : created_(std::chrono::system_clock::now()) {
  PseudoDir root;
  root.ino = kRootNodeId;
  root.parent = kRootNodeId;
  pseudo_.emplace(kRootNodeId, std::move(root));
}

// ---------------------------------------------------------------------------
// Mount table

Vfs::PseudoDir& Vfs::ensure_pseudo_path_locked(const std::string& path) {
  PseudoDir* dir = &pseudo_.at(kRootNodeId);
  size_t pos = 1;
  while (pos < path.size()) {
    size_t end = path.find('/', pos);
    if (end == std::string::npos) end = path.size();
    std::string name = path.substr(pos, end - pos);
    pos = end + 1;
    auto it = dir->children.find(name);
    if (it == dir->children.end()) {
      PseudoDir child;
      child.ino = next_pseudo_ino_++;
      child.parent = dir->ino;
      child.name = name;
      dir->children.emplace(name, child.ino);
      uint64_t ino = child.ino;
      pseudo_.emplace(ino, std::move(child));
      dir = &pseudo_.at(ino);
    } else {
      dir = &pseudo_.at(it->second);
    }
  }
  return *dir;
}

const Vfs::PseudoDir* Vfs::find_pseudo_path_locked(std::string_view path) const {
  const PseudoDir* dir = &pseudo_.at(kRootNodeId);
  size_t pos = 1;
  while (pos < path.size()) {
    size_t end = path.find('/', pos);
    if (end == std::string_view::npos) end = path.size();
    auto it = dir->children.find(path.substr(pos, end - pos));
    if (it == dir->children.end()) return nullptr;
    dir = &pseudo_.at(it->second);
    pos = end + 1;
  }
  return dir;
}

Vfs::MountEntry Vfs::entry_for_locked(const PseudoDir& dir, uint8_t index) const {
  MountEntry entry;
  entry.index = index;
  entry.mount = mounts_[index];
  if (dir.ino == kRootNodeId) {
    entry.root_node = kRootNodeId;
    entry.parent_node = 0;
  } else {
    entry.root_node = make_node_id(index, entry.mount->bootstrap->root_nid()).value_or(0);
    entry.parent_node = dir.parent;
    entry.name = dir.name;
  }
  return entry;
}

unsigned Vfs::next_index() const {
  std::shared_lock lock(mu_);
  return next_index_;
}

void Vfs::set_next_index(unsigned index) {
  std::unique_lock lock(mu_);
  next_index_ = (index >= 1 && index <= kMaxMountIndex) ? index : 1;
}

Result<Vfs::MountEntry> Vfs::mount(std::shared_ptr<RafsMount> mount, std::optional<uint8_t> index) {
  if (!mount || !mount->bootstrap) {
    return make_error(ErrorKind::kInvalidArgument, "mount without an image");
  }
  NYDUS_ASSIGN_OR_RETURN(std::string path, normalize_vfs_path(mount->mountpoint));
  if (!make_node_id(1, mount->bootstrap->root_nid())) {
    return make_error(ErrorKind::kCorrupt, "image {} has a root nid beyond 56 bits", mount->source);
  }
  std::unique_lock lock(mu_);
  const PseudoDir& root = pseudo_.at(kRootNodeId);
  if (path != "/" && root.mount_index) {
    return make_error(ErrorKind::kFailedPrecondition,
                      "cannot mount at {}: the image mounted at / would shadow it", path);
  }
  if (path == "/") {
    for (uint8_t i = 1; i != 0; ++i) {
      if (mounts_[i]) {
        return make_error(ErrorKind::kFailedPrecondition,
                          "cannot mount at /: it would shadow the mount at {}", mounts_[i]->mountpoint);
      }
    }
  }
  if (const PseudoDir* existing = find_pseudo_path_locked(path); existing && existing->mount_index) {
    return make_error(ErrorKind::kAlreadyExists, "{} is already mounted", path);
  }
  uint8_t chosen = 0;
  if (index) {
    if (*index == kPseudoIndex) {
      return make_error(ErrorKind::kInvalidArgument, "mount index 0 is the pseudo fs");
    }
    if (mounts_[*index]) {
      return make_error(ErrorKind::kAlreadyExists, "mount index {} is in use by {}", *index,
                        mounts_[*index]->mountpoint);
    }
    chosen = *index;
  } else {
    for (unsigned tries = 0; tries < kMaxMountIndex; ++tries) {
      unsigned candidate = next_index_;
      next_index_ = next_index_ >= kMaxMountIndex ? 1 : next_index_ + 1;
      if (!mounts_[candidate]) {
        chosen = static_cast<uint8_t>(candidate);
        break;
      }
    }
    if (chosen == 0) {
      return make_error(ErrorKind::kTooLarge, "all {} mount indexes are in use", kMaxMountIndex);
    }
  }
  mount->mountpoint = path;
  PseudoDir& dir = ensure_pseudo_path_locked(path);
  dir.mount_index = chosen;
  mounts_[chosen] = std::move(mount);
  mount_dirs_[chosen] = dir.ino;
  return entry_for_locked(dir, chosen);
}

Result<Vfs::MountEntry> Vfs::remount(std::shared_ptr<RafsMount> mount) {
  if (!mount || !mount->bootstrap) {
    return make_error(ErrorKind::kInvalidArgument, "remount without an image");
  }
  NYDUS_ASSIGN_OR_RETURN(std::string path, normalize_vfs_path(mount->mountpoint));
  if (!make_node_id(1, mount->bootstrap->root_nid())) {
    return make_error(ErrorKind::kCorrupt, "image {} has a root nid beyond 56 bits", mount->source);
  }
  std::unique_lock lock(mu_);
  const PseudoDir* dir = find_pseudo_path_locked(path);
  if (!dir || !dir->mount_index) return make_error(ErrorKind::kNotFound, "{} is not mounted", path);
  MountEntry old = entry_for_locked(*dir, *dir->mount_index);
  mount->mountpoint = path;
  mounts_[*dir->mount_index] = std::move(mount);
  return old;
}

Result<Vfs::MountEntry> Vfs::umount(std::string_view mountpoint) {
  NYDUS_ASSIGN_OR_RETURN(std::string path, normalize_vfs_path(mountpoint));
  std::unique_lock lock(mu_);
  auto it = pseudo_.end();
  if (const PseudoDir* dir = find_pseudo_path_locked(path)) it = pseudo_.find(dir->ino);
  if (it == pseudo_.end() || !it->second.mount_index) {
    return make_error(ErrorKind::kNotFound, "{} is not mounted", path);
  }
  uint8_t index = *it->second.mount_index;
  MountEntry entry = entry_for_locked(it->second, index);
  it->second.mount_index.reset();
  mounts_[index].reset();
  mount_dirs_[index] = 0;
  // Drop the now empty pseudo directories up to the first one still in use.
  // Their inos are never reused (next_pseudo_ino_ only grows), so a node id
  // the kernel still holds for one resolves to ESTALE, not to another dir.
  while (it != pseudo_.end() && it->first != kRootNodeId && !it->second.mount_index &&
         it->second.children.empty()) {
    const uint64_t parent = it->second.parent;
    auto up = pseudo_.find(parent);
    if (up == pseudo_.end()) break;
    up->second.children.erase(it->second.name);
    entry.removed_dirs.emplace_back(parent, it->second.name);
    pseudo_.erase(it);
    it = up;
  }
  return entry;
}

std::optional<Vfs::MountEntry> Vfs::find_mount(std::string_view mountpoint) const {
  auto path = normalize_vfs_path(mountpoint);
  if (!path.ok()) return std::nullopt;
  std::shared_lock lock(mu_);
  const PseudoDir* dir = find_pseudo_path_locked(*path);
  if (!dir || !dir->mount_index) return std::nullopt;
  return entry_for_locked(*dir, *dir->mount_index);
}

std::vector<Vfs::MountEntry> Vfs::mounts() const {
  std::shared_lock lock(mu_);
  std::vector<MountEntry> out;
  for (unsigned i = 1; i <= kMaxMountIndex; ++i) {
    if (mounts_[i]) out.push_back(entry_for_locked(pseudo_.at(mount_dirs_[i]), static_cast<uint8_t>(i)));
  }
  return out;
}

std::vector<Vfs::PseudoEntry> Vfs::pseudo_entries() const {
  std::shared_lock lock(mu_);
  std::vector<PseudoEntry> out;
  for (const auto& [ino, dir] : pseudo_) {
    if (ino != kRootNodeId) out.push_back({ino, dir.parent, dir.name});
  }
  return out;  // std::map orders by ino = creation order
}

Status Vfs::restore_pseudo(const std::vector<PseudoEntry>& entries) {
  std::unique_lock lock(mu_);
  for (const auto& m : mounts_) {
    if (m) return make_error(ErrorKind::kFailedPrecondition, "restore the pseudo tree before mounts");
  }
  // Replaces whatever tree is there (an earlier, failed takeover may have left one).
  for (auto it = pseudo_.begin(); it != pseudo_.end();) {
    it = it->first == kRootNodeId ? std::next(it) : pseudo_.erase(it);
  }
  pseudo_.at(kRootNodeId).children.clear();
  next_pseudo_ino_ = kRootNodeId + 1;
  auto saved = pseudo_;
  auto fail = [&](const PseudoEntry& e, const char* why) {
    pseudo_ = saved;
    return make_error(ErrorKind::kInvalidArgument, "pseudo entry {} ({} in {}): {}", e.ino, e.name,
                      e.parent, why);
  };
  uint64_t next = next_pseudo_ino_;
  for (const auto& e : entries) {
    if (e.ino <= kRootNodeId || e.ino > kInoMask) return fail(e, "bad ino");
    if (e.name.empty() || e.name.size() > 255 || e.name.find('/') != std::string::npos ||
        e.name == "." || e.name == "..") {
      return fail(e, "bad name");
    }
    auto parent = pseudo_.find(e.parent);
    if (parent == pseudo_.end()) return fail(e, "unknown parent");
    if (pseudo_.count(e.ino) != 0 || parent->second.children.count(e.name) != 0) {
      return fail(e, "listed twice");
    }
    parent->second.children.emplace(e.name, e.ino);
    PseudoDir dir;
    dir.ino = e.ino;
    dir.parent = e.parent;
    dir.name = e.name;
    pseudo_.emplace(e.ino, std::move(dir));
    next = std::max(next, e.ino + 1);
  }
  next_pseudo_ino_ = next;
  return ok_status();
}

// ---------------------------------------------------------------------------
// Node resolution

int Vfs::resolve_locked(uint64_t node, Resolved* out) const {
  uint8_t index = node_mount_index(node);
  if (index == kPseudoIndex) {
    auto it = pseudo_.find(node);
    if (it == pseudo_.end()) return ESTALE;
    if (it->second.mount_index) {
      // Only the root can be both: "/" is mounted (other mount points are
      // reached through their mount's root node id).
      uint8_t mounted = *it->second.mount_index;
      out->mount = mounts_[mounted];
      out->index = mounted;
      out->nid = out->mount->bootstrap->root_nid();
      return 0;
    }
    out->pseudo = &it->second;
    out->pseudo_ino = node;
    return 0;
  }
  const auto& mount = mounts_[index];
  if (!mount) return ESTALE;
  out->mount = mount;
  out->index = index;
  out->nid = node_ino(node);
  return 0;
}

int Vfs::resolve(uint64_t node, Resolved* out) const {
  std::shared_lock lock(mu_);
  int err = resolve_locked(node, out);
  out->pseudo = nullptr;  // not valid once the lock is dropped
  return err;
}

std::shared_ptr<FsIoStats> Vfs::stats_for(uint64_t node) const {
  Resolved r;
  if (resolve(node, &r) != 0 || !r.mount) return nullptr;
  return r.mount->stats;
}

// ---------------------------------------------------------------------------
// Operations

void Vfs::fill_pseudo_attr(uint64_t ino, struct stat* attr) const {
  std::memset(attr, 0, sizeof(*attr));
  attr->st_ino = ino;
  attr->st_mode = S_IFDIR | 0755;
  attr->st_nlink = 2;
  attr->st_blksize = kStatBlockSize;
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(created_.time_since_epoch());
  attr->st_mtim.tv_sec = secs.count();
  attr->st_atim = attr->st_mtim;
  attr->st_ctim = attr->st_mtim;
}

int Vfs::rafs_entry(const std::shared_ptr<RafsMount>& mount, uint8_t index, uint64_t nid,
                    fuse_entry_param* entry) const {
  auto node = make_node_id(index, nid);
  if (!node) {
    spdlog::error("mount {} image {}: nid {} does not fit in a node id", mount->mountpoint,
                  mount->source, nid);
    return EIO;
  }
  auto attr = mount->bootstrap->getattr(nid);
  if (!attr.ok()) return image_errno(attr.error(), "getattr", *node, *mount);
  std::memset(entry, 0, sizeof(*entry));
  entry->ino = *node;
  entry->generation = 0;
  fill_stat(*attr, *node, &entry->attr);
  entry->attr_timeout = mount->options.attr_timeout;
  entry->entry_timeout = mount->options.entry_timeout;
  return 0;
}

int Vfs::pseudo_child_entry(uint64_t parent_ino, const char* name, fuse_entry_param* entry) const {
  std::shared_ptr<RafsMount> mount;
  uint8_t index = 0;
  uint64_t child_ino = 0;
  {
    std::shared_lock lock(mu_);
    auto parent = pseudo_.find(parent_ino);
    if (parent == pseudo_.end()) return ESTALE;
    auto it = parent->second.children.find(std::string_view(name));
    if (it == parent->second.children.end()) return ENOENT;
    const PseudoDir& child = pseudo_.at(it->second);
    child_ino = child.ino;
    if (child.mount_index) {
      index = *child.mount_index;
      mount = mounts_[index];
    }
  }
  if (mount) return rafs_entry(mount, index, mount->bootstrap->root_nid(), entry);
  std::memset(entry, 0, sizeof(*entry));
  entry->ino = child_ino;
  fill_pseudo_attr(child_ino, &entry->attr);
  // The pseudo tree changes with mounts: let the kernel cache it briefly only.
  entry->attr_timeout = 1.0;
  entry->entry_timeout = 1.0;
  return 0;
}

int Vfs::do_lookup(uint64_t parent, const char* name, fuse_entry_param* entry) const {
  std::memset(entry, 0, sizeof(*entry));
  if (std::strlen(name) > kNameMax) return ENAMETOOLONG;
  Resolved dir;
  if (int err = resolve(parent, &dir)) return err;
  if (!dir.mount) return pseudo_child_entry(dir.pseudo_ino, name, entry);

  auto child = dir.mount->bootstrap->lookup(dir.nid, name);
  if (!child.ok()) {
    int err = image_errno(child.error(), "lookup", parent, *dir.mount);
    // The image never changes: let the kernel cache the negative answer.
    if (err == ENOENT) entry->entry_timeout = dir.mount->options.entry_timeout;
    return err;
  }
  return rafs_entry(dir.mount, dir.index, *child, entry);
}

int Vfs::do_getattr(uint64_t node, struct stat* attr, double* timeout) const {
  Resolved r;
  if (int err = resolve(node, &r)) return err;
  if (!r.mount) {
    fill_pseudo_attr(r.pseudo_ino, attr);
    *timeout = 1.0;
    return 0;
  }
  auto inode = r.mount->bootstrap->getattr(r.nid);
  if (!inode.ok()) return image_errno(inode.error(), "getattr", node, *r.mount);
  fill_stat(*inode, make_node_id(r.index, r.nid).value_or(node), attr);
  *timeout = r.mount->options.attr_timeout;
  return 0;
}

int Vfs::do_readlink(uint64_t node, std::string* target) const {
  Resolved r;
  if (int err = resolve(node, &r)) return err;
  if (!r.mount) return EINVAL;
  auto link = r.mount->bootstrap->readlink(r.nid);
  if (!link.ok()) return image_errno(link.error(), "readlink", node, *r.mount);
  *target = std::move(*link);
  return 0;
}

int Vfs::do_read(uint64_t node, uint64_t offset, size_t size, std::vector<uint8_t>* out) const {
  Resolved r;
  if (int err = resolve(node, &r)) return err;
  if (!r.mount) return EISDIR;
  if (!r.mount->store) {
    spdlog::error("read node {:#x} (mount {} nid {}): the mount has no blob store", node,
                  r.mount->mountpoint, r.nid);
    return EIO;
  }
  out->resize(size);
  std::string hint = fmt::format("nid {} of {}", r.nid, r.mount->mountpoint);
  auto n = r.mount->store->read(r.nid, offset, std::span<uint8_t>(out->data(), out->size()), hint);
  if (!n.ok()) {
    spdlog::error("read node {:#x} (mount {} image {} nid {}) offset {} size {}: {}", node,
                  r.mount->mountpoint, r.mount->source, r.nid, offset, size, n.error().message());
    int err = n.error().to_errno();
    return err == ENOENT ? EIO : err;
  }
  out->resize(std::min(*n, size));
  return 0;
}

int Vfs::pseudo_readdir(uint64_t ino, uint64_t offset, size_t size, bool plus,
                        std::string* buf) const {
  std::vector<std::pair<std::string, uint64_t>> names;  // name, ino
  {
    std::shared_lock lock(mu_);
    auto it = pseudo_.find(ino);
    if (it == pseudo_.end()) return ESTALE;
    names.emplace_back(".", ino);
    names.emplace_back("..", it->second.parent);
    for (const auto& [name, child] : it->second.children) names.emplace_back(name, child);
  }
  buf->assign(size, '\0');
  size_t used = 0;
  for (uint64_t i = offset; i < names.size(); ++i) {
    const auto& [name, child_ino] = names[i];
    size_t added;
    if (plus) {
      fuse_entry_param entry{};
      if (is_dot_or_dotdot(name)) {
        entry.attr.st_ino = child_ino;
        entry.attr.st_mode = S_IFDIR;
      } else if (int err = pseudo_child_entry(ino, name.c_str(), &entry); err != 0) {
        continue;  // unmounted meanwhile
      }
      added = fuse_add_direntry_plus(nullptr, buf->data() + used, size - used, name.c_str(), &entry,
                                     static_cast<off_t>(i + 1));
    } else {
      struct stat st {};
      st.st_ino = child_ino;
      st.st_mode = S_IFDIR;
      added = fuse_add_direntry(nullptr, buf->data() + used, size - used, name.c_str(), &st,
                                static_cast<off_t>(i + 1));
    }
    if (added > size - used) break;
    used += added;
  }
  buf->resize(used);
  return 0;
}

int Vfs::rafs_readdir(const Resolved& dir, uint64_t offset, size_t size, bool plus,
                      std::string* buf) const {
  buf->assign(size, '\0');
  size_t used = 0;
  int entry_err = 0;
  const auto& mount = dir.mount;
  auto status = mount->bootstrap->readdir(
      dir.nid, offset, [&](const rafs::DirEntry& de, uint64_t next) {
        auto child_node = make_node_id(dir.index, de.nid);
        if (!child_node) {
          entry_err = EIO;
          return false;
        }
        size_t added;
        if (plus && !is_dot_or_dotdot(de.name)) {
          fuse_entry_param entry{};
          if (int err = rafs_entry(mount, dir.index, de.nid, &entry); err != 0) {
            entry_err = err;
            return false;
          }
          added = fuse_add_direntry_plus(nullptr, buf->data() + used, size - used, de.name.c_str(),
                                         &entry, static_cast<off_t>(next));
        } else if (plus) {
          // "." and "..": no lookup count, no attributes (the kernel skips them).
          fuse_entry_param entry{};
          entry.attr.st_ino = *child_node;
          entry.attr.st_mode = file_type_mode(de.file_type);
          added = fuse_add_direntry_plus(nullptr, buf->data() + used, size - used, de.name.c_str(),
                                         &entry, static_cast<off_t>(next));
        } else {
          struct stat st {};
          st.st_ino = *child_node;
          st.st_mode = file_type_mode(de.file_type);
          added = fuse_add_direntry(nullptr, buf->data() + used, size - used, de.name.c_str(), &st,
                                    static_cast<off_t>(next));
        }
        if (added > size - used) return false;
        used += added;
        return true;
      });
  buf->resize(used);
  uint64_t node = make_node_id(dir.index, dir.nid).value_or(0);
  if (!status.ok()) {
    int err = image_errno(status.error(), "readdir", node, *mount);
    // Entries already buffered are returned; the error shows on the next call.
    return used > 0 ? 0 : err;
  }
  if (entry_err != 0 && used == 0) {
    spdlog::error("readdir node {:#x} (mount {} image {}): entry failed: {}", node,
                  mount->mountpoint, mount->source, std::strerror(entry_err));
    return entry_err;
  }
  return 0;
}

int Vfs::do_readdir(uint64_t node, uint64_t offset, size_t size, bool plus,
                    std::string* buf) const {
  Resolved r;
  if (int err = resolve(node, &r)) return err;
  if (!r.mount) return pseudo_readdir(r.pseudo_ino, offset, size, plus, buf);
  return rafs_readdir(r, offset, size, plus, buf);
}

int Vfs::do_statfs(uint64_t node, struct statvfs* st) const {
  Resolved r;
  if (int err = resolve(node, &r)) return err;
  std::memset(st, 0, sizeof(*st));
  st->f_bsize = kStatBlockSize;
  st->f_frsize = kStatBlockSize;
  st->f_namemax = kNameMax;
  if (r.mount) {
    const auto& super = r.mount->bootstrap->super();
    st->f_blocks = super.blocks;
    st->f_files = super.inodes;
  }
  return 0;
}

int Vfs::do_getxattr(uint64_t node, const char* name, std::string* value) const {
  Resolved r;
  if (int err = resolve(node, &r)) return err;
  if (!r.mount || !r.mount->options.enable_xattr) return ENODATA;
  auto xattrs = r.mount->bootstrap->xattrs(r.nid);
  if (!xattrs.ok()) return image_errno(xattrs.error(), "getxattr", node, *r.mount);
  for (auto& x : *xattrs) {
    if (x.name == name) {
      *value = std::move(x.value);
      return 0;
    }
  }
  return ENODATA;
}

int Vfs::do_listxattr(uint64_t node, std::string* names) const {
  Resolved r;
  if (int err = resolve(node, &r)) return err;
  names->clear();
  if (!r.mount || !r.mount->options.enable_xattr) return 0;
  auto xattrs = r.mount->bootstrap->xattrs(r.nid);
  if (!xattrs.ok()) return image_errno(xattrs.error(), "listxattr", node, *r.mount);
  for (const auto& x : *xattrs) {
    names->append(x.name);
    names->push_back('\0');
  }
  return 0;
}

int Vfs::do_access(uint64_t node, int mask) const {
  Resolved r;
  if (int err = resolve(node, &r)) return err;
  if (mask & W_OK) return EROFS;
  return 0;
}

// ---------------------------------------------------------------------------
// Invalidation walk

void Vfs::walk_for_invalidation(
    const MountEntry& entry, const std::function<int(uint64_t)>& inval_inode,
    const std::function<int(uint64_t, const std::string&)>& inval_entry) const {
  const auto& mount = entry.mount;
  if (!mount) return;
  const auto& bootstrap = *mount->bootstrap;

  struct Child {
    std::string name;
    uint64_t nid;
    bool is_dir;
  };
  // One directory being walked. Its own entry (parent_node, name) is
  // invalidated when it is popped, after all of its children.
  struct Frame {
    uint64_t node = 0;  // the node id the kernel knows this directory by
    std::vector<Child> children;
    size_t next = 0;
    bool has_entry = false;
    uint64_t parent_node = 0;
    std::string name;
  };
  std::unordered_set<uint64_t> visited;  // hostile images may loop

  auto open_dir = [&](uint64_t nid, Frame* frame) -> bool {
    if (!visited.insert(nid).second) return false;
    // A directory the kernel does not hold cannot have cached children.
    if (inval_inode(frame->node) == -ENOENT) return false;
    auto status = bootstrap.readdir(nid, 0, [&](const rafs::DirEntry& de, uint64_t) {
      if (!is_dot_or_dotdot(de.name)) {
        frame->children.push_back({de.name, de.nid, de.file_type == rafs::kFtDirectory});
      }
      return true;
    });
    if (!status.ok()) {
      spdlog::warn("invalidating mount {}: readdir nid {}: {}", mount->mountpoint, nid,
                   status.error().message());
    }
    return true;
  };

  std::vector<Frame> stack;
  Frame root;
  root.node = entry.root_node;
  if (open_dir(bootstrap.root_nid(), &root)) stack.push_back(std::move(root));
  while (!stack.empty()) {
    if (stack.back().next == stack.back().children.size()) {
      Frame done = std::move(stack.back());
      stack.pop_back();
      if (done.has_entry) inval_entry(done.parent_node, done.name);
      continue;
    }
    Frame& top = stack.back();
    Child child = top.children[top.next++];
    uint64_t parent_node = top.node;
    auto child_node = make_node_id(entry.index, child.nid);
    if (!child_node) continue;
    if (child.is_dir) {
      Frame frame;
      frame.node = *child_node;
      frame.has_entry = true;
      frame.parent_node = parent_node;
      frame.name = child.name;
      if (open_dir(child.nid, &frame)) {
        stack.push_back(std::move(frame));  // `top` is invalid from here
      } else {
        inval_entry(parent_node, child.name);
      }
    } else {
      inval_inode(*child_node);
      inval_entry(parent_node, child.name);
    }
  }
  if (entry.parent_node != 0) inval_entry(entry.parent_node, entry.name);
}

}  // namespace nydus::fuse
