// Kernel node ids of the nydusd VFS. They are derived from the image, never
// from a table, so that a successor daemon that restores the same mount
// indexes answers the very node ids the kernel already holds:
//
//   node id = mount_index << 56 | rafs_nid     (mount_index 1..255)
//   node id = pseudo_ino                        (mount_index 0: the pseudo fs
//                                                of mount-point directories)
//
// FUSE_ROOT_ID (1) is the pseudo root, unless an image is mounted at "/", in
// which case it is that image's root directory.
#pragma once

#include <cstdint>
#include <optional>

namespace nydus::fuse {

inline constexpr uint64_t kRootNodeId = 1;  // FUSE_ROOT_ID
inline constexpr unsigned kMountIndexShift = 56;
inline constexpr uint64_t kInoMask = (1ull << kMountIndexShift) - 1;
inline constexpr unsigned kMaxMountIndex = 255;
inline constexpr uint8_t kPseudoIndex = 0;

static_assert(sizeof(uint64_t) == 8, "fuse_ino_t is 64 bits on Linux");
static_assert((uint64_t{kMaxMountIndex} << kMountIndexShift) >> kMountIndexShift == kMaxMountIndex,
              "every mount index fits above the inode bits");

constexpr uint8_t node_mount_index(uint64_t node_id) {
  return static_cast<uint8_t>(node_id >> kMountIndexShift);
}
constexpr uint64_t node_ino(uint64_t node_id) { return node_id & kInoMask; }

// The node id of `ino` in mount `index`; nullopt when `ino` does not fit in
// 56 bits (an image claiming such a nid is corrupt) or is 0 in the pseudo fs.
constexpr std::optional<uint64_t> make_node_id(uint8_t index, uint64_t ino) {
  if (ino > kInoMask) return std::nullopt;
  uint64_t id = (uint64_t{index} << kMountIndexShift) | ino;
  if (id == 0) return std::nullopt;
  return id;
}

}  // namespace nydus::fuse
