#include "tools/nydus-image/tar_reader.h"

#include <archive.h>
#include <archive_entry.h>

#include <memory>
#include <string_view>
#include <vector>

#include <spdlog/spdlog.h>

#include "nydusd/rafs/layout.h"
#include "tools/nydus-image/xattr.h"

namespace nydus::builder {

namespace {

struct ArchiveCloser {
  void operator()(struct archive* a) const { archive_read_free(a); }
};
using ArchivePtr = std::unique_ptr<struct archive, ArchiveCloser>;

// Names as stored. libarchive converts PAX (UTF-8) names to the process
// locale and returns NULL when it cannot (a C locale and a non-ASCII name);
// the UTF-8 form is then the stored bytes. Raw ustar/GNU names come back
// unchanged from the plain accessors.
const char* entry_path(struct archive_entry* e) {
  const char* p = archive_entry_pathname(e);
  return p ? p : archive_entry_pathname_utf8(e);
}
const char* entry_hardlink(struct archive_entry* e) {
  const char* p = archive_entry_hardlink(e);
  return p ? p : archive_entry_hardlink_utf8(e);
}
const char* entry_symlink(struct archive_entry* e) {
  const char* p = archive_entry_symlink(e);
  return p ? p : archive_entry_symlink_utf8(e);
}

// Splits a tar path into components, dropping "", "." and leading "/".
Result<std::vector<std::string>> split_path(std::string_view path) {
  std::vector<std::string> parts;
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t end = path.find('/', pos);
    if (end == std::string_view::npos) end = path.size();
    std::string_view part = path.substr(pos, end - pos);
    pos = end + 1;
    if (part.empty() || part == ".") continue;
    if (part == "..") return make_error(ErrorKind::kCorrupt, "tar path '{}' escapes the root", path);
    if (part.size() > rafs::kMaxNameLen)
      return make_error(ErrorKind::kUnsupported, "tar path '{}': name longer than 255 bytes", path);
    parts.emplace_back(part);
  }
  return parts;
}

class TarLayerReader {
 public:
  TarLayerReader(struct archive* a, ContentSink& sink) : a_(a), sink_(sink), root_(make_dir()) {}

  Result<InodePtr> read_all() {
    struct archive_entry* entry;
    for (;;) {
      int rc = archive_read_next_header(a_, &entry);
      if (rc == ARCHIVE_EOF) break;
      if (rc == ARCHIVE_WARN) spdlog::warn("tar: {}", archive_error_string(a_));
      else if (rc != ARCHIVE_OK) return archive_error("read header");
      NYDUS_TRY(add_entry(entry));
    }
    return root_;
  }

 private:
  Error archive_error(std::string_view what) const {
    const char* msg = archive_error_string(a_);
    return make_error(ErrorKind::kCorrupt, "tar {}: {}", what, msg ? msg : "unknown error");
  }

  // The directory holding `parts[0..n-1]`, created (0755, root) where missing.
  Result<Inode*> parent_dir(const std::vector<std::string>& parts, std::string_view path) {
    Inode* dir = root_.get();
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      auto it = dir->children.find(parts[i]);
      if (it == dir->children.end()) it = dir->children.emplace(parts[i], make_dir()).first;
      if (!it->second->is_dir())
        return make_error(ErrorKind::kCorrupt, "tar path '{}': '{}' is not a directory", path, parts[i]);
      dir = it->second.get();
    }
    return dir;
  }

  Result<InodePtr> find(std::string_view path) {
    NYDUS_ASSIGN_OR_RETURN(auto parts, split_path(path));
    InodePtr node = root_;
    for (const auto& p : parts) {
      if (!node->is_dir()) return InodePtr();
      auto it = node->children.find(p);
      if (it == node->children.end()) return InodePtr();
      node = it->second;
    }
    return node;
  }

