#include "tools/nydus-image/meta_layout.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "tools/nydus-image/xattr.h"

namespace nydus::builder {

using rafs::kBlockSize;
using rafs::round_up;

namespace {
constexpr uint32_t kDirentSize = sizeof(rafs::Dirent);
}  // namespace

std::vector<DirBlock> pack_dirents(std::vector<DirentSpec> entries) {
  std::sort(entries.begin(), entries.end(), [](const DirentSpec& a, const DirentSpec& b) { return a.name < b.name; });
  std::vector<DirBlock> blocks;
  uint32_t used = kBlockSize;  // forces a first block
  for (auto& e : entries) {
    uint32_t need = kDirentSize + uint32_t(e.name.size());
    if (used + need > kBlockSize) {
      blocks.emplace_back();
      used = 0;
    }
    used += need;
    blocks.back().push_back(std::move(e));
  }
  return blocks;
}

uint32_t dir_block_used(const DirBlock& block) {
  uint32_t used = 0;
  for (const auto& e : block) used += kDirentSize + uint32_t(e.name.size());
  return used;
}

uint64_t dir_size(const std::vector<DirBlock>& blocks) {
  if (blocks.empty()) return 0;
  return (blocks.size() - 1) * uint64_t(kBlockSize) + dir_block_used(blocks.back());
}

std::vector<uint8_t> encode_dir_block(const DirBlock& block, bool pad) {
  std::vector<uint8_t> out(pad ? kBlockSize : dir_block_used(block), 0);
  uint32_t name_pos = kDirentSize * uint32_t(block.size());
  for (size_t i = 0; i < block.size(); ++i) {
    rafs::Dirent d{block[i].nid, uint16_t(name_pos), block[i].file_type, 0};
    std::memcpy(out.data() + i * kDirentSize, &d, sizeof(d));
    std::memcpy(out.data() + name_pos, block[i].name.data(), block[i].name.size());
    name_pos += uint32_t(block[i].name.size());
  }
  return out;
}

DataPlacement plan_data(uint64_t size, uint32_t inode_and_xattr_size) {
  DataPlacement p;
  uint32_t tail = uint32_t(size % kBlockSize);
  if (tail != 0 && uint64_t(inode_and_xattr_size) + tail <= kBlockSize) {
    p.layout = rafs::DataLayout::kFlatInline;
    p.full_blocks = size / kBlockSize;
    p.inline_tail = tail;
  } else {
    p.layout = rafs::DataLayout::kFlatPlain;
    p.full_blocks = round_up(size, kBlockSize) / kBlockSize;
  }
  return p;
}

uint16_t chunk_format(uint32_t chunk_size, uint64_t file_size, bool contiguous) {
  uint64_t extent = chunk_size;
  if (contiguous && file_size > chunk_size) extent = std::bit_ceil(file_size);
  uint32_t bits = uint32_t(std::countr_zero(extent)) - rafs::kBlockSizeBits;
  return uint16_t(rafs::kChunkFormatIndexes | std::min<uint32_t>(bits, rafs::kChunkFormatBitsMask));
}

uint64_t blob_table_offset(size_t nblobs) {
  return round_up(rafs::kDeviceTableOffset + sizeof(rafs::DeviceSlot) * nblobs, kBlockSize);
}

uint32_t meta_blkaddr_for(size_t nblobs) {
  uint64_t end = blob_table_offset(nblobs) + sizeof(rafs::BlobEntry) * nblobs;
  return uint32_t(round_up(end, kBlockSize) / kBlockSize);
}

namespace {

// Names of a directory's entries, for sizing (nids are not known yet).
std::vector<DirentSpec> dir_entry_names(const Inode& dir) {
  std::vector<DirentSpec> names{{".", 0, 0}, {"..", 0, 0}};
  for (const auto& [name, child] : dir.children) names.push_back({name, 0, 0});
  return names;
}

class Planner {
 public:
  Planner(const Image& img, MetaPlan& plan) : img_(img), plan_(plan) {}

