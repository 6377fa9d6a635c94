#include "nydusd/storage/chunk_map.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <bit>
#include <cerrno>
#include <cstddef>
#include <cstring>

#include <spdlog/spdlog.h>

#include "common/unique_fd.h"

namespace nydus::storage {

namespace {

// Creating a map can lose a race against another creator (it links first);
// we then validate theirs. Bounded so a file that keeps changing under us is
// an error instead of a loop.
constexpr int kOpenAttempts = 4;

constexpr size_t kAllReadyOffset = offsetof(ChunkMapHeader, all_ready);

inline uint8_t bit_mask(uint32_t index) { return uint8_t(0x80u >> (index & 7)); }

// Lock-free byte atomics on a shared mapping are what make cross-process
// updates safe; make sure they really are lock-free on this target.
static_assert(std::atomic_ref<uint8_t>::is_always_lock_free);
static_assert(std::atomic_ref<uint32_t>::is_always_lock_free);

uint32_t count_bits(const uint8_t* bitmap, uint32_t chunk_count) {
  uint64_t bytes = (uint64_t(chunk_count) + 7) / 8;
  uint32_t n = 0;
  for (uint64_t i = 0; i < bytes; ++i) {
    uint8_t v = std::atomic_ref<uint8_t>(const_cast<uint8_t&>(bitmap[i])).load(
        std::memory_order_acquire);
    n += uint32_t(std::popcount(v));
  }
  return n;
}

Result<uint8_t*> map_file(int fd, size_t size, const std::string& path) {
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return Error::from_errno(errno, fmt::format("mmap chunk map {}", path));
  return static_cast<uint8_t*>(p);
}

// Why an existing map cannot be trusted, or "" when it can. Reads through the
// mapping so the checks see exactly what later accesses will see.
std::string check_existing(int fd, uint32_t chunk_count, const std::string& path,
                           uint8_t** base_out) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return fmt::format("stat failed: {}", std::strerror(errno));
  uint64_t want = chunk_map_file_size(chunk_count);
  if (uint64_t(st.st_size) != want) {
    return fmt::format("size {} != expected {}", uint64_t(st.st_size), want);
  }
  auto mapped = map_file(fd, want, path);
  if (!mapped.ok()) return mapped.error().message();
  uint8_t* base = *mapped;
  ChunkMapHeader h;
  std::memcpy(&h, base, sizeof(h));
  std::string why;
  const uint8_t* bitmap = base + kChunkMapHeaderSize;
  if (h.magic != kChunkMapMagic || h.magic2 != kChunkMapMagic2) {
    why = fmt::format("bad magic {:#x}/{:#x}", h.magic, h.magic2);
  } else if (h.version != kChunkMapVersion) {
    why = fmt::format("version {} != {}", h.version, kChunkMapVersion);
  } else if (h.chunk_count != chunk_count) {
    why = fmt::format("chunk count {} != {}", h.chunk_count, chunk_count);
  } else if (h.all_ready != 0 && h.all_ready != kChunkMapAllReady) {
    why = fmt::format("bad all_ready value {:#x}", h.all_ready);
  } else if (chunk_count % 8 != 0 &&
             (bitmap[chunk_count / 8] & uint8_t(0xFFu >> (chunk_count % 8))) != 0) {
    why = "bits set past the last chunk";
  }
  if (!why.empty()) {
    ::munmap(base, want);
    return why;
  }
  // all_ready is derived from the bits (which are the truth, and are never
  // read through the flag); a stale flag, which a clear_ready() racing with a
  // recount can leave behind, is reset rather than costing the whole map.
  if (h.all_ready == kChunkMapAllReady && count_bits(bitmap, chunk_count) != chunk_count) {
    spdlog::info("chunk map {}: all_ready flag is stale, clearing it", path);
    std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(base + kAllReadyOffset))
        .store(0, std::memory_order_release);
  }
  *base_out = base;
  return "";
}

// Writes a fresh all-zero map to a temporary file next to `path`.
Result<std::pair<std::string, UniqueFd>> write_fresh(const std::string& path,
                                                     uint32_t chunk_count) {
  static std::atomic<uint64_t> counter{0};
  std::string tmp = fmt::format("{}.tmp.{}.{}", path, ::getpid(), counter.fetch_add(1));
  UniqueFd fd(::open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!fd) return Error::from_errno(errno, fmt::format("create chunk map {}", tmp));
  ChunkMapHeader h{};
  h.magic = kChunkMapMagic;
  h.version = kChunkMapVersion;
  h.magic2 = kChunkMapMagic2;
  h.all_ready = 0;
  h.chunk_count = chunk_count;
  Status st = ok_status();
  if (::pwrite(fd.get(), &h, sizeof(h), 0) != ssize_t(sizeof(h))) {
    st = Error::from_errno(errno ? errno : EIO, fmt::format("write chunk map {}", tmp));
  } else if (::ftruncate(fd.get(), off_t(chunk_map_file_size(chunk_count))) != 0) {
    st = Error::from_errno(errno, fmt::format("size chunk map {}", tmp));
  }
  if (!st.ok()) {
    ::unlink(tmp.c_str());
    return std::move(st).error();
  }
  return std::make_pair(std::move(tmp), std::move(fd));
}

}  // namespace

