#include "tools/nydus-image/tree.h"

namespace nydus::builder {

InodePtr make_dir(uint32_t perm) {
  auto d = std::make_shared<Inode>();
  d->mode = S_IFDIR | perm;
  return d;
}

namespace {

void walk_dir(const std::string& path, const InodePtr& dir,
              const std::function<void(const std::string&, const InodePtr&, const Inode*)>& fn) {
  for (const auto& [name, child] : dir->children) {
    std::string child_path = path == "/" ? "/" + name : path + "/" + name;
    fn(child_path, child, dir.get());
    if (child->is_dir()) walk_dir(child_path, child, fn);
  }
}

}  // namespace

void walk(const InodePtr& root,
          const std::function<void(const std::string& path, const InodePtr& node, const Inode* parent)>& fn) {
  fn("/", root, nullptr);
  walk_dir("/", root, fn);
}

uint8_t file_type_of(uint32_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG: return rafs::kFtRegular;
    case S_IFDIR: return rafs::kFtDirectory;
    case S_IFCHR: return rafs::kFtCharDevice;
    case S_IFBLK: return rafs::kFtBlockDevice;
    case S_IFIFO: return rafs::kFtFifo;
    case S_IFSOCK: return rafs::kFtSocket;
    case S_IFLNK: return rafs::kFtSymlink;
    default: return rafs::kFtUnknown;
  }
}

}  // namespace nydus::builder
