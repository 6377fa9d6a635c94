// Writes one data blob (§12, §19 step 2): file content is cut into
// chunk_size pieces, deduplicated by digest, compressed when that makes a
// chunk strictly smaller, and appended; finish() adds the CI array (v1,
// itself compressed when that shrinks it) and the 4 KiB CI header, and names
// the file by the SHA-256 of its bytes.
//
// Threading: add_file() reads on the caller's thread and hands each chunk to
// a small pool that digests and compresses it; the caller's thread then
// deduplicates and writes results in submission order, so the blob layout is
// deterministic whatever the number of workers.
//
// Chunk ids: because a chunk's digest (and so its dedup fate) is known only
// once its job is done, add_file() returns provisional ids ("slots");
// finish() rewrites every regular file below img.root to indexes into
// img.chunks. Attach the tree to the Image before calling finish().
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "common/result.h"
#include "tools/nydus-image/content_sink.h"
#include "tools/nydus-image/tree.h"

namespace nydus::builder {

struct BlobOptions {
  std::string blob_dir;
  rafs::Compressor compressor = rafs::Compressor::kNone;
  rafs::Digester digester = rafs::Digester::kBlake3;
  uint32_t chunk_size = rafs::kDefaultChunkSize;
  unsigned threads = 0;  // digest/compression workers; 0 = one per CPU
};

class BlobWriter : public ContentSink {
 public:
  // Chunks are appended to img.chunks; on finish() the blob is appended to
  // img.blobs (chunk blob_index = img.blobs.size() at creation).
  static Result<std::unique_ptr<BlobWriter>> create(const BlobOptions& opts, Image& img);
  ~BlobWriter() override;

  Result<std::vector<uint32_t>> add_file(uint64_t size, const ReadFn& read) override;

  // Completes the blob and resolves the chunk lists of the files below
  // img.root. Returns the blob id, or nullopt (and no file) when no chunk
  // was written.
  Result<std::optional<std::string>> finish();

 private:
  class Impl;
  explicit BlobWriter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace nydus::builder
