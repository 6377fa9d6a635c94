// Layer deletion markers (§8).
//
// Two conventions exist for "this layer deletes NAME" and "this directory
// hides everything below it":
//   OCI:       an empty file `.wh.NAME`, and a file `.wh..wh..opq` in the dir;
//   overlayfs: a char device 0:0 named NAME, and xattr trusted.overlay.opaque=y.
// Images store the overlayfs form (the kernel's overlayfs understands it when
// layers are stacked). --whiteout-spec names the convention the *source*
// uses, i.e. what to convert.
#pragma once

#include <string_view>

#include "common/result.h"
#include "tools/nydus-image/tree.h"

namespace nydus::builder {

enum class WhiteoutSpec {
  kOci,        // convert `.wh.*` markers to the overlayfs form (default for tar layers)
  kOverlayfs,  // the source already uses the overlayfs form: keep it
  kNone,       // no markers at all: keep every entry as it is (default for directories)
};

inline constexpr std::string_view kWhiteoutPrefix = ".wh.";
inline constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";
inline constexpr std::string_view kOpaqueXattr = "trusted.overlay.opaque";

Result<WhiteoutSpec> parse_whiteout_spec(std::string_view name);

// Rewrites OCI markers below `root` into the overlayfs form. A `.wh.NAME`
// next to a real NAME in the same layer is dropped (OCI: a whiteout only
// applies to lower layers).
void convert_oci_whiteouts(Inode& root);

bool is_opaque_dir(const Inode& dir);

}  // namespace nydus::builder
