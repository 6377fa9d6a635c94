#include "nydusd/storage/blob_store.h"

#include <algorithm>
#include <filesystem>

#include <spdlog/spdlog.h>

#include "nydusd/storage/chunk_codec.h"

namespace nydus::storage {

namespace {

enum class CacheKind { kNone, kBlobCache };

Result<CacheKind> parse_cache_type(const std::string& type) {
  // filecache is the reference's newer name for the same on-disk layout;
  // dummycache is its "no cache" type.
  if (type == "blobcache" || type == "filecache") return CacheKind::kBlobCache;
  if (type.empty() || type == "dummycache") return CacheKind::kNone;
  return make_error(ErrorKind::kUnsupported,
                    "unknown cache type \"{}\" (supported: blobcache, filecache, dummycache, \"\")",
                    type);
}

}  // namespace

Result<std::shared_ptr<BlobStore>> BlobStore::open(const StorageConfig& config,
                                                   std::shared_ptr<const rafs::Bootstrap> bootstrap) {
  NYDUS_ASSIGN_OR_RETURN(auto store, BlobStoreImpl::create(config, std::move(bootstrap)));
  return std::shared_ptr<BlobStore>(std::move(store));
}

BlobStoreImpl::BlobStoreImpl(const StorageConfig& config,
                             std::shared_ptr<const rafs::Bootstrap> bootstrap)
    : config_(config), bootstrap_(std::move(bootstrap)) {}

BlobStoreImpl::~BlobStoreImpl() { stop_prefetch(); }

Result<std::shared_ptr<BlobStoreImpl>> BlobStoreImpl::create(
    const StorageConfig& config, std::shared_ptr<const rafs::Bootstrap> bootstrap,
    const BackendFactory& make_backend) {
  if (!bootstrap) return make_error(ErrorKind::kInvalidArgument, "storage: no bootstrap");
  NYDUS_ASSIGN_OR_RETURN(CacheKind cache_kind, parse_cache_type(config.cache.type));
  const auto& blobs = bootstrap->blobs();
  for (size_t i = 0; i < blobs.size(); ++i) {
    const rafs::BlobInfo& blob = blobs[i];
    NYDUS_TRY(check_blob_id(blob.blob_id));
    if (blob.index != i) {
      return make_error(ErrorKind::kCorrupt, "blob {} is at table position {} but has index {}",
                        blob.blob_id, i, blob.index);
    }
    if ((blob.features & rafs::blob_features::kUnsupported) != 0) {
      return make_error(ErrorKind::kUnsupported, "blob {} uses unsupported features {:#x}",
                        blob.blob_id, blob.features & rafs::blob_features::kUnsupported);
    }
  }

  std::shared_ptr<BlobStoreImpl> store(new BlobStoreImpl(config, std::move(bootstrap)));
  NYDUS_ASSIGN_OR_RETURN(store->backend_, make_backend(config.backend, blobs, &store->metrics_));

  std::string work_dir;
  if (cache_kind == CacheKind::kBlobCache) {
    if (config.cache.work_dir.empty()) {
      return make_error(ErrorKind::kInvalidArgument, "cache type {} needs a work_dir",
                        config.cache.type);
    }
    work_dir = config.cache.work_dir;
    std::error_code ec;
    std::filesystem::create_directories(work_dir, ec);
    if (ec) {
      return make_error(ErrorKind::kIo, "create cache work_dir {}: {}", work_dir, ec.message());
    }
  }

  for (const auto& blob : blobs) {
    Blob b;
    b.source = std::make_unique<BlobSource>(store->backend_.get(), blob, work_dir,
                                            &store->metrics_, config.validate);
    if (cache_kind == CacheKind::kBlobCache) {
      NYDUS_ASSIGN_OR_RETURN(b.cache, BlobCache::open(work_dir, b.source.get(), &store->metrics_));
    }
    store->blobs_.push_back(std::move(b));
  }

  BlobStoreImpl* self = store.get();
  store->prefetcher_ = std::make_unique<Prefetcher>(
      store->bootstrap_.get(), config.prefetch,
      [self](const rafs::ChunkRef& c) { return self->prefetch_chunk(c); },
      [self](const rafs::ChunkRef& c) { return self->chunk_ready(c); },
      [self] { self->data_all_ready(); }, &store->metrics_);
  spdlog::info("storage: {} blob(s), backend {}, cache {}, validate={}", blobs.size(),
               store->backend_->type(), work_dir.empty() ? "none" : work_dir, config.validate);
  return store;
}

Result<size_t> BlobStoreImpl::read(uint64_t nid, uint64_t offset, std::span<uint8_t> out,
                                   std::string_view file_hint) {
  std::string hint_storage;
  if (file_hint.empty()) {
    hint_storage = fmt::format("nid {}", nid);
    file_hint = hint_storage;
  }
  if (out.empty()) return size_t(0);
  auto attr = bootstrap_->getattr(nid);
  if (!attr.ok()) return std::move(attr).error().wrap(fmt::format("read {}", file_hint));
  if (offset >= attr->size) return size_t(0);
  const uint64_t end = offset + std::min<uint64_t>(out.size(), attr->size - offset);

  auto chunks = bootstrap_->map_range(nid, offset, end - offset);
  if (!chunks.ok()) return std::move(chunks).error().wrap(fmt::format("read {}", file_hint));

  // map_range yields the chunks in file order, each covering
  // [file_offset, file_offset + uncompressed_size); copy the overlap of each
  // with the request. They must tile the range: a gap is a broken image.
  uint64_t pos = offset;
  for (const auto& chunk : *chunks) {
    const uint64_t cstart = chunk.file_offset;
    const uint64_t cend = cstart + chunk.uncompressed_size;
    if (cend <= pos) continue;
    if (cstart > pos) break;
    const uint64_t stop = std::min(end, cend);
    NYDUS_TRY(read_chunk(chunk, uint32_t(pos - cstart), out.subspan(pos - offset, stop - pos),
                         file_hint));
    pos = stop;
    if (pos == end) break;
  }
  if (pos != end) {
    return make_error(ErrorKind::kCorrupt, "read {}: the chunks of nid {} do not cover [{}, {})",
                      file_hint, nid, pos, end);
  }
  return size_t(end - offset);
}

Status BlobStoreImpl::read_chunk(const rafs::ChunkRef& chunk, uint32_t offset,
                                 std::span<uint8_t> out, std::string_view file_hint) {
  if (chunk.blob_index >= blobs_.size()) {
    return make_error(ErrorKind::kCorrupt, "read {}: chunk ci={} names blob index {} of {}",
                      file_hint, chunk.ci_index, chunk.blob_index, blobs_.size());
  }
  Blob& blob = blobs_[chunk.blob_index];
  if (Status st = check_chunk_extent(blob.source->blob(), chunk); !st.ok()) {
    spdlog::error("read of {}: {}", file_hint, st.error().message());
    return std::move(st).error().wrap(fmt::format("file {}", file_hint));
  }
  if (blob.cache) return blob.cache->read(chunk, offset, out, file_hint);

  // No cache: every read goes to the backend.
  metrics_.cache_misses.fetch_add(1, std::memory_order_relaxed);
  NYDUS_ASSIGN_OR_RETURN(std::vector<uint8_t> data, blob.source->fetch(chunk, file_hint));
  std::copy_n(data.begin() + offset, out.size(), out.begin());
  return ok_status();
}

Status BlobStoreImpl::prefetch_chunk(const rafs::ChunkRef& chunk) {
  if (chunk.blob_index >= blobs_.size() || !blobs_[chunk.blob_index].cache) return ok_status();
  Blob& blob = blobs_[chunk.blob_index];
  NYDUS_TRY(check_chunk_extent(blob.source->blob(), chunk));
  auto fetched = blob.cache->prefetch(chunk);
  if (!fetched.ok()) return std::move(fetched).error();
  return ok_status();
}

bool BlobStoreImpl::chunk_ready(const rafs::ChunkRef& chunk) const {
  if (chunk.blob_index >= blobs_.size()) return true;  // nothing we could fetch
  const Blob& blob = blobs_[chunk.blob_index];
  if (!blob.cache) return true;
  if (chunk.ci_index >= blob.source->blob().chunk_count) return true;
  return blob.cache->is_ready(chunk.ci_index);
}

void BlobStoreImpl::start_prefetch(std::vector<uint64_t> nids) {
  if (!config_.prefetch.enable) {
    spdlog::debug("prefetch: disabled by config");
    return;
  }
  bool any_cache = std::any_of(blobs_.begin(), blobs_.end(), [](const Blob& b) { return b.cache != nullptr; });
  if (!any_cache) {
    spdlog::info("prefetch: skipped, there is no cache to fill");
    return;
  }
  prefetcher_->start(std::move(nids));
}

void BlobStoreImpl::stop_prefetch() {
  if (prefetcher_) prefetcher_->stop();
}

bool BlobStoreImpl::wait_prefetch(std::chrono::milliseconds timeout) {
  return prefetcher_->wait_idle(timeout);
}

bool BlobStoreImpl::data_all_ready() {
  bool all = true;
  for (auto& b : blobs_) {
    if (!b.cache) return false;
    ChunkMap& map = b.cache->chunk_map();
    if (map.refresh_ready_count() != map.chunk_count()) all = false;
  }
  return all;
}

std::vector<std::string> BlobStoreImpl::cache_files() const {
  std::vector<std::string> files;
  for (const auto& b : blobs_) {
    if (!b.cache) continue;
    files.push_back(b.cache->data_path());
    files.push_back(b.cache->chunk_map().path());
    for (auto& f : b.source->cache_files()) files.push_back(std::move(f));
  }
  return files;
}

}  // namespace nydus::storage
