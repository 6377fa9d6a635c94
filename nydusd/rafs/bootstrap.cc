// Bootstrap::open(): reads the file and validates everything that is global
// to the image before any inode is touched: superblock (§3), extended
// superblock (§4), device slots (§5), blob table (§10), chunk table (§11) and
// the prefetch table's placement (§15), following the checks listed in §17.
// Errors name the structure, its byte offset and the offending field.
#include <sys/stat.h>

#include <algorithm>
#include <bit>
#include <set>

#include "nydusd/rafs/bootstrap_impl.h"
#include "common/file_io.h"

namespace nydus::rafs {

namespace {

// Bootstraps are metadata only; anything this large is not one we can hold.
constexpr uint64_t kMaxBootstrapSize = 4ull << 30;
constexpr uint8_t kTarfsBlockSizeBits = 9;
constexpr uint64_t kMaxCompressedBlobSize = 1ull << 40;
constexpr uint64_t kMaxUncompressedBlobSize = 1ull << 44;
constexpr uint32_t kMaxCiIndexCount = 1u << 24;  // CI indexes are 24 bits
constexpr uint32_t kBlobEntrySize = sizeof(BlobEntry);
constexpr uint32_t kChunkEntrySize = sizeof(ChunkTableEntry);
constexpr uint32_t kCompatSbChksum = 0x1;

// Bytes up to the first NUL of a fixed-size, NUL-padded field.
std::string c_string(const uint8_t* p, size_t n) {
  size_t len = 0;
  while (len < n && p[len] != 0) ++len;
  return std::string(reinterpret_cast<const char*>(p), len);
}

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const uint8_t c = uint8_t(s[i]);
    size_t extra;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      extra = 1, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3, cp = c & 0x07;
    } else {
      return false;
    }
    if (s.size() - i - 1 < extra) return false;
    for (size_t k = 1; k <= extra; ++k) {
      const uint8_t cc = uint8_t(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = cp << 6 | (cc & 0x3F);
    }
    // Reject overlong forms, surrogates and values past U+10FFFF.
    static constexpr uint32_t kMin[4] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += extra + 1;
  }
  return true;
}

struct Region {
  const char* name;
  uint64_t offset;
  uint64_t size;
};

const char* blob_feature_name(uint32_t bit) {
  switch (bit) {
    case blob_features::kZran: return "ZRAN";
    case blob_features::kSeparate: return "SEPARATE";
    case blob_features::kTarfs: return "TARFS";
    case blob_features::kBatch: return "BATCH";
    case blob_features::kEncrypted: return "ENCRYPTED";
    case blob_features::kExternal: return "EXTERNAL";
  }
  return "?";
}

}  // namespace

Result<std::shared_ptr<const Bootstrap>> Bootstrap::open(const std::string& path) {
  NYDUS_ASSIGN_OR_RETURN(auto bytes, read_file(path, kMaxBootstrapSize));
  return BootstrapImpl::create(std::move(bytes), path);
}

Result<std::shared_ptr<const Bootstrap>> Bootstrap::from_bytes(std::vector<uint8_t> bytes,
                                                               std::string name) {
  return BootstrapImpl::create(std::move(bytes), std::move(name));
}

Result<std::shared_ptr<const Bootstrap>> BootstrapImpl::create(std::vector<uint8_t> bytes,
                                                               std::string name) {
  std::shared_ptr<BootstrapImpl> b(new BootstrapImpl(std::move(bytes), std::move(name)));
  NYDUS_TRY(b->parse_super());
  NYDUS_TRY(b->parse_ext_super());
  NYDUS_TRY(b->parse_devices_and_blobs());
  NYDUS_TRY(b->parse_chunk_table());
  NYDUS_TRY(b->check_root());
  return std::shared_ptr<const Bootstrap>(std::move(b));
}

