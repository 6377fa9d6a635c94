#include "tools/nydus-image/whiteout.h"

#include <string>
#include <vector>

namespace nydus::builder {

Result<WhiteoutSpec> parse_whiteout_spec(std::string_view name) {
  if (name == "oci") return WhiteoutSpec::kOci;
  if (name == "overlayfs") return WhiteoutSpec::kOverlayfs;
  if (name == "none") return WhiteoutSpec::kNone;
  return make_error(ErrorKind::kInvalidArgument, "unknown whiteout spec '{}' (oci, overlayfs, none)", name);
}

bool is_opaque_dir(const Inode& dir) {
  auto it = dir.xattrs.find(std::string(kOpaqueXattr));
  return dir.is_dir() && it != dir.xattrs.end() && it->second == "y";
}

void convert_oci_whiteouts(Inode& dir) {
  std::vector<std::string> markers;
  for (auto& [name, child] : dir.children) {
    if (name.compare(0, kWhiteoutPrefix.size(), kWhiteoutPrefix) == 0) markers.push_back(name);
    if (child->is_dir()) convert_oci_whiteouts(*child);
  }
  for (const auto& marker : markers) {
    InodePtr src = dir.children[marker];
    dir.children.erase(marker);
    if (marker == kOpaqueMarker) {
      dir.xattrs[std::string(kOpaqueXattr)] = "y";
      continue;
    }
    std::string target = marker.substr(kWhiteoutPrefix.size());
    if (target.empty() || dir.children.count(target)) continue;
    auto wh = std::make_shared<Inode>();
    wh->mode = S_IFCHR;  // c--------- 0:0, what overlayfs itself creates
    wh->uid = src->uid;
    wh->gid = src->gid;
    wh->mtime = src->mtime;
    wh->mtime_nsec = src->mtime_nsec;
    dir.children.emplace(std::move(target), std::move(wh));
  }
}

}  // namespace nydus::builder
