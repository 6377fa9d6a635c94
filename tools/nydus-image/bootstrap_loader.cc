#include "tools/nydus-image/bootstrap_loader.h"

#include <sys/sysmacros.h>

#include <cstring>
#include <map>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace nydus::builder {

namespace {

class Loader {
 public:
  explicit Loader(const rafs::Bootstrap& bs) : bs_(bs) {}

  Result<Image> run() {
    const rafs::SuperInfo& sb = bs_.super();
    img_.chunk_size = sb.chunk_size;
    img_.compressor = sb.compressor;
    img_.digester = sb.digester;
    img_.blobs = bs_.blobs();
    NYDUS_ASSIGN_OR_RETURN(rafs::InodeAttr root_attr, bs_.getattr(bs_.root_nid()));
    NYDUS_ASSIGN_OR_RETURN(img_.root, make_inode(root_attr));
    seen_dirs_.insert(root_attr.nid);
    // An explicit stack: image depth never reaches the call stack.
    std::vector<std::pair<uint64_t, InodePtr>> pending{{root_attr.nid, img_.root}};
    while (!pending.empty()) {
      auto [nid, dir] = std::move(pending.back());
      pending.pop_back();
      std::vector<rafs::DirEntry> entries;
      NYDUS_TRY(bs_.readdir(nid, 0, [&](const rafs::DirEntry& e, uint64_t) {
        if (e.name != "." && e.name != "..") entries.push_back(e);
        return true;
      }));
      for (const auto& e : entries) {
        NYDUS_ASSIGN_OR_RETURN(rafs::InodeAttr attr, bs_.getattr(e.nid));
        InodePtr child;
        if (S_ISDIR(attr.mode)) {
          if (!seen_dirs_.insert(attr.nid).second)
            return make_error(ErrorKind::kCorrupt, "directory nid {} is reachable twice", attr.nid);
          NYDUS_ASSIGN_OR_RETURN(child, make_inode(attr));
          pending.emplace_back(attr.nid, child);
        } else if (S_ISREG(attr.mode)) {
          auto it = files_.find(attr.nid);  // hard links share the nid
          if (it == files_.end()) {
            NYDUS_ASSIGN_OR_RETURN(child, make_inode(attr));
            it = files_.emplace(attr.nid, child).first;
          }
          child = it->second;
        } else {
          NYDUS_ASSIGN_OR_RETURN(child, make_inode(attr));
        }
        dir->children.emplace(e.name, std::move(child));
      }
    }
    return std::move(img_);
  }

 private:
  Result<InodePtr> make_inode(const rafs::InodeAttr& a) {
    auto n = std::make_shared<Inode>();
    n->mode = a.mode;
    n->uid = a.uid;
    n->gid = a.gid;
    n->mtime = a.mtime;
    n->mtime_nsec = a.mtime_nsec;
    if (S_ISCHR(a.mode) || S_ISBLK(a.mode)) {
      n->rdev_major = major(a.rdev);
      n->rdev_minor = minor(a.rdev);
    }
    NYDUS_ASSIGN_OR_RETURN(auto xattrs, bs_.xattrs(a.nid));
    for (auto& x : xattrs) n->xattrs.emplace(std::move(x.name), std::move(x.value));
    if (S_ISLNK(a.mode)) {
      NYDUS_ASSIGN_OR_RETURN(n->symlink, bs_.readlink(a.nid));
    } else if (S_ISREG(a.mode)) {
      n->size = a.size;
      NYDUS_ASSIGN_OR_RETURN(auto refs, bs_.map_range(a.nid, 0, a.size));
      for (const auto& r : refs) n->chunks.push_back(chunk_index(r));
    }
    return n;
  }

  uint32_t chunk_index(const rafs::ChunkRef& r) {
    auto key = std::make_pair(r.blob_index, r.ci_index);
    if (auto it = chunk_ids_.find(key); it != chunk_ids_.end()) return it->second;
    rafs::ChunkTableEntry e{};
    if (const rafs::ChunkTableEntry* t = bs_.find_chunk(r.blob_index, r.ci_index, r.uncompressed_offset)) {
      e = *t;
    } else {
      if (r.digest) std::memcpy(e.digest, r.digest->data(), r.digest->size());
      e.blob_index = r.blob_index;
      e.flags = r.compressed ? rafs::chunk_flags::kCompressed : 0;
      e.compressed_size = r.compressed_size;
      e.uncompressed_size = r.uncompressed_size;
      e.compressed_offset = r.compressed_offset;
      e.uncompressed_offset = r.uncompressed_offset;
      e.file_offset = r.file_offset;
      e.index = r.ci_index;
    }
    uint32_t idx = uint32_t(img_.chunks.size());
    img_.chunks.push_back(e);
    chunk_ids_.emplace(key, idx);
    return idx;
  }

  const rafs::Bootstrap& bs_;
  Image img_;
  std::unordered_set<uint64_t> seen_dirs_;
  std::unordered_map<uint64_t, InodePtr> files_;
  std::map<std::pair<uint32_t, uint32_t>, uint32_t> chunk_ids_;
};

}  // namespace

Result<Image> load_image(const rafs::Bootstrap& bs) { return Loader(bs).run(); }

}  // namespace nydus::builder
