// RAFS v6 on-disk layout: the byte-level contract between the builder
// (tools/nydus-image) and the readers (nydusd/rafs), and the only place the
// format's structures and constants are declared.
//
// Facts: ../shared/docs/rafs-v6-format.md (section numbers below refer to it).
// All integers are little-endian; every struct here is packed exactly as on
// disk and static_assert'ed to its size. Readers must never dereference these
// in place from a mapped hostile file without bounds checks: copy them out
// with read_struct<T>() after checking the range.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace nydus::rafs {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "on-disk structs are read in place");

// §2 constants.
inline constexpr uint32_t kBlockSize = 4096;
inline constexpr uint8_t kBlockSizeBits = 12;
inline constexpr uint64_t kSuperOffset = 1024;
inline constexpr uint64_t kExtSuperOffset = 1152;
inline constexpr uint64_t kDeviceTableOffset = 1408;  // 0x580
inline constexpr uint16_t kDeviceSlotOffset = 11;     // kDeviceTableOffset / 128
inline constexpr uint32_t kErofsMagic = 0xE0F5E1E2;
inline constexpr uint32_t kRafsV5Magic = 0x52414653;
inline constexpr uint32_t kBlobCiMagic = 0xB10BB10B;
inline constexpr uint32_t kCompatRafsV6 = 0x40000000;
inline constexpr uint32_t kIncompatRafsV6 = 0x0000000C;  // CHUNKED_FILE | DEVICE_TABLE
inline constexpr uint32_t kMinChunkSize = 4096;
inline constexpr uint32_t kMaxChunkSize = 16u << 20;
inline constexpr uint32_t kDefaultChunkSize = 1u << 20;
inline constexpr uint32_t kMaxChunksPerBlob = 0xFFFFFF;
inline constexpr uint32_t kMaxBlobs = 254;
inline constexpr uint32_t kInodeSlotSize = 32;
inline constexpr uint16_t kRootNid = 128;  // what nydus-image writes
inline constexpr uint32_t kMaxNameLen = 255;
inline constexpr uint32_t kMaxSymlinkLen = 4096;

// §3 EROFS superblock at offset 1024 (128 bytes).
struct __attribute__((packed)) SuperBlock {
  uint32_t magic;
  uint32_t checksum;
  uint32_t feature_compat;
  uint8_t blkszbits;
  uint8_t sb_extslots;
  uint16_t root_nid;
  uint64_t inos;
  uint64_t build_time;
  uint32_t build_time_nsec;
  uint32_t blocks;
  uint32_t meta_blkaddr;
  uint32_t xattr_blkaddr;
  uint8_t uuid[16];
  uint8_t volume_name[16];
  uint32_t feature_incompat;
  uint16_t available_compr_algs;
  uint16_t extra_devices;
  uint16_t devt_slotoff;
  uint8_t reserved[38];
};
static_assert(sizeof(SuperBlock) == 128);

// §4 RAFS extended superblock at offset 1152 (256 bytes).
struct __attribute__((packed)) ExtSuperBlock {
  uint64_t flags;
  uint64_t blob_table_offset;
  uint32_t blob_table_size;
  uint32_t chunk_size;
  uint64_t chunk_table_offset;
  uint64_t chunk_table_size;
  uint64_t prefetch_table_offset;
  uint32_t prefetch_table_size;
  uint32_t padding;
  uint8_t reserved[200];
};
static_assert(sizeof(ExtSuperBlock) == 256);

