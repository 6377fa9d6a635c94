#include "tools/nydus-image/dir_scanner.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "common/unique_fd.h"
#include "nydusd/rafs/layout.h"
#include "tools/nydus-image/xattr.h"

namespace nydus::builder {

namespace {

using HardlinkMap = std::map<std::pair<dev_t, ino_t>, InodePtr>;

Result<std::map<std::string, std::string>> read_xattrs(const std::string& path) {
  std::map<std::string, std::string> out;
  ssize_t len = llistxattr(path.c_str(), nullptr, 0);
  if (len < 0) {
    if (errno == ENOTSUP) return out;
    return Error::from_errno(errno, "llistxattr " + path);
  }
  std::string names(size_t(len), '\0');
  len = llistxattr(path.c_str(), names.data(), names.size());
  if (len < 0) return Error::from_errno(errno, "llistxattr " + path);
  names.resize(size_t(len));
  for (size_t pos = 0; pos < names.size();) {
    std::string name = names.c_str() + pos;
    pos += name.size() + 1;
    ssize_t vlen = lgetxattr(path.c_str(), name.c_str(), nullptr, 0);
    if (vlen < 0) return Error::from_errno(errno, "lgetxattr " + path + " " + name);
    std::string value(size_t(vlen), '\0');
    vlen = lgetxattr(path.c_str(), name.c_str(), value.data(), value.size());
    if (vlen < 0) return Error::from_errno(errno, "lgetxattr " + path + " " + name);
    value.resize(size_t(vlen));
    if (std::string why = xattr_unstorable_reason(name, value); !why.empty()) {
      spdlog::warn("skipping xattr {} of {}: {}", name, path, why);
      continue;
    }
    out.emplace(std::move(name), std::move(value));
  }
  return out;
}

Result<InodePtr> scan_entry(const std::string& path, const struct stat& st, HardlinkMap& links) {
  if (S_ISREG(st.st_mode) && st.st_nlink > 1) {
    auto it = links.find({st.st_dev, st.st_ino});
    if (it != links.end()) return it->second;
  }
  auto node = std::make_shared<Inode>();
  node->mode = st.st_mode;
  node->uid = st.st_uid;
  node->gid = st.st_gid;
  node->mtime = uint64_t(st.st_mtim.tv_sec);
  node->mtime_nsec = uint32_t(st.st_mtim.tv_nsec);
  NYDUS_ASSIGN_OR_RETURN(node->xattrs, read_xattrs(path));
  if (S_ISREG(st.st_mode)) {
    node->size = uint64_t(st.st_size);
    node->source_path = path;
    if (st.st_nlink > 1) links.emplace(std::make_pair(st.st_dev, st.st_ino), node);
  } else if (S_ISLNK(st.st_mode)) {
    std::string target(size_t(st.st_size) + 1, '\0');
    ssize_t n = readlink(path.c_str(), target.data(), target.size());
    if (n < 0) return Error::from_errno(errno, "readlink " + path);
    if (size_t(n) > rafs::kMaxSymlinkLen || n == 0)
      return make_error(ErrorKind::kUnsupported, "symlink {} target length {} not in 1..4096", path, n);
    target.resize(size_t(n));
    node->symlink = std::move(target);
  } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
    node->rdev_major = major(st.st_rdev);
    node->rdev_minor = minor(st.st_rdev);
  }
  return node;
}

// Depth-first over directories; the explicit stack keeps deep trees off the
// call stack.
Status scan_tree(const std::string& source, const InodePtr& root) {
  HardlinkMap links;
  std::vector<std::pair<std::string, InodePtr>> pending{{source, root}};
  while (!pending.empty()) {
    auto [dir_path, dir] = std::move(pending.back());
    pending.pop_back();
    DIR* d = opendir(dir_path.c_str());
    if (d == nullptr) return Error::from_errno(errno, "opendir " + dir_path);
    std::vector<std::string> names;
    errno = 0;
    while (struct dirent* de = readdir(d)) {
      std::string name = de->d_name;
      if (name != "." && name != "..") names.push_back(std::move(name));
    }
    int read_errno = errno;
    closedir(d);
    if (read_errno != 0) return Error::from_errno(read_errno, "readdir " + dir_path);
    for (auto& name : names) {
      std::string path = dir_path + "/" + name;
      struct stat st;
      if (lstat(path.c_str(), &st) != 0) return Error::from_errno(errno, "lstat " + path);
      NYDUS_ASSIGN_OR_RETURN(InodePtr child, scan_entry(path, st, links));
      if (child->is_dir()) pending.emplace_back(path, child);
      dir->children.emplace(std::move(name), std::move(child));
    }
  }
  return ok_status();
}

}  // namespace

Result<InodePtr> scan_directory(const std::string& source, WhiteoutSpec spec) {
  struct stat st;
  if (stat(source.c_str(), &st) != 0) return Error::from_errno(errno, "stat " + source);
  if (!S_ISDIR(st.st_mode)) return make_error(ErrorKind::kInvalidArgument, "{} is not a directory", source);
  HardlinkMap unused;
  NYDUS_ASSIGN_OR_RETURN(InodePtr root, scan_entry(source, st, unused));
  NYDUS_TRY(scan_tree(source, root));
  if (spec == WhiteoutSpec::kOci) convert_oci_whiteouts(*root);
  return root;
}

Status add_directory_content(const InodePtr& root, ContentSink& sink) {
  std::set<const Inode*> done;
  Status status;
  walk(root, [&](const std::string& path, const InodePtr& node, const Inode*) {
    if (!status.ok() || !node->is_reg() || node->size == 0 || !done.insert(node.get()).second) return;
    UniqueFd fd(open(node->source_path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd) {
      status = Error::from_errno(errno, "open " + node->source_path);
      return;
    }
    ReadFn read = [&](uint8_t* buf, size_t len) -> Result<size_t> {
      ssize_t n;
      do n = ::read(fd.get(), buf, len);
      while (n < 0 && errno == EINTR);
      if (n < 0) return Error::from_errno(errno, "read " + node->source_path);
      return size_t(n);
    };
    auto chunks = sink.add_file(node->size, read);
    if (!chunks.ok()) {
      status = std::move(chunks).error().wrap(node->source_path);
      return;
    }
    node->chunks = std::move(*chunks);
  });
  return status;
}

}  // namespace nydus::builder
