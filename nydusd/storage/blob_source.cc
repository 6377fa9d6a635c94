#include "nydusd/storage/blob_source.h"

#include <spdlog/spdlog.h>

#include "nydusd/storage/chunk_codec.h"

namespace nydus::storage {

BlobSource::BlobSource(Backend* backend, rafs::BlobInfo blob, std::string work_dir,
                       StorageMetrics* metrics, bool validate)
    : backend_(backend), blob_(std::move(blob)), metrics_(metrics), validate_(validate),
      meta_(backend, blob_, std::move(work_dir)) {}

Result<std::vector<uint8_t>> BlobSource::fetch(const rafs::ChunkRef& ref,
                                               std::string_view file_hint) {
  rafs::ChunkRef chunk = ref;
  // Errors from the codec already describe the chunk; backend errors name
  // only the blob file, so add the chunk to those.
  auto fail = [&](Error err) -> Error {
    std::string desc = describe_chunk(blob_, chunk);
    if (err.message().find(desc) == std::string::npos) (void)std::move(err).wrap(desc);
    spdlog::error("read of {}: {}", file_hint, err.message());
    return std::move(err).wrap(fmt::format("file {}", file_hint));
  };

  if (!chunk.in_chunk_table) {
    if (Status st = meta_.resolve(&chunk); !st.ok()) return fail(std::move(st).error());
  }
  if (Status st = check_chunk_compressed(blob_, chunk); !st.ok()) return fail(std::move(st).error());

  std::vector<uint8_t> stored(chunk.compressed_size);
  if (Status st = backend_->read(blob_.blob_id, chunk.compressed_offset, stored); !st.ok()) {
    return fail(std::move(st).error());
  }
  auto data = decode_chunk(blob_, chunk, stored);
  if (!data.ok()) return fail(std::move(data).error());
  if (validate_) NYDUS_TRY(verify(chunk, *data, file_hint));
  return data;
}

Status BlobSource::verify(const rafs::ChunkRef& chunk, std::span<const uint8_t> data,
                          std::string_view file_hint) {
  if (!chunk.digest.has_value()) {
    // Nothing to compare with; say so once per blob instead of per chunk.
    if (!warned_no_digest_.exchange(true)) {
      spdlog::warn("validation is on but blob {} has chunks without a digest in the bootstrap "
                   "chunk table (first: ci={}); those chunks are not verified",
                   blob_.blob_id, chunk.ci_index);
    }
    return ok_status();
  }
  Status st = verify_chunk(blob_, chunk, data);
  if (!st.ok()) {
    metrics_->digest_failures.fetch_add(1, std::memory_order_relaxed);
    spdlog::error("read of {}: {}", file_hint, st.error().message());
    return std::move(st).error().wrap(fmt::format("file {}", file_hint));
  }
  return ok_status();
}

}  // namespace nydus::storage
