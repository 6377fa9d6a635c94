#include "nydusd/storage/chunk_codec.h"

#include <algorithm>

#include "nydusd/rafs/compression.h"
#include "nydusd/rafs/digest.h"
#include "nydusd/rafs/layout.h"

namespace nydus::storage {

std::string describe_chunk(const rafs::BlobInfo& blob, const rafs::ChunkRef& chunk) {
  return fmt::format("blob {} chunk ci={} (coff={:#x} csize={} uoff={:#x} usize={})", blob.blob_id,
                     chunk.ci_index, chunk.compressed_offset, chunk.compressed_size,
                     chunk.uncompressed_offset, chunk.uncompressed_size);
}

Status check_chunk_extent(const rafs::BlobInfo& blob, const rafs::ChunkRef& chunk) {
  if (chunk.ci_index >= blob.chunk_count) {
    return make_error(ErrorKind::kCorrupt, "{}: CI index out of range (blob has {} chunks)",
                      describe_chunk(blob, chunk), blob.chunk_count);
  }
  if (chunk.uncompressed_size == 0 || chunk.uncompressed_size > rafs::kMaxChunkSize) {
    return make_error(ErrorKind::kCorrupt, "{}: bad uncompressed size",
                      describe_chunk(blob, chunk));
  }
  // The cache file is sized to the blob's uncompressed size; a chunk outside
  // it would be written past the end (or overlap another blob's idea of it).
  if (chunk.uncompressed_offset > blob.uncompressed_size ||
      chunk.uncompressed_size > blob.uncompressed_size - chunk.uncompressed_offset) {
    return make_error(ErrorKind::kCorrupt, "{}: outside the blob's uncompressed size {}",
                      describe_chunk(blob, chunk), blob.uncompressed_size);
  }
  return ok_status();
}

Status check_chunk_compressed(const rafs::BlobInfo& blob, const rafs::ChunkRef& chunk) {
  // Bounds the buffer a hostile image can make us allocate per chunk.
  if (chunk.compressed_size == 0 || chunk.compressed_size > rafs::kMaxChunkSize) {
    return make_error(ErrorKind::kCorrupt, "{}: bad compressed size", describe_chunk(blob, chunk));
  }
  if (!chunk.compressed && chunk.compressed_size != chunk.uncompressed_size) {
    return make_error(ErrorKind::kCorrupt, "{}: stored uncompressed but sizes differ",
                      describe_chunk(blob, chunk));
  }
  return ok_status();
}

Result<std::vector<uint8_t>> decode_chunk(const rafs::BlobInfo& blob, const rafs::ChunkRef& chunk,
                                          std::span<const uint8_t> stored) {
  if (stored.size() != chunk.compressed_size) {
    return make_error(ErrorKind::kInternal, "{}: got {} stored bytes", describe_chunk(blob, chunk),
                      stored.size());
  }
  if (!chunk.compressed) return std::vector<uint8_t>(stored.begin(), stored.end());
  auto out = rafs::decompress(chunk.compressor, stored, chunk.uncompressed_size);
  if (!out.ok()) {
    return make_error(ErrorKind::kCorrupt, "{}: {}", describe_chunk(blob, chunk),
                      out.error().message());
  }
  if (out->size() != chunk.uncompressed_size) {
    return make_error(ErrorKind::kCorrupt, "{}: decompressed to {} bytes",
                      describe_chunk(blob, chunk), out->size());
  }
  return std::move(out).value();
}

Status verify_chunk(const rafs::BlobInfo& blob, const rafs::ChunkRef& chunk,
                    std::span<const uint8_t> data) {
  if (!chunk.digest.has_value()) return ok_status();
  rafs::Digest got = rafs::compute_digest(chunk.digester, data);
  if (got != *chunk.digest) {
    return make_error(ErrorKind::kCorrupt, "{}: digest mismatch (want {}, got {})",
                      describe_chunk(blob, chunk), rafs::to_hex(*chunk.digest),
                      rafs::to_hex(got));
  }
  return ok_status();
}

}  // namespace nydus::storage