  void run() {
    count_links(*img_.root);
    uint64_t meta_base = uint64_t(plan_.meta_blkaddr) * kBlockSize;
    cursor_ = meta_base + rafs::kRootNid * rafs::kInodeSlotSize;  // nids 0..127 stay unused
    place_dir(img_.root, 0, true);
    plan_.inode_area_end = cursor_;
    // Out-of-line directory and symlink blocks follow the inodes, in
    // placement order, so no inode has to skip ahead to a block boundary.
    uint64_t data = round_up(cursor_, kBlockSize);
    for (const Inode* node : plan_.order) {
      InodePlan& ip = plan_.inodes[node];
      if (ip.data.full_blocks == 0) continue;
      ip.data_blkaddr = uint32_t(data / kBlockSize);
      data += ip.data.full_blocks * kBlockSize;
    }
    plan_.chunk_table_offset = data;
    plan_.file_size = round_up(data + img_.chunks.size() * sizeof(rafs::ChunkTableEntry), kBlockSize);
  }

 private:
  void count_links(const Inode& dir) {
    for (const auto& [name, child] : dir.children) {
      ++plan_.inos;
      if (child->is_dir()) {
        ++subdirs_[&dir];
        count_links(*child);
      } else {
        ++names_[child.get()];
      }
    }
  }

  // Reserves room for one inode record of `total` bytes whose first
  // `contiguous` bytes must not cross a block (when they can fit in one).
  uint64_t reserve(uint64_t contiguous, uint64_t total) {
    uint64_t in_block = cursor_ % kBlockSize;
    if (contiguous <= kBlockSize && in_block + contiguous > kBlockSize) cursor_ = round_up(cursor_, kBlockSize);
    uint64_t at = cursor_;
    cursor_ = round_up(cursor_ + total, rafs::kInodeSlotSize);
    return at;
  }

  InodePlan& place(const InodePtr& node) {
    InodePlan& ip = plan_.inodes[node.get()];
    ip.xattr_size = xattr_area_size(node->xattrs);
    plan_.has_xattrs |= !node->xattrs.empty();
    uint32_t head = kInodeSize + ip.xattr_size;
    uint64_t total = head;
    if (node->is_dir() || node->is_symlink()) {
      uint64_t size = node->is_dir() ? dir_size(pack_dirents(dir_entry_names(*node))) : node->symlink.size();
      ip.data = plan_data(size, head);
      total += ip.data.inline_tail;
    } else if (node->is_reg() && !node->chunks.empty()) {
      total = round_up(head, 8) + 8 * node->chunks.size();
    }
    uint64_t contiguous = head + ip.data.inline_tail;
    ip.offset = reserve(contiguous, total);
    ip.nid = (ip.offset - uint64_t(plan_.meta_blkaddr) * kBlockSize) / rafs::kInodeSlotSize;
    ip.ino = ++next_ino_;
    ip.nlink = node->is_dir() ? 2 + subdirs_[node.get()] : std::max<uint32_t>(1, names_[node.get()]);
    plan_.order.push_back(node.get());
    return ip;
  }

  void place_dir(const InodePtr& dir, uint64_t parent_nid, bool is_root) {
    InodePlan& ip = place(dir);
    ip.parent_nid = is_root ? ip.nid : parent_nid;
    uint64_t nid = ip.nid;
    for (const auto& [name, child] : dir->children)
      if (!child->is_dir() && !plan_.inodes.count(child.get())) place(child);
    for (const auto& [name, child] : dir->children)
      if (child->is_dir()) place_dir(child, nid, false);
  }

  const Image& img_;
  MetaPlan& plan_;
  uint64_t cursor_ = 0;
  uint32_t next_ino_ = 0;
  std::unordered_map<const Inode*, uint32_t> subdirs_;
  std::unordered_map<const Inode*, uint32_t> names_;
};

}  // namespace

MetaPlan plan_meta(const Image& img, uint32_t meta_blkaddr) {
  MetaPlan plan;
  plan.meta_blkaddr = meta_blkaddr;
  plan.inos = 1;  // the root
  Planner(img, plan).run();
  return plan;
}

}  // namespace nydus::builder
