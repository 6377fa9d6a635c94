// The data the reader benches read (failover_bench, recovery_reader): file
// contents, read sizes and where a read goes. Header only and standard
// library only: recovery_reader is linked statically and runs, bind-mounted,
// inside a container whose root file system is the nydus image.
//
// A file's content is a pure function of (file index, offset): 4 KiB blocks
// alternate random words and one repeated word, so lz4 really compresses and
// a reader verifies every byte without a copy of the source.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <utility>
#include <vector>

namespace nydus::bench {

inline constexpr size_t kChunk = 1 << 20;  // the images' chunk size
inline constexpr size_t kSmall = 4096;     // the two read sizes
inline constexpr size_t kLarge = 1 << 20;
inline constexpr size_t kAlign = 4096;     // of read offsets and buffers (O_DIRECT)

inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// The content of file `f` at [off, off + len): 4 KiB blocks alternate random
// words and one repeated word. Offsets and lengths are multiples of 8.
inline void fill(uint64_t f, uint64_t off, size_t len, char* out) {
  for (size_t i = 0; i < len; i += 8) {
    uint64_t w = (off + i) / 8;
    uint64_t block = w / 512;
    uint64_t v = (block % 2 == 0) ? splitmix64((f << 40) ^ w) : splitmix64((f << 40) ^ (block << 1) ^ 1);
    std::memcpy(out + i, &v, 8);
  }
}

// A reader thread's buffers: one aligned for O_DIRECT that reads go into,
// and one for the content they must find.
class ReadBuffer {
 public:
  ReadBuffer() : data_(static_cast<char*>(std::aligned_alloc(kAlign, kLarge))), expect_(kLarge) {}
  ~ReadBuffer() { std::free(data_); }
  ReadBuffer(const ReadBuffer&) = delete;
  ReadBuffer& operator=(const ReadBuffer&) = delete;

  // kLarge bytes.
  char* data() { return data_; }

  // The index of the first of the `len` bytes read that differs from the
  // content of file `f` at `off`; `len` when every byte is right.
  size_t mismatch(uint64_t f, uint64_t off, size_t len) {
    fill(f, off, len, expect_.data());
    if (std::memcmp(data_, expect_.data(), len) == 0) return len;
    size_t i = 0;
    while (i < len && data_[i] == expect_[i]) ++i;
    return i;
  }

 private:
  char* data_;
  std::vector<char> expect_;
};

// A random kAlign-aligned offset for a read of `len` bytes in a file of
// `file_size` bytes.
inline uint64_t random_offset(std::mt19937_64& rng, uint64_t file_size, size_t len) {
  return (rng() % ((file_size - len) / kAlign + 1)) * kAlign;
}

// The chunks of files [first_file, files), each of `file_mib` MiB, in a fixed
// random order, each handed out once: the reads that no read has touched
// before (blob cache misses: nydusd fetches from the backend, decompresses
// and fills its cache). Thread safe once built.
class ColdChunks {
 public:
  ColdChunks(size_t first_file, size_t files, size_t file_mib) {
    for (size_t f = first_file; f < files; ++f) {
      for (size_t c = 0; c < (file_mib << 20) / kChunk; ++c) chunks_.emplace_back(f, c);
    }
    std::shuffle(chunks_.begin(), chunks_.end(), std::mt19937_64(7));
  }

  // The next untouched chunk as the target of a read: a large read takes the
  // whole chunk, a small one a random aligned block of it. False (and *f,
  // *off untouched) once every chunk has been handed out.
  bool next(bool large, std::mt19937_64& rng, size_t* f, uint64_t* off) {
    uint64_t i = next_.fetch_add(1);
    if (i >= chunks_.size()) return false;
    *f = chunks_[i].first;
    *off = chunks_[i].second * kChunk + (large ? 0 : (rng() % (kChunk / kAlign)) * kAlign);
    return true;
  }

  // How many chunks were handed out, of total().
  uint64_t served() const { return std::min<uint64_t>(next_.load(), chunks_.size()); }
  size_t total() const { return chunks_.size(); }

 private:
  std::vector<std::pair<size_t, size_t>> chunks_;  // (file, chunk), read-only once built
  std::atomic<uint64_t> next_{0};
};

}  // namespace nydus::bench