Status BootstrapImpl::parse_super() {
  const uint64_t size = bytes_.size();
  super_.file_size = size;
  auto v5_magic = read_struct<uint32_t>(bytes_, 0);
  auto v5_version = read_struct<uint32_t>(bytes_, 4);
  if (v5_magic && *v5_magic == kRafsV5Magic && v5_version && *v5_version == 0x500) {
    return unsupported("RAFS v5 bootstrap (magic {:#x} at offset 0); only v6 is supported", kRafsV5Magic);
  }
  if (size < kBlockSize) {
    return corrupt("file is {} bytes, smaller than one {}-byte block", size, kBlockSize);
  }
  sb_ = *read_struct<SuperBlock>(bytes_, kSuperOffset);
  const SuperBlock& sb = sb_;
  if (sb.magic != kErofsMagic) {
    return corrupt("superblock @0x400: magic {:#x}, want {:#x} (not a RAFS v6 bootstrap)", sb.magic,
                   kErofsMagic);
  }
  if (sb.checksum != 0) return corrupt("superblock @0x404: checksum {:#x} must be 0", sb.checksum);
  if ((sb.feature_compat & kCompatRafsV6) == 0) {
    return corrupt("superblock @0x408: feature_compat {:#x} lacks the RAFS v6 bit {:#x}",
                   sb.feature_compat, kCompatRafsV6);
  }
  // With SB_CHKSUM the kernel verifies a crc32c nydus never writes.
  if (sb.feature_compat & kCompatSbChksum) {
    return corrupt("superblock @0x408: feature_compat {:#x} sets SB_CHKSUM (0x1), which RAFS never uses",
                   sb.feature_compat);
  }
  if (sb.blkszbits == kTarfsBlockSizeBits) {
    return unsupported("superblock @0x40c: blkszbits 9 (tarfs mode) is not supported");
  }
  if (sb.blkszbits != kBlockSizeBits) {
    return corrupt("superblock @0x40c: blkszbits {} must be {}", sb.blkszbits, kBlockSizeBits);
  }
  const uint32_t bs = 1u << sb.blkszbits;
  if (size % bs != 0) return corrupt("file size {} is not a multiple of the block size {}", size, bs);
  if (sb.sb_extslots != 0) return corrupt("superblock @0x40d: sb_extslots {} must be 0", sb.sb_extslots);
  if (sb.inos == 0) return corrupt("superblock @0x410: inos is 0");
  if (sb.xattr_blkaddr != 0) {
    return unsupported("superblock @0x42c: xattr_blkaddr {} (shared xattrs) is not supported",
                       sb.xattr_blkaddr);
  }
  if (sb.feature_incompat != kIncompatRafsV6) {
    return corrupt("superblock @0x450: feature_incompat {:#x}, want exactly {:#x}", sb.feature_incompat,
                   kIncompatRafsV6);
  }
  if (sb.available_compr_algs != 0) {
    return corrupt("superblock @0x454: available_compr_algs {:#x} must be 0", sb.available_compr_algs);
  }
  if (sb.devt_slotoff != kDeviceSlotOffset) {
    return corrupt("superblock @0x458: devt_slotoff {} must be {}", sb.devt_slotoff, kDeviceSlotOffset);
  }
  // The kernel refuses a volume name without a NUL terminator.
  if (std::find(std::begin(sb.volume_name), std::end(sb.volume_name), 0) == std::end(sb.volume_name)) {
    return corrupt("superblock @0x440: volume_name is not NUL-terminated");
  }
  // Kernel 6.12 gives the reserved bytes meanings (dirblkbits @0x45a must be
  // 0 or it refuses to mount; xattr prefixes, packed nid); nydus writes zeros.
  for (size_t i = 0; i < sizeof(sb.reserved); ++i) {
    if (sb.reserved[i] != 0) {
      return corrupt("superblock @{:#x}: reserved byte{} is {:#x}, must be 0", 0x45a + i,
                     i == 0 ? " (dirblkbits)" : "", sb.reserved[i]);
    }
  }
  if (sb.extra_devices > kMaxBlobs) {
    return corrupt("superblock @0x456: extra_devices {} exceeds the limit {}", sb.extra_devices, kMaxBlobs);
  }
  if (sb.extra_devices == 0 && sb.blocks != 0 && sb.blocks != 4096) {
    return corrupt("superblock @0x424: blocks {} with no devices must be 0 or 4096", sb.blocks);
  }
  // The meta area must start inside the file, after block 0.
  if (sb.meta_blkaddr == 0 || uint64_t(sb.meta_blkaddr) * bs >= size) {
    return corrupt("superblock @0x428: meta_blkaddr {} is outside the file ({} blocks)", sb.meta_blkaddr,
                   size / bs);
  }
  super_.block_size = bs;
  super_.root_nid = sb.root_nid;
  super_.inodes = sb.inos;
  super_.meta_blkaddr = sb.meta_blkaddr;
  super_.build_time = sb.build_time;
  super_.blocks = sb.blocks;
  return ok_status();
}