// ExtSuperBlock::flags bits (§4).
namespace ext_flags {
inline constexpr uint64_t kCompressNone = 0x1;
inline constexpr uint64_t kCompressLz4 = 0x2;
inline constexpr uint64_t kDigestBlake3 = 0x4;
inline constexpr uint64_t kDigestSha256 = 0x8;
inline constexpr uint64_t kExplicitUidGid = 0x10;
inline constexpr uint64_t kHasXattr = 0x20;
inline constexpr uint64_t kCompressGzip = 0x40;
inline constexpr uint64_t kCompressZstd = 0x80;
inline constexpr uint64_t kInlinedChunkDigest = 0x100;
inline constexpr uint64_t kTarfsMode = 0x200;
inline constexpr uint64_t kEncryptionNone = 0x0100'0000;
inline constexpr uint64_t kEncryptionAes128Xts = 0x0200'0000;
inline constexpr uint64_t kReservedCompat = 0xFC00'0000;  // 0x0400_0000..0x8000_0000
inline constexpr uint64_t kCompressMask = kCompressNone | kCompressLz4 | kCompressGzip | kCompressZstd;
inline constexpr uint64_t kDigestMask = kDigestBlake3 | kDigestSha256;
inline constexpr uint64_t kKnown = kCompressMask | kDigestMask | kExplicitUidGid | kHasXattr |
                                   kInlinedChunkDigest | kTarfsMode | kEncryptionNone |
                                   kEncryptionAes128Xts | kReservedCompat;
}  // namespace ext_flags

// §5 EROFS device slot (128 bytes), one per blob, at kDeviceTableOffset.
struct __attribute__((packed)) DeviceSlot {
  uint8_t tag[64];  // blob id, ASCII, NUL padded
  uint32_t blocks;  // uncompressed_size / 4096
  uint32_t mapped_blkaddr;
  uint8_t reserved[56];
};
static_assert(sizeof(DeviceSlot) == 128);

// §6 inodes.
inline constexpr uint16_t kInodeVersionMask = 0x1;      // i_format bit 0: 1 = extended
inline constexpr uint16_t kInodeLayoutShift = 1;
inline constexpr uint16_t kInodeLayoutMask = 0x7;       // bits 1..3
inline constexpr uint16_t kInodeFormatKnownMask = 0xF;  // bits 4..15 must be 0
enum class DataLayout : uint16_t { kFlatPlain = 0, kFlatInline = 2, kChunkBased = 4 };

struct __attribute__((packed)) CompactInode {
  uint16_t i_format;
  uint16_t i_xattr_icount;
  uint16_t i_mode;
  uint16_t i_nlink;
  uint32_t i_size;
  uint32_t i_reserved;
  uint32_t i_u;
  uint32_t i_ino;
  uint16_t i_uid;
  uint16_t i_gid;
  uint32_t i_reserved2;
};
static_assert(sizeof(CompactInode) == 32);

struct __attribute__((packed)) ExtendedInode {
  uint16_t i_format;
  uint16_t i_xattr_icount;
  uint16_t i_mode;
  uint16_t i_reserved;
  uint64_t i_size;
  uint32_t i_u;
  uint32_t i_ino;
  uint32_t i_uid;
  uint32_t i_gid;
  uint64_t i_mtime;
  uint32_t i_mtime_nsec;
  uint32_t i_nlink;
  uint8_t i_reserved2[16];
};
static_assert(sizeof(ExtendedInode) == 64);

// §9 chunk header stored in i_u of a CHUNK_BASED inode: format = 0x20 | chunkbits.
inline constexpr uint16_t kChunkFormatIndexes = 0x20;
inline constexpr uint16_t kChunkFormatBitsMask = 0x1F;

// §7 directory entry (12 bytes); names follow the entry array in each block.
struct __attribute__((packed)) Dirent {
  uint64_t nid;
  uint16_t nameoff;
  uint8_t file_type;
  uint8_t reserved;
};
static_assert(sizeof(Dirent) == 12);

enum FileType : uint8_t {
  kFtUnknown = 0,
  kFtRegular = 1,
  kFtDirectory = 2,
  kFtCharDevice = 3,
  kFtBlockDevice = 4,
  kFtFifo = 5,
  kFtSocket = 6,
  kFtSymlink = 7,
};

