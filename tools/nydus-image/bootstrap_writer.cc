#include "tools/nydus-image/bootstrap_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/unique_fd.h"
#include "tools/nydus-image/meta_layout.h"
#include "tools/nydus-image/xattr.h"

namespace nydus::builder {

using rafs::kBlockSize;
using rafs::round_up;

namespace {

constexpr uint64_t kFlatAlignment = 512 * 1024;

uint64_t compressor_flag(rafs::Compressor c) {
  switch (c) {
    case rafs::Compressor::kNone: return rafs::ext_flags::kCompressNone;
    case rafs::Compressor::kLz4Block: return rafs::ext_flags::kCompressLz4;
    case rafs::Compressor::kGzip: return rafs::ext_flags::kCompressGzip;
    case rafs::Compressor::kZstd: return rafs::ext_flags::kCompressZstd;
  }
  return rafs::ext_flags::kCompressNone;
}

uint32_t encode_rdev(uint32_t major, uint32_t minor) {
  // Linux "new" dev_t encoding (§6).
  return (minor & 0xff) | (major << 8) | ((minor & ~0xffu) << 12);
}

void put_id(uint8_t (&dst)[64], const std::string& id) {
  std::memcpy(dst, id.data(), std::min(id.size(), sizeof(dst)));
}

class Writer {
 public:
  Writer(const Image& img, const MetaPlan& plan, std::vector<uint8_t>& out) : img_(img), plan_(plan), out_(out) {}

  Status write_all() {
    write_headers();
    for (const Inode* node : plan_.order) NYDUS_TRY(write_inode(*node));
    write_chunk_table();
    return ok_status();
  }

 private:
  template <typename T>
  void put(uint64_t off, const T& v) {
    std::memcpy(out_.data() + off, &v, sizeof(T));
  }
  void put_bytes(uint64_t off, const void* p, size_t n) {
    if (n) std::memcpy(out_.data() + off, p, n);
  }

  void write_headers() {
    std::vector<uint64_t> blocks;
    for (const auto& b : img_.blobs) blocks.push_back(b.uncompressed_size / kBlockSize);
    std::vector<uint32_t> mapped = flat_mapped_blkaddrs(plan_.file_size, blocks);

    rafs::SuperBlock sb{};
    sb.magic = rafs::kErofsMagic;
    sb.feature_compat = rafs::kCompatRafsV6;
    sb.blkszbits = rafs::kBlockSizeBits;
    sb.root_nid = rafs::kRootNid;
    sb.inos = plan_.inos;
    uint64_t total_blocks = 0;
    for (uint64_t b : blocks) total_blocks += b;
    sb.blocks = uint32_t(total_blocks);
    sb.meta_blkaddr = plan_.meta_blkaddr;
    sb.feature_incompat = rafs::kIncompatRafsV6;
    sb.extra_devices = uint16_t(img_.blobs.size());
    sb.devt_slotoff = rafs::kDeviceSlotOffset;
    put(rafs::kSuperOffset, sb);

    rafs::ExtSuperBlock ext{};
    ext.flags = compressor_flag(img_.compressor) |
                (img_.digester == rafs::Digester::kSha256 ? rafs::ext_flags::kDigestSha256
                                                          : rafs::ext_flags::kDigestBlake3) |
                rafs::ext_flags::kExplicitUidGid | rafs::ext_flags::kEncryptionNone |
                (plan_.has_xattrs ? rafs::ext_flags::kHasXattr : 0);
    ext.blob_table_offset = blob_table_offset(img_.blobs.size());
    ext.blob_table_size = uint32_t(sizeof(rafs::BlobEntry) * img_.blobs.size());
    ext.chunk_size = img_.chunk_size;
    ext.chunk_table_offset = plan_.chunk_table_offset;
    ext.chunk_table_size = sizeof(rafs::ChunkTableEntry) * img_.chunks.size();
    put(rafs::kExtSuperOffset, ext);

    for (size_t i = 0; i < img_.blobs.size(); ++i) {
      const rafs::BlobInfo& b = img_.blobs[i];
      rafs::DeviceSlot slot{};
      put_id(slot.tag, b.blob_id);
      slot.blocks = uint32_t(blocks[i]);
      slot.mapped_blkaddr = mapped[i];
      put(rafs::kDeviceTableOffset + i * sizeof(slot), slot);

      rafs::BlobEntry e{};
      put_id(e.blob_id, b.blob_id);
      e.blob_index = uint32_t(i);
      e.chunk_size = img_.chunk_size;
      e.chunk_count = b.chunk_count;
      e.compression_algo = uint32_t(b.compressor);
      e.digest_algo = uint32_t(b.digester);
      e.features = b.features;
      e.compressed_size = b.compressed_size;
      e.uncompressed_size = b.uncompressed_size;
      e.ci_compressor = uint32_t(b.ci_compressor);
      e.ci_offset = b.ci_offset;
      e.ci_compressed_size = b.ci_compressed_size;
      e.ci_uncompressed_size = b.ci_uncompressed_size;
      put(ext.blob_table_offset + i * sizeof(e), e);
    }
  }

  uint64_t nid_of(const Inode* node) const { return plan_.inodes.at(node).nid; }

  // True when every chunk lies in one blob, each right after the previous.
  bool contiguous(const Inode& node) const {
    if (node.chunks.size() < 2) return false;
    const auto& first = img_.chunks[node.chunks[0]];
    for (size_t k = 1; k < node.chunks.size(); ++k) {
      const auto& c = img_.chunks[node.chunks[k]];
      if (c.blob_index != first.blob_index ||
          c.uncompressed_offset != first.uncompressed_offset + k * uint64_t(img_.chunk_size))
        return false;
    }
    return true;
  }

