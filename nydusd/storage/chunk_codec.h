// Turning the bytes of one chunk as stored in a blob into file data, and
// checking them: pure functions, no I/O, so every corrupt-input path is
// testable with in-memory bytes.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"
#include "nydusd/rafs/bootstrap.h"

namespace nydus::storage {

// "blob <id> chunk ci=<n> (coff=.. csize=.. uoff=.. usize=..)", the chunk
// part of every storage log line and error message.
std::string describe_chunk(const rafs::BlobInfo& blob, const rafs::ChunkRef& chunk);

// Checks the uncompressed extent of a chunk ref against its blob before it
// is used to index the chunk map or the cache file (hostile bootstraps).
Status check_chunk_extent(const rafs::BlobInfo& blob, const rafs::ChunkRef& chunk);

// Checks the compressed extent once it is known (chunk table or CI array).
Status check_chunk_compressed(const rafs::BlobInfo& blob, const rafs::ChunkRef& chunk);

// Decompresses `stored` (the compressed_size bytes read from the blob) into
// exactly uncompressed_size bytes; an uncompressed chunk is copied. Any size
// mismatch is kCorrupt.
Result<std::vector<uint8_t>> decode_chunk(const rafs::BlobInfo& blob, const rafs::ChunkRef& chunk,
                                          std::span<const uint8_t> stored);

// Compares the digest of `data` with chunk.digest (kCorrupt on mismatch).
// A chunk without a known digest passes: there is nothing to compare with.
Status verify_chunk(const rafs::BlobInfo& blob, const rafs::ChunkRef& chunk,
                    std::span<const uint8_t> data);

}  // namespace nydus::storage