Status BootstrapImpl::parse_ext_super() {
  namespace ef = ext_flags;
  ext_ = *read_struct<ExtSuperBlock>(bytes_, kExtSuperOffset);
  const ExtSuperBlock& ext = ext_;
  const uint64_t size = bytes_.size();
  const uint64_t flags = ext.flags;
  if (flags & ~ef::kKnown) {
    return corrupt("ext superblock @0x480: unknown flags {:#x} in {:#x}", flags & ~ef::kKnown, flags);
  }
  if (std::popcount(flags & ef::kCompressMask) != 1) {
    return corrupt("ext superblock @0x480: flags {:#x} must have exactly one compression bit", flags);
  }
  if (std::popcount(flags & ef::kDigestMask) != 1) {
    return corrupt("ext superblock @0x480: flags {:#x} must have exactly one digest bit", flags);
  }
  if (flags & ef::kTarfsMode) return unsupported("ext superblock @0x480: tarfs mode is not supported");
  if (flags & ef::kEncryptionAes128Xts) {
    return unsupported("ext superblock @0x480: encrypted images are not supported");
  }
  const uint32_t cs = ext.chunk_size;
  if (!std::has_single_bit(cs) || cs < kMinChunkSize || cs > kMaxChunkSize) {
    return corrupt("ext superblock @0x494: chunk_size {:#x} must be a power of two in [{:#x}, {:#x}]", cs,
                   kMinChunkSize, kMaxChunkSize);
  }

  // Table placement: aligned, inside the file, and not overlapping.
  const uint32_t bs = super_.block_size;
  if (ext.blob_table_size % kBlobEntrySize != 0) {
    return corrupt("ext superblock @0x490: blob_table_size {} is not a multiple of {}", ext.blob_table_size,
                   kBlobEntrySize);
  }
  if (ext.chunk_table_size % kChunkEntrySize != 0) {
    return corrupt("ext superblock @0x4a0: chunk_table_size {} is not a multiple of {}",
                   ext.chunk_table_size, kChunkEntrySize);
  }
  if (ext.prefetch_table_size % 4 != 0) {
    return corrupt("ext superblock @0x4b0: prefetch_table_size {} is not a multiple of 4",
                   ext.prefetch_table_size);
  }
  if (ext.prefetch_table_offset == 0 && ext.prefetch_table_size != 0) {
    return corrupt("ext superblock @0x4b0: prefetch_table_size {} with prefetch_table_offset 0",
                   ext.prefetch_table_size);
  }
  const uint64_t devices = sb_.extra_devices;
  if (ext.blob_table_size / kBlobEntrySize != devices) {
    return corrupt("ext superblock @0x490: blob table has {} entries but the superblock declares {} devices",
                   ext.blob_table_size / kBlobEntrySize, devices);
  }
  struct Table {
    Region r;
    uint64_t field_offset;
    bool block_aligned;
  };
  const Table tables[] = {
      {{"blob table", ext.blob_table_offset, ext.blob_table_size}, 0x488, true},
      {{"chunk table", ext.chunk_table_offset, ext.chunk_table_size}, 0x498, true},
      {{"prefetch table", ext.prefetch_table_offset, ext.prefetch_table_size}, 0x4a8, false},
  };
  std::vector<Region> regions = {{"device table", kDeviceTableOffset, devices * sizeof(DeviceSlot)}};
  for (const auto& t : tables) {
    if (t.r.size == 0) continue;
    if (t.r.offset < bs || (t.block_aligned && t.r.offset % bs != 0)) {
      return corrupt("ext superblock @{:#x}: {} offset {:#x} must be {}at or after {:#x}", t.field_offset,
                     t.r.name, t.r.offset, t.block_aligned ? "block aligned and " : "", bs);
    }
    if (!in_range(size, t.r.offset, t.r.size)) {
      return corrupt("ext superblock @{:#x}: {} [{:#x}, +{:#x}) extends past the end of the file ({:#x})",
                     t.field_offset, t.r.name, t.r.offset, t.r.size, size);
    }
    regions.push_back(t.r);
  }
  if (!in_range(size, kDeviceTableOffset, devices * sizeof(DeviceSlot))) {
    return corrupt("device table @{:#x} with {} slots extends past the end of the file", kDeviceTableOffset,
                   devices);
  }
  for (size_t i = 0; i < regions.size(); ++i) {
    for (size_t j = i + 1; j < regions.size(); ++j) {
      const Region& a = regions[i];
      const Region& b = regions[j];
      if (a.size && b.size && a.offset < b.offset + b.size && b.offset < a.offset + a.size) {
        return corrupt("{} [{:#x}, +{:#x}) overlaps {} [{:#x}, +{:#x})", a.name, a.offset, a.size, b.name,
                       b.offset, b.size);
      }
    }
  }

  super_.flags = flags;
  super_.chunk_size = cs;
  super_.compressor = (flags & ef::kCompressNone)   ? Compressor::kNone
                      : (flags & ef::kCompressLz4)  ? Compressor::kLz4Block
                      : (flags & ef::kCompressGzip) ? Compressor::kGzip
                                                    : Compressor::kZstd;
  super_.digester = (flags & ef::kDigestBlake3) ? Digester::kBlake3 : Digester::kSha256;
  super_.explicit_uid_gid = (flags & ef::kExplicitUidGid) != 0;
  return ok_status();
}