  Status write_inode(const Inode& node) {
    const InodePlan& ip = plan_.inodes.at(&node);
    rafs::ExtendedInode di{};
    rafs::DataLayout layout = rafs::DataLayout::kFlatPlain;
    uint64_t pos = ip.offset + kInodeSize;
    std::vector<uint8_t> xattrs = encode_xattrs(node.xattrs);
    put_bytes(pos, xattrs.data(), xattrs.size());
    pos += xattrs.size();

    if (node.is_reg()) {
      layout = rafs::DataLayout::kChunkBased;
      di.i_size = node.size;
      di.i_u = chunk_format(img_.chunk_size, node.size, contiguous(node));
      uint64_t expected = rafs::round_up(node.size, img_.chunk_size) / img_.chunk_size;
      if (node.chunks.size() != expected)
        return make_error(ErrorKind::kInternal, "file of {} bytes has {} chunks, expected {}", node.size,
                          node.chunks.size(), expected);
      pos = round_up(pos, 8);
      for (uint32_t idx : node.chunks) {
        const auto& c = img_.chunks[idx];
        put(pos, rafs::ChunkAddr::make(c.blob_index, c.index, uint32_t(c.uncompressed_offset / kBlockSize)));
        pos += sizeof(rafs::ChunkAddr);
      }
    } else if (node.is_dir() || node.is_symlink()) {
      layout = ip.data.layout;
      std::vector<uint8_t> data;
      if (node.is_dir()) {
        std::vector<DirentSpec> entries{{".", ip.nid, rafs::kFtDirectory}, {"..", ip.parent_nid, rafs::kFtDirectory}};
        for (const auto& [name, child] : node.children)
          entries.push_back({name, nid_of(child.get()), file_type_of(child->mode)});
        std::vector<DirBlock> blocks = pack_dirents(std::move(entries));
        for (size_t i = 0; i < blocks.size(); ++i) {
          auto bytes = encode_dir_block(blocks[i], i + 1 < blocks.size());
          data.insert(data.end(), bytes.begin(), bytes.end());
        }
      } else {
        data.assign(node.symlink.begin(), node.symlink.end());
      }
      di.i_size = data.size();
      uint64_t out_of_line = std::min<uint64_t>(data.size(), ip.data.full_blocks * kBlockSize);
      if (ip.data.full_blocks) {
        di.i_u = ip.data_blkaddr;
        put_bytes(uint64_t(ip.data_blkaddr) * kBlockSize, data.data(), out_of_line);
      }
      put_bytes(pos, data.data() + out_of_line, ip.data.inline_tail);
    } else if (node.is_device()) {
      di.i_u = encode_rdev(node.rdev_major, node.rdev_minor);
    }
    di.i_format = uint16_t(rafs::kInodeVersionMask | (uint16_t(layout) << rafs::kInodeLayoutShift));
    di.i_xattr_icount = xattr_icount(node.xattrs);
    di.i_mode = uint16_t(node.mode);
    di.i_ino = ip.ino;
    di.i_uid = node.uid;
    di.i_gid = node.gid;
    di.i_mtime = node.mtime;
    di.i_mtime_nsec = node.mtime_nsec;
    di.i_nlink = ip.nlink;
    put(ip.offset, di);
    return ok_status();
  }

  // Sorted by (digest, blob) as current nydus-image does; readers key
  // entries by (blob, CI index), so the order is cosmetic.
  void write_chunk_table() {
    std::vector<rafs::ChunkTableEntry> table = img_.chunks;
    std::sort(table.begin(), table.end(), [](const auto& a, const auto& b) {
      int c = std::memcmp(a.digest, b.digest, sizeof(a.digest));
      if (c != 0) return c < 0;
      if (a.blob_index != b.blob_index) return a.blob_index < b.blob_index;
      return a.index < b.index;
    });
    put_bytes(plan_.chunk_table_offset, table.data(), table.size() * sizeof(rafs::ChunkTableEntry));
  }

  const Image& img_;
  const MetaPlan& plan_;
  std::vector<uint8_t>& out_;
};

}  // namespace

std::vector<uint32_t> flat_mapped_blkaddrs(uint64_t bootstrap_size, const std::vector<uint64_t>& blob_blocks) {
  std::vector<uint32_t> mapped;
  uint64_t pos = round_up(bootstrap_size, kBlockSize);
  for (uint64_t blocks : blob_blocks) {
    uint64_t blk = round_up(pos, kFlatAlignment) / kBlockSize;
    mapped.push_back(uint32_t(blk));
    pos = (blk + blocks) * kBlockSize;
  }
  return mapped;
}

Result<std::vector<uint8_t>> write_bootstrap(const Image& img) {
  if (!img.root || !img.root->is_dir()) return make_error(ErrorKind::kInternal, "image has no root directory");
  if (img.blobs.size() > rafs::kMaxBlobs)
    return make_error(ErrorKind::kTooLarge, "{} blobs, at most {} fit in one image", img.blobs.size(), rafs::kMaxBlobs);
  MetaPlan plan = plan_meta(img, meta_blkaddr_for(img.blobs.size()));
  if (plan.file_size / kBlockSize > UINT32_MAX)
    return make_error(ErrorKind::kTooLarge, "bootstrap of {} bytes exceeds the 32-bit block space", plan.file_size);
  std::vector<uint8_t> out(plan.file_size, 0);
  NYDUS_TRY(Writer(img, plan, out).write_all());
  return out;
}

}  // namespace nydus::builder
