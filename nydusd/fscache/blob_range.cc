#include "nydusd/fscache/blob_range.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>

#include <spdlog/spdlog.h>

#include "nydusd/rafs/blob_ci.h"
#include "nydusd/storage/chunk_codec.h"

namespace nydus::fscache {

namespace {

// The format allows 2^24 chunks of 24-byte v2 entries; bounds what a hostile
// blob table can make us allocate before the parser checks it.
constexpr uint64_t kMaxCiBytes = 512ull << 20;
constexpr uint64_t kCiHeaderSize = sizeof(rafs::BlobCiHeader);

// Where a walk over the chunks of [offset, ...) starts: the last chunk that
// starts at or before `offset` (it may end before it: the gap after a chunk
// is zeros), else the first one. Entries are sorted and disjoint.
std::vector<rafs::ChunkInfo>::const_iterator first_chunk_at(const std::vector<rafs::ChunkInfo>& list,
                                                            uint64_t offset) {
  auto it = std::upper_bound(list.begin(), list.end(), offset,
                             [](uint64_t off, const rafs::ChunkInfo& c) { return off < c.uncompressed_offset; });
  if (it != list.begin()) --it;
  return it;
}

}  // namespace

BlobRangeSource::BlobRangeSource(rafs::BlobInfo blob, std::string meta_dir,
                                 std::shared_ptr<const rafs::Bootstrap> bootstrap)
    : blob_(std::move(blob)), meta_dir_(std::move(meta_dir)), bootstrap_(std::move(bootstrap)),
      metrics_(std::make_unique<storage::StorageMetrics>()) {}

BlobRangeSource::~BlobRangeSource() = default;

Result<std::shared_ptr<BlobRangeSource>> BlobRangeSource::open(const storage::StorageConfig& config,
                                                               const std::string& meta_dir,
                                                               std::shared_ptr<const rafs::Bootstrap> bootstrap,
                                                               const rafs::BlobInfo& blob) {
  NYDUS_TRY(storage::check_blob_id(blob.blob_id));
  if ((blob.features & rafs::blob_features::kUnsupported) != 0) {
    return make_error(ErrorKind::kUnsupported, "blob {} uses unsupported features {:#x}", blob.blob_id,
                      blob.features & rafs::blob_features::kUnsupported);
  }
  if (blob.uncompressed_size % rafs::kBlockSize != 0) {
    return make_error(ErrorKind::kCorrupt, "blob {}: uncompressed size {} is not 4 KiB aligned", blob.blob_id,
                      blob.uncompressed_size);
  }
  std::shared_ptr<BlobRangeSource> s(new BlobRangeSource(blob, meta_dir, std::move(bootstrap)));
  NYDUS_ASSIGN_OR_RETURN(s->backend_, storage::open_backend(config.backend, {blob}, s->metrics_.get()));
  // The source keeps its CI cache in work_dir only with a blob cache; we
  // always hand it complete chunk refs, so it never needs the CI itself.
  const std::string work_dir = config.cache.type == "blobcache" ? config.cache.work_dir : "";
  s->source_ = std::make_unique<storage::BlobSource>(s->backend_.get(), blob, work_dir, s->metrics_.get(),
                                                     config.validate);
  if (config.cache.type == "blobcache") {
    if (work_dir.empty()) return make_error(ErrorKind::kInvalidArgument, "blob cache needs a work_dir");
    NYDUS_ASSIGN_OR_RETURN(s->cache_, storage::BlobCache::open(work_dir, s->source_.get(), s->metrics_.get()));
  } else if (!config.cache.type.empty()) {
    return make_error(ErrorKind::kUnsupported, "fscache: storage cache type \"{}\" (blobcache or none)",
                      config.cache.type);
  }
  return s;
}

std::string BlobRangeSource::describe() const { return fmt::format("blob {}", blob_.blob_id); }

Result<std::shared_ptr<const std::vector<rafs::ChunkInfo>>> BlobRangeSource::chunks() {
  std::lock_guard lock(mu_);
  if (chunks_) return chunks_;
  if (blob_.ci_compressed_size > kMaxCiBytes || blob_.ci_uncompressed_size > kMaxCiBytes) {
    return make_error(ErrorKind::kCorrupt, "blob {}: CI sizes {}/{} are implausible", blob_.blob_id,
                      blob_.ci_compressed_size, blob_.ci_uncompressed_size);
  }
  std::optional<std::vector<rafs::ChunkInfo>> parsed;
  if (!meta_dir_.empty()) {
    const std::string meta = meta_dir_ + "/" + blob_.blob_id + ".blob.meta";
    struct stat st;
    if (::stat(meta.c_str(), &st) == 0) {
      auto cached = rafs::read_blob_ci(blob_, meta, rafs::CiSource::kBlobMeta);
      if (cached.ok()) {
        parsed = std::move(cached).value();
      } else {
        spdlog::warn("fscache: ignoring {}: {}", meta, cached.error().message());
      }
    }
  }
  if (!parsed) {
    std::vector<uint8_t> region(blob_.ci_compressed_size + kCiHeaderSize);
    NYDUS_TRY(backend_->read(blob_.blob_id, blob_.ci_offset, region));
    auto from_blob = rafs::parse_blob_ci(blob_, region, rafs::CiSource::kBlob);
    if (!from_blob.ok()) return std::move(from_blob).error().wrap(fmt::format("blob {} CI array", blob_.blob_id));
    parsed = std::move(from_blob).value();
  }
  // The kernel addresses the blob by uncompressed offset; every chunk must
  // lie inside the size we answer in copen.
  for (size_t k = 0; k < parsed->size(); ++k) {
    const auto& c = (*parsed)[k];
    if (c.uncompressed_offset + c.uncompressed_size > blob_.uncompressed_size ||
        (k > 0 && c.uncompressed_offset < (*parsed)[k - 1].uncompressed_offset + (*parsed)[k - 1].uncompressed_size)) {
      return make_error(ErrorKind::kCorrupt, "blob {}: CI entry {} (uoff={:#x} usize={}) is out of order or "
                        "outside the uncompressed size {}", blob_.blob_id, k, c.uncompressed_offset,
                        c.uncompressed_size, blob_.uncompressed_size);
    }
  }
  chunks_ = std::make_shared<const std::vector<rafs::ChunkInfo>>(std::move(*parsed));
  return chunks_;
}

Status BlobRangeSource::read_chunk(const rafs::ChunkRef& ref, uint32_t offset, std::span<uint8_t> out) {
  NYDUS_TRY(storage::check_chunk_extent(blob_, ref));
  const std::string hint = fmt::format("fscache blob {} [{:#x}, {:#x})", blob_.blob_id,
                                       ref.uncompressed_offset + offset,
                                       ref.uncompressed_offset + offset + out.size());
  if (cache_) return cache_->read(ref, offset, out, hint);
  metrics_->cache_misses.fetch_add(1, std::memory_order_relaxed);
  NYDUS_ASSIGN_OR_RETURN(std::vector<uint8_t> data, source_->fetch(ref, hint));
  if (uint64_t(offset) + out.size() > data.size()) {
    return make_error(ErrorKind::kCorrupt, "{}: chunk ci={} decoded to {} bytes", hint, ref.ci_index, data.size());
  }
  std::memcpy(out.data(), data.data() + offset, out.size());
  return ok_status();
}

std::pair<uint64_t, uint64_t> BlobRangeSource::fill_range(uint64_t offset, uint64_t end) {
  auto list = chunks();
  if (!list.ok() || offset >= end) return {offset, end};
  uint64_t start = offset;
  uint64_t stop = end;
  for (auto it = first_chunk_at(**list, offset); it != (*list)->end() && it->uncompressed_offset < end; ++it) {
    const uint64_t cend = it->uncompressed_offset + it->uncompressed_size;
    if (cend <= offset) continue;  // a chunk before the range (the gap after it is zeros)
    start = std::min(start, it->uncompressed_offset);
    stop = std::max(stop, cend);
  }
  if ((offset - start) + (stop - end) > kMaxFillGrowth) return {offset, end};
  return {start, stop};
}

Status BlobRangeSource::read(uint64_t offset, std::span<uint8_t> out) {
  std::memset(out.data(), 0, out.size());
  if (out.empty() || offset >= blob_.uncompressed_size) return ok_status();
  NYDUS_ASSIGN_OR_RETURN(auto list, chunks());
  const uint64_t end = offset + out.size();
  for (auto it = first_chunk_at(*list, offset); it != list->end() && it->uncompressed_offset < end; ++it) {
    const uint64_t cstart = it->uncompressed_offset;
    const uint64_t cend = cstart + it->uncompressed_size;
    const uint64_t s = std::max(offset, cstart);
    const uint64_t e = std::min(end, cend);
    if (s >= e) continue;
    const auto k = uint32_t(it - list->begin());
    NYDUS_TRY(read_chunk(rafs::chunk_ref_from_ci(blob_, k, *it, bootstrap_.get()), uint32_t(s - cstart),
                         out.subspan(s - offset, e - s)));
  }
  return ok_status();
}

}  // namespace nydus::fscache