Status BootstrapImpl::parse_devices_and_blobs() {
  std::set<std::string> seen;
  blobs_.resize(sb_.extra_devices);
  for (uint32_t i = 0; i < blobs_.size(); ++i) {
    const uint64_t slot_off = kDeviceTableOffset + uint64_t(i) * sizeof(DeviceSlot);
    const uint64_t entry_off = ext_.blob_table_offset + uint64_t(i) * kBlobEntrySize;
    const DeviceSlot slot = *read_struct<DeviceSlot>(bytes_, slot_off);
    const BlobEntry e = *read_struct<BlobEntry>(bytes_, entry_off);

    std::string tag = c_string(slot.tag, sizeof(slot.tag));
    if (tag.empty() || !valid_utf8(tag)) {
      return corrupt("device slot {} @{:#x}: tag is empty or not UTF-8", i, slot_off);
    }
    // Blob ids become file names (<dir>/<blob_id>, <blob_id>.blob.meta).
    if (tag == "." || tag == ".." || tag.find('/') != std::string::npos) {
      return corrupt("device slot {} @{:#x}: blob id \"{}\" is not a valid file name", i, slot_off, tag);
    }
    if (slot.blocks == 0) return corrupt("device slot {} @{:#x}: blocks is 0", i, slot_off + 64);
    if (!seen.insert(tag).second) {
      return corrupt("device slot {} @{:#x}: duplicate blob id \"{}\"", i, slot_off, tag);
    }

    std::string id = c_string(e.blob_id, sizeof(e.blob_id));
    auto where = [&](uint64_t field) { return fmt::format("blob table entry {} @{:#x}", i, entry_off + field); };
    if (id != tag) {
      return corrupt("{}: blob_id \"{}\" differs from device slot {} tag \"{}\"", where(0), id, i, tag);
    }
    if (e.blob_index != i) return corrupt("{}: blob_index {} must be {}", where(64), e.blob_index, i);
    if (e.chunk_size != super_.chunk_size) {
      return corrupt("{}: chunk_size {:#x} differs from the superblock chunk size {:#x}", where(68),
                     e.chunk_size, super_.chunk_size);
    }
    if (e.chunk_count > kMaxCiIndexCount) {
      return corrupt("{}: chunk_count {} exceeds {}", where(72), e.chunk_count, kMaxCiIndexCount);
    }
    if (e.compression_algo > uint32_t(Compressor::kZstd)) {
      return corrupt("{}: unknown compression_algo {}", where(76), e.compression_algo);
    }
    if (e.digest_algo > uint32_t(Digester::kSha256)) {
      return corrupt("{}: unknown digest_algo {}", where(80), e.digest_algo);
    }
    if (e.features & blob_features::kRejected) {
      return corrupt("{}: features {:#x} has reserved bits {:#x}", where(84), e.features,
                     e.features & blob_features::kRejected);
    }
    if (uint32_t bad = e.features & blob_features::kUnsupported) {
      return unsupported("{}: blob feature {} ({:#x}) is not supported", where(84),
                         blob_feature_name(uint32_t(1) << std::countr_zero(bad)), bad);
    }
    if ((e.features & blob_features::kAligned) == 0) {
      return corrupt("{}: features {:#x} lacks ALIGNED (0x1)", where(84), e.features);
    }
    if (e.cipher_algo != 0) return unsupported("{}: cipher_algo {} is not supported", where(216), e.cipher_algo);
    if (e.compressed_size > kMaxCompressedBlobSize) {
      return corrupt("{}: compressed_size {:#x} exceeds 2^40", where(88), e.compressed_size);
    }
    if (e.uncompressed_size > kMaxUncompressedBlobSize || e.uncompressed_size % kBlockSize != 0) {
      return corrupt("{}: uncompressed_size {:#x} must be a multiple of 4096 and at most 2^44", where(96),
                     e.uncompressed_size);
    }
    if (e.ci_compressor > uint32_t(Compressor::kZstd)) {
      return corrupt("{}: unknown ci_compressor {}", where(108), e.ci_compressor);
    }
    const bool v2 = (e.features & blob_features::kChunkInfoV2) != 0;
    const uint64_t ci_entry = v2 ? sizeof(ChunkInfoV2) : sizeof(ChunkInfoV1);
    if (e.ci_uncompressed_size != uint64_t(e.chunk_count) * ci_entry) {
      return corrupt("{}: ci_uncompressed_size {} must be chunk_count {} x {}", where(128), e.ci_uncompressed_size,
                     e.chunk_count, ci_entry);
    }
    if (e.ci_compressed_size > e.ci_uncompressed_size && e.ci_uncompressed_size != 0) {
      return corrupt("{}: ci_compressed_size {} exceeds ci_uncompressed_size {}", where(120),
                     e.ci_compressed_size, e.ci_uncompressed_size);
    }
    if (e.ci_compressor == uint32_t(Compressor::kNone) && e.ci_compressed_size != e.ci_uncompressed_size) {
      return corrupt("{}: uncompressed CI but ci_compressed_size {} != ci_uncompressed_size {}", where(120),
                     e.ci_compressed_size, e.ci_uncompressed_size);
    }
    if (e.ci_offset > kMaxCompressedBlobSize) {
      return corrupt("{}: ci_offset {:#x} exceeds 2^40", where(112), e.ci_offset);
    }

    // The device's size is the blob's uncompressed address space (§5); the
    // kernel sizes the extra device, and maps flat images, by it.
    if (uint64_t(slot.blocks) * block_size() != e.uncompressed_size) {
      return corrupt("device slot {} @{:#x}: blocks {} does not match blob {} uncompressed_size {:#x} ({} blocks)", i,
                     slot_off + 64, slot.blocks, i, e.uncompressed_size, e.uncompressed_size / block_size());
    }

    BlobInfo& b = blobs_[i];
    b.index = i;
    b.blob_id = std::move(id);
    b.chunk_size = e.chunk_size;
    b.chunk_count = e.chunk_count;
    b.compressor = Compressor(e.compression_algo);
    b.digester = Digester(e.digest_algo);
    b.features = e.features;
    b.compressed_size = e.compressed_size;
    b.uncompressed_size = e.uncompressed_size;
    b.ci_compressor = Compressor(e.ci_compressor);
    b.ci_offset = e.ci_offset;
    b.ci_compressed_size = e.ci_compressed_size;
    b.ci_uncompressed_size = e.ci_uncompressed_size;
    b.ci_v2 = v2;
    b.mapped_blkaddr = slot.mapped_blkaddr;
  }
  return ok_status();
}

