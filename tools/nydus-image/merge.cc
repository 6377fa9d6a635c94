#include "tools/nydus-image/merge.h"

#include <sys/stat.h>

#include <map>
#include <unordered_set>

#include "common/file_write.h"
#include "nydusd/rafs/bootstrap.h"
#include "tools/nydus-image/bootstrap_loader.h"
#include "tools/nydus-image/bootstrap_writer.h"
#include "tools/nydus-image/whiteout.h"

namespace nydus::builder {

void strip_markers(Inode& dir) {
  dir.xattrs.erase(std::string(kOpaqueXattr));
  for (auto it = dir.children.begin(); it != dir.children.end();) {
    if (it->second->is_whiteout()) {
      it = dir.children.erase(it);
      continue;
    }
    if (it->second->is_dir()) strip_markers(*it->second);
    ++it;
  }
}

void overlay_apply(Inode& lower, Inode& upper) {
  if (is_opaque_dir(upper)) lower.children.clear();
  // The merged directory shows the upper directory's own attributes.
  lower.mode = upper.mode;
  lower.uid = upper.uid;
  lower.gid = upper.gid;
  lower.mtime = upper.mtime;
  lower.mtime_nsec = upper.mtime_nsec;
  lower.xattrs = upper.xattrs;
  lower.xattrs.erase(std::string(kOpaqueXattr));
  for (auto& [name, u] : upper.children) {
    if (u->is_whiteout()) {
      lower.children.erase(name);
      continue;
    }
    auto it = lower.children.find(name);
    if (u->is_dir() && it != lower.children.end() && it->second->is_dir()) {
      overlay_apply(*it->second, *u);
      continue;
    }
    if (u->is_dir()) strip_markers(*u);
    lower.children[name] = u;
  }
}

namespace {

// Rewrites a layer's blob and chunk references into the merged tables.
void remap_layer(Image& layer, Image& out, std::map<std::string, uint32_t>& blob_ids,
                 std::map<std::pair<uint32_t, uint32_t>, uint32_t>& chunk_ids) {
  std::vector<uint32_t> blob_map;
  for (auto b : layer.blobs) {
    auto [it, added] = blob_ids.emplace(b.blob_id, uint32_t(out.blobs.size()));
    if (added) {
      b.index = it->second;
      out.blobs.push_back(b);
    }
    blob_map.push_back(it->second);
  }
  std::vector<uint32_t> chunk_map;
  for (auto c : layer.chunks) {
    c.blob_index = blob_map.at(c.blob_index);
    std::pair<uint32_t, uint32_t> key{uint32_t(c.blob_index), uint32_t(c.index)};
    auto [it, added] = chunk_ids.emplace(key, uint32_t(out.chunks.size()));
    if (added) out.chunks.push_back(c);
    chunk_map.push_back(it->second);
  }
  std::unordered_set<const Inode*> done;
  walk(layer.root, [&](const std::string&, const InodePtr& n, const Inode*) {
    if (!n->is_reg() || !done.insert(n.get()).second) return;
    for (auto& idx : n->chunks) idx = chunk_map.at(idx);
  });
}

}  // namespace

Result<Image> merge_images(std::vector<Image> layers) {
  if (layers.empty()) return make_error(ErrorKind::kInvalidArgument, "nothing to merge");
  Image out;
  out.chunk_size = layers[0].chunk_size;
  out.compressor = layers[0].compressor;
  out.digester = layers[0].digester;
  std::map<std::string, uint32_t> blob_ids;
  std::map<std::pair<uint32_t, uint32_t>, uint32_t> chunk_ids;
  for (size_t i = 0; i < layers.size(); ++i) {
    Image& layer = layers[i];
    if (layer.chunk_size != out.chunk_size)
      return make_error(ErrorKind::kUnsupported, "layer {} has chunk size {:#x}, layer 0 has {:#x}", i,
                        layer.chunk_size, out.chunk_size);
    remap_layer(layer, out, blob_ids, chunk_ids);
    convert_oci_whiteouts(*layer.root);
    if (i == 0) {
      out.root = layer.root;
    } else {
      overlay_apply(*out.root, *layer.root);
    }
  }
  strip_markers(*out.root);
  if (out.blobs.size() > rafs::kMaxBlobs)
    return make_error(ErrorKind::kTooLarge, "{} blobs, at most {} per image", out.blobs.size(), rafs::kMaxBlobs);
  return out;
}

Result<MergeResult> run_merge(const MergeOptions& opts) {
  std::vector<Image> layers;
  for (const auto& src : opts.sources) {
    NYDUS_ASSIGN_OR_RETURN(auto bs, rafs::Bootstrap::open(src));
    auto img = load_image(*bs);
    if (!img.ok()) return std::move(img).error().wrap(src);
    layers.push_back(std::move(*img));
  }
  NYDUS_ASSIGN_OR_RETURN(Image merged, merge_images(std::move(layers)));
  if (opts.blob_dir) {
    for (const auto& b : merged.blobs) {
      std::string path = *opts.blob_dir + "/" + b.blob_id;
      struct stat st;
      if (stat(path.c_str(), &st) != 0) return Error::from_errno(errno, "blob " + path);
    }
  }
  NYDUS_ASSIGN_OR_RETURN(auto bytes, write_bootstrap(merged));
  NYDUS_TRY(write_file_atomic(opts.bootstrap, bytes, 0644, Durability::kNotDurable));
  return MergeResult{merged.blobs.size(), merged.chunks.size(), bytes.size()};
}

}  // namespace nydus::builder
