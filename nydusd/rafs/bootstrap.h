// Read-only access to a RAFS v6 bootstrap (the EROFS-compatible metadata
// file). This is the reader contract used by nydusd (FUSE and fscache),
// nydus-image check/inspect/merge/export, and the tests.
//
// Hostile input: open() validates the superblock, extended superblock, device
// table, blob table and chunk table against the file size and each other;
// every later access validates what it touches (inode bounds and format,
// directory blocks and names, xattr areas, chunk indexes) and returns a
// kCorrupt error naming the nid/offset instead of reading out of bounds.
// No function recurses on image data or loops without a bound.
//
// Thread safety: a Bootstrap is immutable after open(); all const methods may
// be called concurrently.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"
#include "nydusd/rafs/digest.h"
#include "nydusd/rafs/layout.h"

namespace nydus::rafs {

struct BlobInfo {
  uint32_t index = 0;
  std::string blob_id;  // from the blob table (and device slot tag)
  uint32_t chunk_size = 0;
  uint32_t chunk_count = 0;
  Compressor compressor = Compressor::kNone;
  Digester digester = Digester::kBlake3;
  uint32_t features = 0;
  uint64_t compressed_size = 0;
  uint64_t uncompressed_size = 0;
  Compressor ci_compressor = Compressor::kNone;
  uint64_t ci_offset = 0;
  uint64_t ci_compressed_size = 0;
  uint64_t ci_uncompressed_size = 0;
  bool ci_v2 = false;  // features & kChunkInfoV2
  uint32_t mapped_blkaddr = 0;
};

struct SuperInfo {
  uint32_t block_size = kBlockSize;
  uint32_t chunk_size = 0;
  uint64_t root_nid = 0;
  uint64_t inodes = 0;
  uint64_t flags = 0;  // ext_flags
  Compressor compressor = Compressor::kNone;
  Digester digester = Digester::kBlake3;
  bool explicit_uid_gid = false;
  uint32_t meta_blkaddr = 0;
  uint64_t build_time = 0;
  uint32_t blocks = 0;
  uint64_t file_size = 0;
};

struct InodeAttr {
  uint64_t nid = 0;  // also the inode number both readers report
  uint32_t mode = 0;
  // The on-disk ids. Without ext flag EXPLICIT_UID_GID nydusd reports its own
  // euid/egid instead (super().explicit_uid_gid); the kernel never does.
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t size = 0;
  uint32_t nlink = 0;
  // Compact inodes have no mtime: like the kernel, they report the
  // superblock build_time (nydusd reports 0).
  uint64_t mtime = 0;
  uint32_t mtime_nsec = 0;
  uint32_t rdev = 0;  // decoded dev_t (new encoding) for char/block devices
  bool extended = false;
  uint16_t xattr_count = 0;  // i_xattr_icount
  DataLayout layout = DataLayout::kFlatPlain;
};

// One chunk that a file range touches, with everything needed to fetch,
// decompress and verify it.
struct ChunkRef {
  uint32_t blob_index = 0;
  uint32_t ci_index = 0;              // chunk id within the blob (CI index)
  uint64_t file_offset = 0;           // where this chunk starts in the file
  uint64_t compressed_offset = 0;     // in the blob file
  uint32_t compressed_size = 0;
  uint64_t uncompressed_offset = 0;   // in the blob's uncompressed address space
  uint32_t uncompressed_size = 0;
  bool compressed = false;
  Compressor compressor = Compressor::kNone;  // the blob's algorithm
  Digester digester = Digester::kBlake3;
  std::optional<Digest> digest;       // from the chunk table when present
  // True when compressed_offset/compressed_size/compressed/digest come from
  // the bootstrap chunk table. When false only the uncompressed fields are
  // known (from the chunk index and file size), and the caller takes the
  // compressed extent from the blob's CI array (blob_ci.h, entry ci_index).
  bool in_chunk_table = false;
};

struct DirEntry {
  std::string name;
  uint64_t nid = 0;
  uint8_t file_type = kFtUnknown;
};

struct Xattr {
  std::string name;   // full name with prefix, e.g. "user.foo", "trusted.overlay.opaque"
  std::string value;
};

// Errors: kCorrupt for bad image data (message names the nid, byte offset and
// field); a wrong inode type or a missing name carries the errno a FUSE reply
// needs (Error::to_errno(): ENOTDIR, EISDIR, EINVAL, ENOENT, ENAMETOOLONG);
// kUnsupported for valid images using features this reader does not serve.
class Bootstrap {
 public:
  // Opens and validates a bootstrap file (read fully into memory, or mapped).
  static Result<std::shared_ptr<const Bootstrap>> open(const std::string& path);
  // Same from bytes already in memory (used by the fuzzer and tests).
  static Result<std::shared_ptr<const Bootstrap>> from_bytes(std::vector<uint8_t> bytes,
                                                            std::string name = "<memory>");

  virtual ~Bootstrap() = default;

  virtual const SuperInfo& super() const = 0;
  virtual const std::vector<BlobInfo>& blobs() const = 0;
  virtual uint64_t root_nid() const = 0;

  virtual Result<InodeAttr> getattr(uint64_t nid) const = 0;
  // Looks `name` up in directory `dir_nid` (binary search as the kernel does).
  virtual Result<uint64_t> lookup(uint64_t dir_nid, std::string_view name) const = 0;
  // Calls `fn` for each entry of directory `dir_nid` (including "." and ".."),
  // starting at entry index `start`; stops early when fn returns false.
  virtual Status readdir(uint64_t dir_nid, uint64_t start,
                         const std::function<bool(const DirEntry&, uint64_t next)>& fn) const = 0;
  virtual Result<std::string> readlink(uint64_t nid) const = 0;
  virtual Result<std::vector<Xattr>> xattrs(uint64_t nid) const = 0;
  // Maps [offset, offset+length) of regular file `nid` (clipped to its size)
  // to the chunks that hold it, in file order.
  virtual Result<std::vector<ChunkRef>> map_range(uint64_t nid, uint64_t offset,
                                                  uint64_t length) const = 0;
  // The prefetch table (nids), possibly empty.
  virtual Result<std::vector<uint64_t>> prefetch_nids() const = 0;
  // The bootstrap chunk table as stored (§11), validated at open(). Defaults
  // are for fakes in other modules' tests.
  virtual std::span<const ChunkTableEntry> chunk_table() const { return {}; }
  // The chunk table entry for a chunk index, keyed as nydusd keys it:
  // (blob_index, CI index, uncompressed offset). nullptr if absent.
  virtual const ChunkTableEntry* find_chunk(uint32_t blob_index, uint32_t ci_index,
                                            uint64_t uncompressed_offset) const {
    return nullptr;
  }
  // Walks the whole tree from the root and validates every reachable inode,
  // directory, symlink, xattr area and chunk index (bounded: each directory is
  // visited once; hard links and cycles are detected).
  virtual Status validate_tree() const = 0;
};

}  // namespace nydus::rafs
