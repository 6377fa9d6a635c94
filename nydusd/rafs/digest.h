// Chunk digests: BLAKE3 (the reference builder's default, implemented here
// from the BLAKE3 specification) and SHA-256 (OpenSSL).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "common/result.h"
#include "nydusd/rafs/layout.h"

namespace nydus::rafs {

using Digest = std::array<uint8_t, 32>;

// Incremental BLAKE3 hasher (default hash mode, 32-byte output). update()
// accepts any split of the input; finalize() does not change the state, so
// it may be called again after more update()s. Not thread-safe.
class Blake3Hasher {
 public:
  Blake3Hasher();
  void update(std::span<const uint8_t> data);
  Digest finalize() const;

 private:
  struct ChunkState {
    uint32_t cv[8];
    uint64_t chunk_counter;
    uint8_t block[64];
    uint8_t block_len;
    uint8_t blocks_compressed;
    uint32_t flags;
  };
  ChunkState chunk_;
  uint32_t cv_stack_[54][8];
  uint8_t cv_stack_len_ = 0;
};

// Incremental SHA-256 (OpenSSL EVP), e.g. for a blob id streamed while the
// blob is written. Move-only; finalize() may be called more than once.
class Sha256Hasher {
 public:
  Sha256Hasher();
  ~Sha256Hasher();
  Sha256Hasher(Sha256Hasher&&) noexcept;
  Sha256Hasher& operator=(Sha256Hasher&&) noexcept;
  void update(std::span<const uint8_t> data);
  Digest finalize() const;

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

Digest blake3(std::span<const uint8_t> data);
Digest sha256(std::span<const uint8_t> data);
Digest compute_digest(Digester algo, std::span<const uint8_t> data);

// Lowercase hex of any byte string.
std::string to_hex(std::span<const uint8_t> bytes);
// Parses exactly 64 hex characters (either case); kInvalidArgument otherwise.
Result<Digest> digest_from_hex(std::string_view hex);

}  // namespace nydus::rafs