// §8 inline xattrs: a 12-byte header, then entries padded to 4 bytes.
// Area size = 12 + 4 * (i_xattr_icount - 1) when i_xattr_icount > 0.
struct __attribute__((packed)) XattrIbodyHeader {
  uint32_t h_reserved;  // h_name_filter when compat 0x4; always 0 here
  uint8_t h_shared_count;
  uint8_t h_reserved2[7];
};
static_assert(sizeof(XattrIbodyHeader) == 12);

struct __attribute__((packed)) XattrEntry {
  uint8_t e_name_len;
  uint8_t e_name_index;
  uint16_t e_value_size;
  // followed by name suffix, then value
};
static_assert(sizeof(XattrEntry) == 4);

enum XattrIndex : uint8_t {
  kXattrUser = 1,               // "user."
  kXattrPosixAclAccess = 2,     // "system.posix_acl_access" (empty suffix)
  kXattrPosixAclDefault = 3,    // "system.posix_acl_default" (empty suffix)
  kXattrTrusted = 4,            // "trusted."
  kXattrSecurity = 6,           // "security."
};

inline constexpr uint32_t xattr_ibody_size(uint16_t icount) {
  return icount == 0 ? 0 : 12 + 4 * (uint32_t(icount) - 1);
}

// §9 chunk index entry (8 bytes), the array follows the inode and its xattrs
// at an 8-byte aligned offset.
struct __attribute__((packed)) ChunkAddr {
  uint16_t blob_ci_lo;  // bits 0..15 of the CI index
  uint16_t blob_ci_hi;  // bits 0..7: blob_index + 1; bits 8..15: CI index bits 16..23
  uint32_t blkaddr;     // uncompressed offset / block size within the blob

  uint8_t blob_index_plus1() const { return uint8_t(blob_ci_hi & 0xFF); }
  uint32_t ci_index() const { return (uint32_t(blob_ci_hi >> 8) << 16) | blob_ci_lo; }
  static ChunkAddr make(uint32_t blob_index, uint32_t ci_index, uint32_t blkaddr) {
    ChunkAddr a;
    a.blob_ci_lo = uint16_t(ci_index & 0xFFFF);
    a.blob_ci_hi = uint16_t(((blob_index + 1) & 0xFF) | (((ci_index >> 16) & 0xFF) << 8));
    a.blkaddr = blkaddr;
    return a;
  }
};
static_assert(sizeof(ChunkAddr) == 8);
inline constexpr uint32_t kChunkAddrHole = 0xFFFFFFFF;

// §10 blob table entry (256 bytes).
struct __attribute__((packed)) BlobEntry {
  uint8_t blob_id[64];
  uint32_t blob_index;
  uint32_t chunk_size;
  uint32_t chunk_count;
  uint32_t compression_algo;  // Compressor
  uint32_t digest_algo;       // Digester
  uint32_t features;          // blob_features
  uint64_t compressed_size;
  uint64_t uncompressed_size;
  uint32_t blob_toc_size;
  uint32_t ci_compressor;
  uint64_t ci_offset;
  uint64_t ci_compressed_size;
  uint64_t ci_uncompressed_size;
  uint8_t blob_toc_digest[32];
  uint8_t blob_meta_digest[32];
  uint64_t blob_meta_size;
  uint64_t cipher_iv;
  uint32_t cipher_algo;
  uint8_t reserved[36];
};
static_assert(sizeof(BlobEntry) == 256);

enum class Compressor : uint32_t { kNone = 0, kLz4Block = 1, kGzip = 2, kZstd = 3 };
enum class Digester : uint32_t { kBlake3 = 0, kSha256 = 1 };

