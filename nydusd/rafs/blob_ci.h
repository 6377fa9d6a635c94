// A blob's chunk compression info (CI) array (§12): where each chunk of the
// blob lies compressed and uncompressed. It comes either from the blob itself
// (the compressed CI array followed by the 4 KiB header, at ci_offset) or from
// the <blob_id>.blob.meta cache file (the uncompressed array padded to 4 KiB,
// then a copy of the header). Both are validated against the bootstrap's
// blob table entry: header fields equal to the entry, entries in ascending,
// non-overlapping order inside the blob, sizes within the chunk size, and no
// features this reader cannot serve. Entry k is CI index k.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "common/result.h"
#include "nydusd/rafs/bootstrap.h"

namespace nydus::rafs {

enum class CiSource {
  kBlob,      // the data blob: ci_compressed_size + 4096 bytes at ci_offset
  kBlobMeta,  // <blob_id>.blob.meta: round_up_4k(ci_uncompressed_size) + 4096 bytes
};

// `bytes` is the CI region as stored: for kBlob the ci_compressed_size bytes
// at ci_offset followed by the header, for kBlobMeta the whole file.
Result<std::vector<ChunkInfo>> parse_blob_ci(const BlobInfo& blob, std::span<const uint8_t> bytes,
                                             CiSource source);

// Reads the CI region from `path` (the blob file or its blob.meta) and parses it.
Result<std::vector<ChunkInfo>> read_blob_ci(const BlobInfo& blob, const std::string& path, CiSource source);

// The ChunkRef of CI entry `ci_index` of `blob`, for readers that walk a blob
// rather than a file (export, fscache): both extents come from the CI entry,
// so nothing is left to resolve (in_chunk_table), and the digest from
// `bootstrap`'s chunk table when it has the chunk (bootstrap may be null).
// file_offset is 0: the ref addresses the blob, not a file.
ChunkRef chunk_ref_from_ci(const BlobInfo& blob, uint32_t ci_index, const ChunkInfo& ci,
                           const Bootstrap* bootstrap);

}  // namespace nydus::rafs