  void read_attrs(struct archive_entry* e, Inode& node) {
    node.mode = archive_entry_mode(e);
    node.uid = uint32_t(archive_entry_uid(e));
    node.gid = uint32_t(archive_entry_gid(e));
    node.mtime = uint64_t(archive_entry_mtime(e));
    node.mtime_nsec = uint32_t(archive_entry_mtime_nsec(e));
    node.xattrs.clear();
    archive_entry_xattr_reset(e);
    const char* name;
    const void* value;
    size_t size;
    while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
      std::string_view v(static_cast<const char*>(value), size);
      if (std::string why = xattr_unstorable_reason(name, v); !why.empty()) {
        spdlog::warn("tar {}: skipping xattr {}: {}", entry_path(e), name, why);
        continue;
      }
      node.xattrs.emplace(name, v);
    }
  }

  Status read_content(struct archive_entry* e, Inode& node) {
    node.size = archive_entry_size_is_set(e) ? uint64_t(archive_entry_size(e)) : 0;
    node.chunks.clear();
    if (node.size == 0) return ok_status();
    ReadFn read = [this](uint8_t* buf, size_t len) -> Result<size_t> {
      la_ssize_t n = archive_read_data(a_, buf, len);
      if (n < 0) return archive_error("read data");
      return size_t(n);
    };
    NYDUS_ASSIGN_OR_RETURN(node.chunks, sink_.add_file(node.size, read));
    return ok_status();
  }

  Status add_entry(struct archive_entry* e) {
    const char* raw_path = entry_path(e);
    if (raw_path == nullptr) return make_error(ErrorKind::kCorrupt, "tar entry without a path");
    NYDUS_ASSIGN_OR_RETURN(auto parts, split_path(raw_path));
    if (parts.empty()) {  // "./": the layer root's own attributes
      read_attrs(e, *root_);
      root_->mode = S_IFDIR | (root_->mode & 07777);
      return ok_status();
    }
    NYDUS_ASSIGN_OR_RETURN(Inode* parent, parent_dir(parts, raw_path));
    const std::string& name = parts.back();

    if (const char* target = entry_hardlink(e)) {
      NYDUS_ASSIGN_OR_RETURN(InodePtr linked, find(target));
      if (!linked) return make_error(ErrorKind::kCorrupt, "tar hard link {} -> missing {}", raw_path, target);
      if (linked->is_dir()) return make_error(ErrorKind::kCorrupt, "tar hard link {} to a directory", raw_path);
      // Only regular files are hard links in RAFS; other kinds become copies.
      parent->children[name] = linked->is_reg() ? linked : std::make_shared<Inode>(*linked);
      return ok_status();
    }

    auto it = parent->children.find(name);
    if (archive_entry_filetype(e) == AE_IFDIR && it != parent->children.end() && it->second->is_dir()) {
      read_attrs(e, *it->second);  // a repeated directory keeps its children
      return ok_status();
    }
    auto node = std::make_shared<Inode>();
    read_attrs(e, *node);
    switch (archive_entry_filetype(e)) {
      case AE_IFREG:
        NYDUS_TRY(read_content(e, *node));
        break;
      case AE_IFLNK: {
        const char* target = entry_symlink(e);
        node->symlink = target ? target : "";
        if (node->symlink.empty() || node->symlink.size() > rafs::kMaxSymlinkLen)
          return make_error(ErrorKind::kUnsupported, "tar symlink {}: target length {} not in 1..4096", raw_path,
                            node->symlink.size());
        break;
      }
      case AE_IFCHR:
      case AE_IFBLK:
        node->rdev_major = uint32_t(archive_entry_rdevmajor(e));
        node->rdev_minor = uint32_t(archive_entry_rdevminor(e));
        break;
      case AE_IFDIR:
      case AE_IFIFO:
      case AE_IFSOCK:
        break;
      default:
        return make_error(ErrorKind::kUnsupported, "tar entry {}: unsupported type {:o}", raw_path,
                          unsigned(archive_entry_filetype(e)));
    }
    parent->children[name] = std::move(node);
    return ok_status();
  }

  struct archive* a_;
  ContentSink& sink_;
  InodePtr root_;
};

}  // namespace

Result<InodePtr> read_tar_layer(const std::string& path, WhiteoutSpec spec, ContentSink& sink) {
  ArchivePtr a(archive_read_new());
  if (!a) return make_error(ErrorKind::kInternal, "archive_read_new failed");
  archive_read_support_filter_all(a.get());
  archive_read_support_format_tar(a.get());
  if (archive_read_open_filename(a.get(), path.c_str(), 1 << 20) != ARCHIVE_OK)
    return make_error(ErrorKind::kInvalidArgument, "open tar {}: {}", path, archive_error_string(a.get()));
  TarLayerReader reader(a.get(), sink);
  NYDUS_ASSIGN_OR_RETURN(InodePtr root, reader.read_all());
  if (spec == WhiteoutSpec::kOci) convert_oci_whiteouts(*root);
  return root;
}

}  // namespace nydus::builder