namespace blob_features {
inline constexpr uint32_t kAligned = 0x1;
inline constexpr uint32_t kInlinedFsMeta = 0x2;
inline constexpr uint32_t kChunkInfoV2 = 0x4;
inline constexpr uint32_t kZran = 0x8;
inline constexpr uint32_t kSeparate = 0x10;
inline constexpr uint32_t kInlinedChunkDigest = 0x20;
inline constexpr uint32_t kTarfs = 0x40;
inline constexpr uint32_t kBatch = 0x80;
inline constexpr uint32_t kEncrypted = 0x100;
inline constexpr uint32_t kIsChunkdictGenerated = 0x200;
inline constexpr uint32_t kSeparatedPrefetch = 0x400;
inline constexpr uint32_t kExternal = 0x800;
inline constexpr uint32_t kRejected = 0xF000 | 0x8000'0000u;  // nydusd rejects these bits
inline constexpr uint32_t kHasTarHeader = 0x1000'0000;
inline constexpr uint32_t kHasToc = 0x2000'0000;
inline constexpr uint32_t kCapTarToc = 0x4000'0000;
// Features this project's reader can serve; anything else is rejected with a clear error.
inline constexpr uint32_t kUnsupported = kZran | kSeparate | kTarfs | kBatch | kEncrypted | kExternal;
}  // namespace blob_features

// §11 bootstrap chunk table entry (80 bytes).
struct __attribute__((packed)) ChunkTableEntry {
  uint8_t digest[32];
  uint32_t blob_index;
  uint32_t flags;  // chunk_flags
  uint32_t compressed_size;
  uint32_t uncompressed_size;
  uint64_t compressed_offset;
  uint64_t uncompressed_offset;
  uint64_t file_offset;
  uint32_t index;  // CI index
  uint32_t crc32;
};
static_assert(sizeof(ChunkTableEntry) == 80);

namespace chunk_flags {
inline constexpr uint32_t kCompressed = 0x1;
inline constexpr uint32_t kEncrypted = 0x4;
inline constexpr uint32_t kBatch = 0x8;
inline constexpr uint32_t kHasCrc32 = 0x10;
}  // namespace chunk_flags

// §12 chunk compression info (CI) entries, in the blob (compressed) and in
// <blob_id>.blob.meta (uncompressed).
struct __attribute__((packed)) ChunkInfoV1 {
  uint64_t uncomp_info;
  uint64_t comp_info;
};
static_assert(sizeof(ChunkInfoV1) == 16);

struct __attribute__((packed)) ChunkInfoV2 {
  uint64_t uncomp_info;
  uint64_t comp_info;
  uint64_t data;
};
static_assert(sizeof(ChunkInfoV2) == 24);

namespace ci_v2_flags {
inline constexpr uint8_t kCompressed = 0x01;
inline constexpr uint8_t kZran = 0x02;
inline constexpr uint8_t kBatch = 0x04;
inline constexpr uint8_t kEncrypted = 0x08;
inline constexpr uint8_t kHasCrc32 = 0x10;
}  // namespace ci_v2_flags

// A decoded CI entry, independent of v1/v2.
struct ChunkInfo {
  uint64_t compressed_offset = 0;
  uint32_t compressed_size = 0;
  uint64_t uncompressed_offset = 0;
  uint32_t uncompressed_size = 0;
  bool compressed = false;
  uint8_t v2_flags = 0;
  uint64_t v2_data = 0;
};

// v1: uoff = bits 12..43 (the value is the byte offset), usize-1 = bits 44..63
// (low 20) | bits 8..11 (high 4); coff = bits 0..39, csize-1 = bits 44..63 (low
// 20) | bits 40..43 (high 4). Compressed iff csize != usize.
inline ChunkInfo decode_ci_v1(const ChunkInfoV1& e) {
  ChunkInfo c;
  c.uncompressed_offset = e.uncomp_info & 0x0000'0FFF'FFFF'F000ull;
  c.uncompressed_size = uint32_t(((e.uncomp_info >> 44) & 0xFFFFF) | (((e.uncomp_info >> 8) & 0xF) << 20)) + 1;
  c.compressed_offset = e.comp_info & 0xFF'FFFF'FFFFull;
  c.compressed_size = uint32_t(((e.comp_info >> 44) & 0xFFFFF) | (((e.comp_info >> 40) & 0xF) << 20)) + 1;
  c.compressed = c.compressed_size != c.uncompressed_size;
  return c;
}

