#include "nydusd/storage/blob_cache.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include <spdlog/spdlog.h>

#include "common/file_io.h"
#include "nydusd/storage/chunk_codec.h"

namespace nydus::storage {

namespace {

constexpr std::chrono::milliseconds kLockRetryInterval{10};

// Holds an exclusive flock on an fd until destroyed.
class FileLock {
 public:
  static Result<FileLock> acquire(int fd, const std::string& path) {
    auto deadline = std::chrono::steady_clock::now() + kCacheOpenLockTimeout;
    while (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      if (errno == EINTR) continue;
      if (errno != EWOULDBLOCK) return Error::from_errno(errno, fmt::format("flock {}", path));
      if (std::chrono::steady_clock::now() >= deadline) {
        return make_error(ErrorKind::kTimeout,
                          "cache file {} stayed locked by another process for {}s", path,
                          kCacheOpenLockTimeout.count());
      }
      std::this_thread::sleep_for(kLockRetryInterval);
    }
    return FileLock(fd);
  }
  FileLock(FileLock&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  FileLock& operator=(FileLock&&) = delete;
  ~FileLock() {
    if (fd_ >= 0) ::flock(fd_, LOCK_UN);
  }

 private:
  explicit FileLock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace

Result<std::unique_ptr<BlobCache>> BlobCache::open(const std::string& work_dir, BlobSource* source,
                                                   StorageMetrics* metrics) {
  const rafs::BlobInfo& blob = source->blob();
  std::string data_path = work_dir + "/" + blob.blob_id + ".blob.data";
  UniqueFd fd(::open(data_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!fd) return Error::from_errno(errno, fmt::format("open cache file {}", data_path));

  std::unique_ptr<ChunkMap> map;
  {
    NYDUS_ASSIGN_OR_RETURN(FileLock lock, FileLock::acquire(fd.get(), data_path));
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) {
      return Error::from_errno(errno, fmt::format("stat cache file {}", data_path));
    }
    bool resized = uint64_t(st.st_size) != blob.uncompressed_size;
    if (resized) {
      // New (size 0) or not what this blob needs: any marks are meaningless.
      if (::ftruncate(fd.get(), off_t(blob.uncompressed_size)) != 0) {
        return Error::from_errno(errno, fmt::format("size cache file {} to {}", data_path,
                                                    blob.uncompressed_size));
      }
    }
    NYDUS_ASSIGN_OR_RETURN(map, ChunkMap::open(data_path + ".chunk_map", blob.chunk_count,
                                               /*discard=*/resized));
  }
  return std::unique_ptr<BlobCache>(
      new BlobCache(source, metrics, std::move(data_path), std::move(fd), std::move(map)));
}

BlobCache::BlobCache(BlobSource* source, StorageMetrics* metrics, std::string data_path,
                     UniqueFd data_fd, std::unique_ptr<ChunkMap> map)
    : source_(source), metrics_(metrics), data_path_(std::move(data_path)),
      data_fd_(std::move(data_fd)), map_(std::move(map)),
      verified_(new std::atomic<uint64_t>[(size_t(map_->chunk_count()) + 63) / 64]()) {}

bool BlobCache::is_verified(uint32_t ci) const {
  return (verified_[ci / 64].load(std::memory_order_acquire) >> (ci % 64)) & 1;
}

void BlobCache::set_verified(uint32_t ci) {
  verified_[ci / 64].fetch_or(uint64_t(1) << (ci % 64), std::memory_order_acq_rel);
}

Status BlobCache::read(const rafs::ChunkRef& chunk, uint32_t offset, std::span<uint8_t> out,
                       std::string_view file_hint) {
  const uint32_t ci = chunk.ci_index;
  if (uint64_t(offset) + out.size() > chunk.uncompressed_size) {
    return make_error(ErrorKind::kInternal, "{}: read of [{}, +{}) is outside the chunk",
                      describe_chunk(source_->blob(), chunk), offset, out.size());
  }

  // Fast path: ready (and verified, when validating) - only the bytes asked for.
  if (map_->is_ready(ci) && (!source_->validate() || is_verified(ci))) {
    Status st = nydus::pread_exact(data_fd_.get(), out, chunk.uncompressed_offset + offset,
                                  data_path_);
    if (st.ok()) {
      metrics_->cache_hits.fetch_add(1, std::memory_order_relaxed);
      return ok_status();
    }
    spdlog::warn("read of {}: {} is marked ready but the cache file read failed ({}); fetching it "
                 "again",
                 file_hint, describe_chunk(source_->blob(), chunk), st.error().message());
    map_->clear_ready(ci);
  }

  InflightTable::Role role = InflightTable::Role::kLeader;
  bool fetched = false;
  auto data = inflight_.run(
      ci, [&] { return fill(chunk, file_hint, Purpose::kRead, &fetched); }, &role);
  if (role == InflightTable::Role::kWaiter) {
    metrics_->chunk_coalesced_waits.fetch_add(1, std::memory_order_relaxed);
    // The leader's error names the leader's file; say which file waited.
    if (!data.ok()) {
      return std::move(data).error().wrap(fmt::format("file {} (shared fetch)", file_hint));
    }
  }
  if (!data.ok()) return std::move(data).error();
  const std::vector<uint8_t>& bytes = **data;
  // A leader may have fetched the same CI index through a different (hostile)
  // ref; never copy outside what it got.
  if (uint64_t(offset) + out.size() > bytes.size()) {
    return make_error(ErrorKind::kCorrupt, "file {}: {}: chunk has {} bytes, need [{}, +{})",
                      file_hint, describe_chunk(source_->blob(), chunk), bytes.size(), offset,
                      out.size());
  }
  std::memcpy(out.data(), bytes.data() + offset, out.size());
  return ok_status();
}

Result<bool> BlobCache::prefetch(const rafs::ChunkRef& chunk) {
  if (map_->is_ready(chunk.ci_index)) return false;
  bool fetched = false;
  auto data = inflight_.run(chunk.ci_index, [&] {
    return fill(chunk, "prefetch", Purpose::kPrefetch, &fetched);
  });
  if (!data.ok()) return std::move(data).error();
  return fetched;
}

Result<ChunkData> BlobCache::fill(const rafs::ChunkRef& chunk, std::string_view file_hint,
                                  Purpose purpose, bool* fetched) {
  const uint32_t ci = chunk.ci_index;
  if (map_->is_ready(ci)) {
    // Became ready since the caller looked (another thread or process), or
    // cached earlier and not yet verified by this process.
    auto cached = std::make_shared<std::vector<uint8_t>>(chunk.uncompressed_size);
    Status st = nydus::pread_exact(data_fd_.get(), *cached, chunk.uncompressed_offset, data_path_);
    if (!st.ok()) {
      spdlog::warn("read of {}: {} is marked ready but the cache file read failed ({}); fetching "
                   "it again",
                   file_hint, describe_chunk(source_->blob(), chunk), st.error().message());
    } else if (source_->validate() && !source_->verify(chunk, *cached, file_hint).ok()) {
      // verify() logged the mismatch; the cache file, not the blob, is bad.
      spdlog::warn("read of {}: the cached copy of chunk ci={} of blob {} is bad; fetching it again",
                   file_hint, ci, source_->blob().blob_id);
      st = make_error(ErrorKind::kCorrupt, "bad cached chunk");
    }
    if (st.ok()) {
      if (source_->validate()) set_verified(ci);
      if (purpose == Purpose::kRead) metrics_->cache_hits.fetch_add(1, std::memory_order_relaxed);
      return ChunkData(std::move(cached));
    }
    map_->clear_ready(ci);
  }

  if (purpose == Purpose::kRead) metrics_->cache_misses.fetch_add(1, std::memory_order_relaxed);
  NYDUS_ASSIGN_OR_RETURN(std::vector<uint8_t> data, source_->fetch(chunk, file_hint));
  *fetched = true;
  if (purpose == Purpose::kPrefetch) {
    metrics_->prefetch_chunks.fetch_add(1, std::memory_order_relaxed);
    metrics_->prefetch_bytes.fetch_add(data.size(), std::memory_order_relaxed);
  }
  store(chunk, data);
  if (source_->validate()) set_verified(ci);
  return ChunkData(std::make_shared<const std::vector<uint8_t>>(std::move(data)));
}

void BlobCache::store(const rafs::ChunkRef& chunk, const std::vector<uint8_t>& data) {
  Status st = nydus::pwrite_all(data_fd_.get(), data, chunk.uncompressed_offset, data_path_);
  if (st.ok() && ::fdatasync(data_fd_.get()) != 0) {
    st = Error::from_errno(errno, fmt::format("fdatasync cache file {}", data_path_));
  }
  if (!st.ok()) {
    metrics_->cache_write_errors.fetch_add(1, std::memory_order_relaxed);
    spdlog::warn("caching {} failed ({}); it stays not ready and will be fetched again",
                 describe_chunk(source_->blob(), chunk), st.error().message());
    return;
  }
  map_->set_ready(chunk.ci_index);
}

}  // namespace nydus::storage