Status BootstrapImpl::parse_chunk_table() {
  namespace cf = chunk_flags;
  const uint64_t count = ext_.chunk_table_size / kChunkEntrySize;
  chunk_table_.resize(count);
  chunk_by_key_.reserve(count);
  for (uint32_t i = 0; i < count; ++i) {
    const uint64_t off = ext_.chunk_table_offset + uint64_t(i) * kChunkEntrySize;
    chunk_table_[i] = *read_struct<ChunkTableEntry>(bytes_, off);  // range checked by parse_ext_super()
    const ChunkTableEntry& e = chunk_table_[i];
    if (e.blob_index >= blobs_.size()) {
      return corrupt("chunk table entry {} @{:#x}: blob_index {} but the image has {} blobs", i, off,
                     e.blob_index, blobs_.size());
    }
    const BlobInfo& b = blobs_[e.blob_index];
    if (e.index >= b.chunk_count) {
      return corrupt("chunk table entry {} @{:#x}: CI index {} >= chunk_count {} of blob {}", i, off, e.index,
                     b.chunk_count, e.blob_index);
    }
    if (e.flags & ~(cf::kCompressed | cf::kEncrypted | cf::kBatch | cf::kHasCrc32)) {
      return corrupt("chunk table entry {} @{:#x}: unknown flags {:#x}", i, off + 36, e.flags);
    }
    if (e.flags & (cf::kEncrypted | cf::kBatch)) {
      return unsupported("chunk table entry {} @{:#x}: encrypted or batch chunks (flags {:#x}) are not supported",
                         i, off + 36, e.flags);
    }
    if (e.uncompressed_size == 0 || e.uncompressed_size > super_.chunk_size) {
      return corrupt("chunk table entry {} @{:#x}: uncompressed_size {} must be in [1, chunk size {}]", i,
                     off + 44, e.uncompressed_size, super_.chunk_size);
    }
    if (e.uncompressed_offset % block_size() != 0 ||
        !in_range(b.uncompressed_size, e.uncompressed_offset, e.uncompressed_size)) {
      return corrupt(
          "chunk table entry {} @{:#x}: uncompressed range [{:#x}, +{:#x}) is unaligned or outside blob {} "
          "(uncompressed_size {:#x})",
          i, off + 56, e.uncompressed_offset, e.uncompressed_size, e.blob_index, b.uncompressed_size);
    }
    const bool compressed = (e.flags & cf::kCompressed) != 0;
    if (e.compressed_size == 0 || (!compressed && e.compressed_size != e.uncompressed_size)) {
      return corrupt("chunk table entry {} @{:#x}: compressed_size {} is invalid for a {} chunk of {} bytes", i,
                     off + 40, e.compressed_size, compressed ? "compressed" : "stored", e.uncompressed_size);
    }
    // CI v1 has no flag: there "compressed" means the sizes differ (§12).
    if (!b.ci_v2 && compressed != (e.compressed_size != e.uncompressed_size)) {
      return corrupt("chunk table entry {} @{:#x}: COMPRESSED flag disagrees with the sizes {} / {}", i, off + 36,
                     e.compressed_size, e.uncompressed_size);
    }
    if (!in_range(b.compressed_size, e.compressed_offset, e.compressed_size)) {
      return corrupt("chunk table entry {} @{:#x}: compressed range [{:#x}, +{:#x}) is outside blob {} ({:#x} bytes)",
                     i, off + 48, e.compressed_offset, e.compressed_size, e.blob_index, b.compressed_size);
    }
    // uoff < 2^44 (checked above), so uoff / 4096 fits in 32 bits.
    const uint64_t key = uint64_t(e.blob_index) << 56 | uint64_t(e.index) << 32 |
                         (e.uncompressed_offset / block_size());
    auto [it, inserted] = chunk_by_key_.emplace(key, i);
    if (!inserted && std::memcmp(&chunk_table_[it->second], &e, sizeof(e)) != 0) {
      return corrupt("chunk table entries {} and {} describe blob {} chunk {} differently", it->second, i,
                     e.blob_index, e.index);
    }
  }
  return ok_status();
}