inline ChunkInfoV1 encode_ci_v1(const ChunkInfo& c) {
  uint64_t us = uint64_t(c.uncompressed_size) - 1;
  uint64_t cs = uint64_t(c.compressed_size) - 1;
  ChunkInfoV1 e;
  e.uncomp_info = (c.uncompressed_offset & 0x0000'0FFF'FFFF'F000ull) | ((us & 0xFFFFF) << 44) |
                  (((us >> 20) & 0xF) << 8);
  e.comp_info = (c.compressed_offset & 0xFF'FFFF'FFFFull) | ((cs & 0xFFFFF) << 44) |
                (((cs >> 20) & 0xF) << 40);
  return e;
}

// v2: uoff>>12 = bits 0..31, usize-1 = bits 32..55, flags = bits 56..63;
// coff = bits 0..39, csize (not minus one) = bits 40..63.
inline ChunkInfo decode_ci_v2(const ChunkInfoV2& e) {
  ChunkInfo c;
  c.uncompressed_offset = (e.uncomp_info & 0xFFFF'FFFFull) << 12;
  c.uncompressed_size = uint32_t((e.uncomp_info >> 32) & 0xFF'FFFF) + 1;
  c.v2_flags = uint8_t(e.uncomp_info >> 56);
  c.compressed_offset = e.comp_info & 0xFF'FFFF'FFFFull;
  c.compressed_size = uint32_t(e.comp_info >> 40);
  c.compressed = (c.v2_flags & ci_v2_flags::kCompressed) != 0;
  c.v2_data = e.data;
  return c;
}

inline ChunkInfoV2 encode_ci_v2(const ChunkInfo& c) {
  ChunkInfoV2 e;
  uint8_t flags = c.v2_flags | (c.compressed ? ci_v2_flags::kCompressed : 0);
  e.uncomp_info = ((c.uncompressed_offset >> 12) & 0xFFFF'FFFFull) |
                  ((uint64_t(c.uncompressed_size - 1) & 0xFF'FFFF) << 32) | (uint64_t(flags) << 56);
  e.comp_info = (c.compressed_offset & 0xFF'FFFF'FFFFull) | (uint64_t(c.compressed_size & 0xFF'FFFF) << 40);
  e.data = c.v2_data;
  return e;
}

// §12 CI header (4096 bytes), stored uncompressed after the compressed CI
// array in the blob, and at the end of <blob_id>.blob.meta.
struct __attribute__((packed)) BlobCiHeader {
  uint32_t magic;  // kBlobCiMagic
  uint32_t features;
  uint32_t ci_compressor;
  uint32_t ci_entries;
  uint64_t ci_offset;
  uint64_t ci_compressed_size;
  uint64_t ci_uncompressed_size;
  uint64_t ctx_offset;
  uint64_t ctx_size;
  uint32_t ctx_count;
  uint8_t reserved[4032];  // 60..4091
  uint32_t magic2;  // kBlobCiMagic
};
static_assert(sizeof(BlobCiHeader) == 4096);

// §12 blob ToC entry (128 bytes).
struct __attribute__((packed)) TocEntry {
  uint32_t flags;  // 1 none, 2 zstd, 4 lz4
  uint32_t reserved;
  uint8_t name[16];
  uint8_t sha256[32];
  uint64_t compressed_offset;
  uint64_t compressed_size;
  uint64_t uncompressed_size;
  uint8_t reserved2[48];
};
static_assert(sizeof(TocEntry) == 128);

inline constexpr uint64_t round_up(uint64_t v, uint64_t align) { return (v + align - 1) / align * align; }

}  // namespace nydus::rafs
