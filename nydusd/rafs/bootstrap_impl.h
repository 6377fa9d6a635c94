// Internal: the in-memory Bootstrap implementation. Split over several files,
// one job each:
//   bootstrap.cc      open(): superblock, ext superblock, device slots, blob
//                     table, chunk table, prefetch table (spec §3-5, §10, §11, §17)
//   inode.cc          inode records, flat data, symlinks, xattrs (§6, §8)
//   dir.cc            directory blocks, readdir, lookup (§7)
//   chunk_map.cc      chunk indexes -> ChunkRef (§9, §13)
//   validate_tree.cc  the whole-tree walk
//
// The whole file is held in memory; every access goes through a bounds check
// against bytes_. Nothing is cached after open(), so the object is immutable
// and its const methods are safe to call concurrently.
#pragma once

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "nydusd/rafs/bootstrap.h"
#include "nydusd/rafs/read_struct.h"

namespace nydus::rafs {

// A decoded, validated inode record with the locations a reader needs.
struct InodeView {
  InodeAttr attr;
  uint64_t offset = 0;        // byte offset of the inode in the bootstrap
  uint32_t inode_size = 0;    // 32 or 64
  uint32_t xattr_size = 0;    // inline xattr area, 0 if none
  uint32_t i_u = 0;           // raw union: raw block addr, chunk header or rdev
  uint64_t body_offset() const { return offset + inode_size + xattr_size; }
};

// One directory block: the dirent array and names (at most a block; the
// last block may be shorter, and may be the inline tail).
struct DirBlock {
  std::span<const uint8_t> bytes;
  uint64_t offset = 0;  // in the bootstrap, for error messages
  uint32_t count = 0;   // number of dirents (de[0].nameoff / 12)
};

class BootstrapImpl final : public Bootstrap {
 public:
  static Result<std::shared_ptr<const Bootstrap>> create(std::vector<uint8_t> bytes, std::string name);

  const SuperInfo& super() const override { return super_; }
  const std::vector<BlobInfo>& blobs() const override { return blobs_; }
  uint64_t root_nid() const override { return super_.root_nid; }

  Result<InodeAttr> getattr(uint64_t nid) const override;
  Result<uint64_t> lookup(uint64_t dir_nid, std::string_view name) const override;
  Status readdir(uint64_t dir_nid, uint64_t start,
                 const std::function<bool(const DirEntry&, uint64_t next)>& fn) const override;
  Result<std::string> readlink(uint64_t nid) const override;
  Result<std::vector<Xattr>> xattrs(uint64_t nid) const override;
  Result<std::vector<ChunkRef>> map_range(uint64_t nid, uint64_t offset, uint64_t length) const override;
  Result<std::vector<uint64_t>> prefetch_nids() const override;
  Status validate_tree() const override;
  std::span<const ChunkTableEntry> chunk_table() const override { return chunk_table_; }
  const ChunkTableEntry* find_chunk(uint32_t blob_index, uint32_t ci_index,
                                    uint64_t uncompressed_offset) const override;

  // inode.cc
  Result<InodeView> load_inode(uint64_t nid) const;
  // Bytes [0, size) of a PLAIN/INLINE inode's data in block `blk`
  // (the block itself, or the inline tail for the last block of INLINE).
  Result<DirBlock> flat_block(const InodeView& ino, uint64_t blk) const;
  Result<std::string> readlink_inode(const InodeView& ino) const;
  Result<std::vector<Xattr>> xattrs_inode(const InodeView& ino) const;

  // dir.cc
  Result<DirBlock> dir_block(const InodeView& dir, uint64_t blk) const;
  // Entry `i` of a validated block: its dirent and its name.
  Result<std::pair<Dirent, std::string_view>> dir_entry(const InodeView& dir, const DirBlock& b,
                                                        uint32_t i) const;
  Result<InodeView> load_dir(uint64_t nid) const;

  // chunk_map.cc
  Result<std::vector<ChunkRef>> map_inode(const InodeView& ino, uint64_t offset, uint64_t length) const;

  // "bootstrap <name>: <message>" with kind kCorrupt.
  template <typename... Args>
  Error corrupt(fmt::format_string<Args...> f, Args&&... args) const {
    return Error(ErrorKind::kCorrupt,
                 fmt::format("bootstrap {}: {}", name_, fmt::format(f, std::forward<Args>(args)...)));
  }
  template <typename... Args>
  Error unsupported(fmt::format_string<Args...> f, Args&&... args) const {
    return Error(ErrorKind::kUnsupported,
                 fmt::format("bootstrap {}: {}", name_, fmt::format(f, std::forward<Args>(args)...)));
  }

  std::span<const uint8_t> bytes() const { return bytes_; }
  uint32_t block_size() const { return super_.block_size; }

 private:
  BootstrapImpl(std::vector<uint8_t> bytes, std::string name)
      : bytes_(std::move(bytes)), name_(std::move(name)) {}

  // bootstrap.cc, in the order open() runs them.
  Status parse_super();
  Status parse_ext_super();
  Status parse_devices_and_blobs();
  Status parse_chunk_table();
  Status check_root();

  std::vector<uint8_t> bytes_;
  std::string name_;
  SuperBlock sb_{};
  ExtSuperBlock ext_{};
  SuperInfo super_;
  std::vector<BlobInfo> blobs_;
  std::vector<ChunkTableEntry> chunk_table_;
  // (blob_index << 56 | ci_index << 32 | uoff / block size) -> chunk_table_ index
  std::unordered_map<uint64_t, uint32_t> chunk_by_key_;
};

// Kernel-style name order: raw unsigned bytes, a prefix sorts first.
inline int name_compare(std::string_view a, std::string_view b) {
  size_t n = std::min(a.size(), b.size());
  int c = n == 0 ? 0 : std::memcmp(a.data(), b.data(), n);
  if (c != 0) return c;
  return a.size() < b.size() ? -1 : (a.size() > b.size() ? 1 : 0);
}

}  // namespace nydus::rafs