Result<std::unique_ptr<ChunkMap>> ChunkMap::open(const std::string& path, uint32_t chunk_count,
                                                 bool discard) {
  const size_t size = chunk_map_file_size(chunk_count);
  for (int attempt = 0; attempt < kOpenAttempts; ++attempt) {
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    if (!fd && errno != ENOENT) {
      return Error::from_errno(errno, fmt::format("open chunk map {}", path));
    }
    const bool exists = fd.valid();
    if (exists && !discard) {
      uint8_t* base = nullptr;
      std::string why = check_existing(fd.get(), chunk_count, path, &base);
      if (why.empty()) {
        return std::unique_ptr<ChunkMap>(new ChunkMap(path, chunk_count, base, size, false));
      }
      spdlog::warn("chunk map {} is not trusted ({}); rebuilding it, its chunks will be fetched again",
                   path, why);
    } else if (exists) {
      spdlog::info("chunk map {} discarded: its data file was created or resized", path);
    }

    NYDUS_ASSIGN_OR_RETURN(auto fresh, write_fresh(path, chunk_count));
    auto& [tmp, tmp_fd] = fresh;
    if (exists) {
      // Replace atomically; mappings of the old file stay valid.
      if (::rename(tmp.c_str(), path.c_str()) != 0) {
        int err = errno;
        ::unlink(tmp.c_str());
        return Error::from_errno(err, fmt::format("replace chunk map {}", path));
      }
    } else {
      // Publish only if still absent: a map another process created in the
      // meantime may already hold marks, so validate that one instead.
      int rc = ::link(tmp.c_str(), path.c_str());
      int err = errno;
      ::unlink(tmp.c_str());
      if (rc != 0) {
        if (err == EEXIST) continue;
        return Error::from_errno(err, fmt::format("create chunk map {}", path));
      }
    }
    NYDUS_ASSIGN_OR_RETURN(uint8_t* base, map_file(tmp_fd.get(), size, path));
    return std::unique_ptr<ChunkMap>(new ChunkMap(path, chunk_count, base, size, true));
  }
  return make_error(ErrorKind::kIo, "chunk map {} keeps changing while being opened", path);
}

ChunkMap::ChunkMap(std::string path, uint32_t chunk_count, uint8_t* base, size_t size,
                   bool rebuilt)
    : path_(std::move(path)), chunk_count_(chunk_count), base_(base), size_(size),
      rebuilt_(rebuilt) {
  refresh_ready_count();
}

ChunkMap::~ChunkMap() { ::munmap(base_, size_); }

bool ChunkMap::is_ready(uint32_t index) const {
  uint8_t v = std::atomic_ref<uint8_t>(bitmap()[index >> 3]).load(std::memory_order_acquire);
  return (v & bit_mask(index)) != 0;
}

void ChunkMap::set_ready(uint32_t index) {
  // Release: whoever observes the bit (acquire) also observes the data
  // writes this thread made before it.
  uint8_t old = std::atomic_ref<uint8_t>(bitmap()[index >> 3])
                    .fetch_or(bit_mask(index), std::memory_order_acq_rel);
  if ((old & bit_mask(index)) != 0) return;
  if (known_ready_.fetch_add(1, std::memory_order_relaxed) + 1 >= chunk_count_) {
    refresh_ready_count();
  }
}

void ChunkMap::clear_ready(uint32_t index) {
  // Drop the all-ready claim before the bit so no reader sees "all ready"
  // with a chunk missing.
  std::atomic_ref<uint32_t>(all_ready_word()).store(0, std::memory_order_release);
  uint8_t old = std::atomic_ref<uint8_t>(bitmap()[index >> 3])
                    .fetch_and(uint8_t(~bit_mask(index)), std::memory_order_acq_rel);
  if ((old & bit_mask(index)) != 0) known_ready_.fetch_sub(1, std::memory_order_relaxed);
}

uint32_t ChunkMap::refresh_ready_count() {
  uint32_t n = count_bits(bitmap(), chunk_count_);
  known_ready_.store(n, std::memory_order_relaxed);
  if (n == chunk_count_ && chunk_count_ > 0) {
    std::atomic_ref<uint32_t>(all_ready_word()).store(kChunkMapAllReady,
                                                          std::memory_order_release);
  }
  return n;
}

bool ChunkMap::all_ready() const {
  return std::atomic_ref<uint32_t>(all_ready_word()).load(std::memory_order_acquire) ==
         kChunkMapAllReady;
}

}  // namespace nydus::storage
