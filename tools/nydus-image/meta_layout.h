// Pure layout decisions for the bootstrap's metadata area (§6, §7, §9, §19):
// directory block packing, inline-versus-plain data, inode placement and
// nid assignment. Nothing here does I/O, so each rule is unit-testable.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "nydusd/rafs/layout.h"
#include "tools/nydus-image/tree.h"

namespace nydus::builder {

inline constexpr uint32_t kInodeSize = sizeof(rafs::ExtendedInode);  // every inode is extended

struct DirentSpec {
  std::string name;
  uint64_t nid = 0;
  uint8_t file_type = 0;
};
using DirBlock = std::vector<DirentSpec>;

// Sorts `entries` (which include "." and "..") by raw name bytes and packs
// them greedily into blocks; an entry (12 bytes + name) never straddles one.
std::vector<DirBlock> pack_dirents(std::vector<DirentSpec> entries);
// Bytes a block uses: 12 per entry plus the names.
uint32_t dir_block_used(const DirBlock& block);
// i_size of a directory: (nblocks-1)*bs + bytes used in the last block.
uint64_t dir_size(const std::vector<DirBlock>& blocks);
// The bytes of one block: the dirent array then the names. `pad` extends it
// to a whole block with zeros (every block but an inline tail).
std::vector<uint8_t> encode_dir_block(const DirBlock& block, bool pad);

// Where the data of a directory or symlink goes (§7 Placement).
struct DataPlacement {
  rafs::DataLayout layout = rafs::DataLayout::kFlatPlain;
  uint64_t full_blocks = 0;  // blocks stored out of line at i_u
  uint32_t inline_tail = 0;  // bytes stored right after the inode and xattrs
};
// INLINE when the tail (size % bs) is non-zero and inode + xattrs + tail fit
// in one block; otherwise PLAIN with every block out of line.
DataPlacement plan_data(uint64_t size, uint32_t inode_and_xattr_size);

// The chunk header format (i_u low 16 bits) of a regular file (§9). When
// every chunk sits contiguously in one blob the "contiguous" form covers
// the whole file with one extent, which lets the kernel map it at once.
uint16_t chunk_format(uint32_t chunk_size, uint64_t file_size, bool contiguous);

struct InodePlan {
  uint64_t nid = 0;
  uint64_t offset = 0;  // absolute byte offset in the bootstrap
  uint32_t ino = 0;     // i_ino: sequential from 1, shared by hard links
  uint32_t nlink = 0;
  uint32_t xattr_size = 0;
  DataPlacement data;   // directories and symlinks
  uint32_t data_blkaddr = 0;  // first out-of-line block, when data.full_blocks > 0
  uint64_t parent_nid = 0;    // directories: the ".." target
};

struct MetaPlan {
  uint32_t meta_blkaddr = 0;
  uint64_t inode_area_end = 0;
  uint64_t chunk_table_offset = 0;  // 4 KiB aligned, after the out-of-line data
  uint64_t file_size = 0;           // 4 KiB aligned end of the bootstrap
  uint64_t inos = 0;                // every name counts, as nydus-image does
  bool has_xattrs = false;
  std::unordered_map<const Inode*, InodePlan> inodes;
  std::vector<const Inode*> order;  // placement order (each inode once)
};

// Places every inode of `img` below `meta_blkaddr` (root at nid 128), then
// the out-of-line data blocks, then the chunk table.
MetaPlan plan_meta(const Image& img, uint32_t meta_blkaddr);

// Offsets of the tables in block 0 and after (§19 steps 3-5).
uint64_t blob_table_offset(size_t nblobs);
uint32_t meta_blkaddr_for(size_t nblobs);

}  // namespace nydus::builder
