#include "nydusd/storage/blob_meta.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <filesystem>

#include <spdlog/spdlog.h>

#include "common/file_write.h"
#include "nydusd/rafs/blob_ci.h"
#include "nydusd/rafs/compression.h"
#include "common/file_io.h"
#include "nydusd/storage/chunk_codec.h"

namespace nydus::storage {

namespace {

// 16M chunks (the format's limit) of 16-byte v1 entries; bounds what a
// hostile blob table can make us allocate before the parser checks it.
constexpr uint64_t kMaxCiBytes = 256ull << 20;

}  // namespace

BlobMeta::BlobMeta(Backend* backend, const rafs::BlobInfo& blob, std::string work_dir)
    : backend_(backend), blob_(blob),
      meta_path_(work_dir.empty() ? "" : work_dir + "/" + blob.blob_id + ".blob.meta") {}

std::vector<std::string> BlobMeta::cache_files() const {
  std::lock_guard lock(mu_);
  if (meta_path_.empty() || !entries_) return {};
  return {meta_path_};
}

Status BlobMeta::resolve(rafs::ChunkRef* chunk) {
  std::lock_guard lock(mu_);
  if (!entries_) NYDUS_TRY(load_locked());
  if (chunk->ci_index >= entries_->size()) {
    return make_error(ErrorKind::kCorrupt, "{}: not in the blob's CI array ({} entries)",
                      describe_chunk(blob_, *chunk), entries_->size());
  }
  const rafs::ChunkInfo& ci = (*entries_)[chunk->ci_index];
  if (ci.uncompressed_offset != chunk->uncompressed_offset ||
      ci.uncompressed_size != chunk->uncompressed_size) {
    return make_error(ErrorKind::kCorrupt, "{}: the CI array says uoff={:#x} usize={}",
                      describe_chunk(blob_, *chunk), ci.uncompressed_offset, ci.uncompressed_size);
  }
  chunk->compressed_offset = ci.compressed_offset;
  chunk->compressed_size = ci.compressed_size;
  chunk->compressed = ci.compressed;
  return ok_status();
}

Status BlobMeta::load_locked() {
  if (blob_.ci_compressed_size > kMaxCiBytes || blob_.ci_uncompressed_size > kMaxCiBytes) {
    return make_error(ErrorKind::kCorrupt, "blob {}: CI sizes {}/{} are implausible",
                      blob_.blob_id, blob_.ci_compressed_size, blob_.ci_uncompressed_size);
  }
  // A blob.meta left by an earlier run (ours or the reference's) saves a
  // backend read; one that does not validate is ignored and replaced.
  if (!meta_path_.empty() && std::filesystem::exists(meta_path_)) {
    auto cached = rafs::read_blob_ci(blob_, meta_path_, rafs::CiSource::kBlobMeta);
    if (cached.ok()) {
      entries_ = std::move(cached).value();
      return ok_status();
    }
    spdlog::warn("ignoring cache file {}: {}", meta_path_, cached.error().message());
  }

  const uint64_t header_size = sizeof(rafs::BlobCiHeader);
  std::vector<uint8_t> region(blob_.ci_compressed_size + header_size);
  NYDUS_TRY(backend_->read(blob_.blob_id, blob_.ci_offset, region));
  auto parsed = rafs::parse_blob_ci(blob_, region, rafs::CiSource::kBlob);
  if (!parsed.ok()) return std::move(parsed).error();
  entries_ = std::move(parsed).value();

  if (!meta_path_.empty()) {
    // blob.meta = the uncompressed CI padded to 4 KiB, then the header.
    auto raw = rafs::decompress(blob_.ci_compressor,
                                std::span<const uint8_t>(region).first(blob_.ci_compressed_size),
                                blob_.ci_uncompressed_size);
    if (raw.ok()) {
      std::vector<uint8_t> meta = std::move(raw).value();
      meta.resize(rafs::round_up(meta.size(), rafs::kBlockSize), 0);
      meta.insert(meta.end(), region.end() - long(header_size), region.end());
      if (Status st = write_file_atomic(meta_path_, meta, 0644, Durability::kNotDurable); !st.ok()) {
        spdlog::warn("could not cache the CI array of blob {}: {}", blob_.blob_id,
                     st.error().message());
      }
    }
  }
  return ok_status();
}

}  // namespace nydus::storage
