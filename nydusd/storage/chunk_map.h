// The persisted chunk-ready map of one blob cache:
// <work_dir>/<blob_id>.blob.data.chunk_map.
//
// File format (little-endian), compatible in layout with the reference
// nydusd's persist_map (which ignores the reserved bytes we use):
//
//   0     u32 magic      0x424D4150
//   4     u32 version    1
//   8     u32 magic2     0x434D4150
//   12    u32 all_ready  0x4D4D4150 once every chunk is ready, else 0
//   16    u32 chunk_count of the blob (ours; the reference leaves it 0)
//   20    reserved, zero, up to 4096
//   4096  bitmap, ceil(chunk_count / 8) bytes; chunk i is bit (7 - i % 8) of
//         byte i / 8 (most significant bit first, as the reference does)
//
// The file size must be exactly 4096 + ceil(chunk_count / 8). A file whose
// size, magics, version or chunk count do not match, or that has bits set
// past chunk_count is never trusted: it is replaced by a fresh, all-zero map.
// all_ready is only a derived hint (readiness is always read from the bits);
// a flag that disagrees with the bits is reset.
//
// Sharing between processes: the file is mmap'ed MAP_SHARED and bits are set
// and cleared with atomic byte operations on the mapping, so any number of
// processes (and threads) can update one map without a lock and without
// losing each other's bits. A new or rebuilt map is written to a temporary
// file and renamed into place, never truncated or rewritten in place: a
// process that still maps the old file keeps a valid mapping (no SIGBUS); its
// later marks only go to the replaced file, which costs a refetch and never
// marks unwritten data ready.
//
// Crash ordering: the caller marks a chunk ready only after its data has been
// written AND fdatasync'ed in the data file (see blob_cache.h). The page that
// holds the bit may reach the disk at any time after the bit is set, but by
// then the data is already durable, so a crash can lose a mark (the chunk is
// fetched again) but can never persist a mark for data that is not on disk.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "common/result.h"

namespace nydus::storage {

inline constexpr uint32_t kChunkMapMagic = 0x424D4150;
inline constexpr uint32_t kChunkMapMagic2 = 0x434D4150;
inline constexpr uint32_t kChunkMapAllReady = 0x4D4D4150;
inline constexpr uint32_t kChunkMapVersion = 1;
inline constexpr uint64_t kChunkMapHeaderSize = 4096;

// Naturally packed (u32 fields, then bytes); the static_assert keeps it so.
struct ChunkMapHeader {
  uint32_t magic;
  uint32_t version;
  uint32_t magic2;
  uint32_t all_ready;
  uint32_t chunk_count;
  uint8_t reserved[kChunkMapHeaderSize - 20];
};
static_assert(sizeof(ChunkMapHeader) == kChunkMapHeaderSize);

inline constexpr uint64_t chunk_map_file_size(uint32_t chunk_count) {
  return kChunkMapHeaderSize + (uint64_t(chunk_count) + 7) / 8;
}

class ChunkMap {
 public:
  // Opens the map at `path` for a blob of `chunk_count` chunks, creating it
  // when missing and replacing it when it does not match (see above) or when
  // `discard` is set (the data file it describes was new or resized).
  static Result<std::unique_ptr<ChunkMap>> open(const std::string& path, uint32_t chunk_count,
                                                bool discard);
  ~ChunkMap();
  ChunkMap(const ChunkMap&) = delete;
  ChunkMap& operator=(const ChunkMap&) = delete;

  const std::string& path() const { return path_; }
  uint32_t chunk_count() const { return chunk_count_; }
  // True when open() had to create or replace the file.
  bool rebuilt() const { return rebuilt_; }

  // `index` must be < chunk_count() (callers check chunk refs first).
  bool is_ready(uint32_t index) const;
  // Call only after the chunk's data is durable in the data file.
  void set_ready(uint32_t index);
  // Withdraws a mark whose cached data turned out to be unreadable or bad.
  void clear_ready(uint32_t index);

  // Counts the ready bits (also those set by other processes) and raises the
  // all_ready flag when every chunk is ready.
  uint32_t refresh_ready_count();
  bool all_ready() const;

 private:
  ChunkMap(std::string path, uint32_t chunk_count, uint8_t* base, size_t size, bool rebuilt);

  uint32_t& all_ready_word() const {
    return *reinterpret_cast<uint32_t*>(base_ + offsetof(ChunkMapHeader, all_ready));
  }
  uint8_t* bitmap() const { return base_ + kChunkMapHeaderSize; }

  std::string path_;
  uint32_t chunk_count_;
  uint8_t* base_;  // MAP_SHARED mapping of the whole file
  size_t size_;
  bool rebuilt_;
  // Bits this process knows to be set: a lower bound, because other
  // processes set bits too. When it reaches chunk_count the bitmap is
  // recounted to decide all_ready.
  std::atomic<uint32_t> known_ready_{0};
};

}  // namespace nydus::storage