Status BootstrapImpl::check_root() {
  NYDUS_ASSIGN_OR_RETURN(InodeView root, load_inode(super_.root_nid));
  if (!S_ISDIR(root.attr.mode)) {
    return corrupt("superblock @0x40e: root nid {} is not a directory (mode {:o})", super_.root_nid, root.attr.mode);
  }
  return ok_status();
}

const ChunkTableEntry* BootstrapImpl::find_chunk(uint32_t blob_index, uint32_t ci_index,
                                                 uint64_t uncompressed_offset) const {
  if (blob_index > 0xFF || ci_index > 0xFFFFFF || uncompressed_offset / block_size() > 0xFFFFFFFF) return nullptr;
  const uint64_t key = uint64_t(blob_index) << 56 | uint64_t(ci_index) << 32 | (uncompressed_offset / block_size());
  auto it = chunk_by_key_.find(key);
  return it == chunk_by_key_.end() ? nullptr : &chunk_table_[it->second];
}

Result<std::vector<uint64_t>> BootstrapImpl::prefetch_nids() const {
  std::vector<uint64_t> nids;
  for (uint64_t off = 0; off + 4 <= ext_.prefetch_table_size; off += 4) {
    uint32_t nid = *read_struct<uint32_t>(bytes_, ext_.prefetch_table_offset + off);  // range checked at open
    if (nid == 0) break;
    nids.push_back(nid);
  }
  return nids;
}

}  // namespace nydus::rafs
