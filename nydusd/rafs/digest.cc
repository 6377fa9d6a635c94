// BLAKE3 (hash mode, 32-byte output) written from the BLAKE3 specification
// (https://github.com/BLAKE3-team/BLAKE3-specs), portable C++ without SIMD;
// SHA-256 through OpenSSL's EVP interface.
//
// BLAKE3 in brief: the input is split into 1 KiB chunks; each chunk is
// compressed block by block (64-byte blocks) into a chaining value (CV), and
// the chunk CVs are merged pairwise into a binary tree whose root compression
// carries the ROOT flag. The incremental hasher keeps one partial chunk plus a
// stack of subtree CVs, merging whenever the number of completed chunks allows
// (one merge per trailing zero bit of the chunk count). The last block of a
// chunk, and the last chunk, are only compressed once more input proves they
// are not the final ones, because the final compression needs different flags.
#include "nydusd/rafs/digest.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "common/hex.h"

namespace nydus::rafs {

namespace {

constexpr uint32_t kIv[8] = {0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A,
                             0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19};
constexpr size_t kBlockLen = 64;
constexpr size_t kChunkLen = 1024;

// Domain flags (spec table 3).
constexpr uint32_t kChunkStart = 1 << 0;
constexpr uint32_t kChunkEnd = 1 << 1;
constexpr uint32_t kParent = 1 << 2;
constexpr uint32_t kRoot = 1 << 3;

// Message word order of round r+1 is that of round r permuted by this table;
// precomputed here for all 7 rounds so the round function indexes directly.
constexpr uint8_t kSchedule[7][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8},
    {3, 4, 10, 12, 13, 2, 7, 14, 6, 5, 9, 0, 11, 15, 8, 1},
    {10, 7, 12, 9, 14, 3, 13, 15, 4, 0, 11, 2, 5, 8, 1, 6},
    {12, 13, 9, 11, 15, 10, 14, 8, 7, 2, 5, 3, 0, 1, 6, 4},
    {9, 14, 11, 5, 8, 12, 15, 1, 13, 3, 0, 10, 2, 6, 4, 7},
    {11, 15, 5, 0, 1, 9, 8, 6, 14, 10, 2, 12, 3, 4, 7, 13},
};

inline uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

inline void g(uint32_t* s, int a, int b, int c, int d, uint32_t mx, uint32_t my) {
  s[a] = s[a] + s[b] + mx;
  s[d] = rotr(s[d] ^ s[a], 16);
  s[c] = s[c] + s[d];
  s[b] = rotr(s[b] ^ s[c], 12);
  s[a] = s[a] + s[b] + my;
  s[d] = rotr(s[d] ^ s[a], 8);
  s[c] = s[c] + s[d];
  s[b] = rotr(s[b] ^ s[c], 7);
}

inline uint32_t load_le32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);  // little-endian host (static_assert in layout.h)
  return v;
}

// The compression function; writes the full 16-word output state.
void compress(const uint32_t cv[8], const uint8_t block[kBlockLen], uint64_t counter,
              uint32_t block_len, uint32_t flags, uint32_t out[16]) {
  uint32_t m[16];
  for (int i = 0; i < 16; ++i) m[i] = load_le32(block + 4 * i);
  uint32_t s[16] = {cv[0], cv[1], cv[2], cv[3], cv[4], cv[5], cv[6], cv[7],
                    kIv[0], kIv[1], kIv[2], kIv[3],
                    uint32_t(counter), uint32_t(counter >> 32), block_len, flags};
  for (const auto& r : kSchedule) {
    // Columns, then diagonals.
    g(s, 0, 4, 8, 12, m[r[0]], m[r[1]]);
    g(s, 1, 5, 9, 13, m[r[2]], m[r[3]]);
    g(s, 2, 6, 10, 14, m[r[4]], m[r[5]]);
    g(s, 3, 7, 11, 15, m[r[6]], m[r[7]]);
    g(s, 0, 5, 10, 15, m[r[8]], m[r[9]]);
    g(s, 1, 6, 11, 12, m[r[10]], m[r[11]]);
    g(s, 2, 7, 8, 13, m[r[12]], m[r[13]]);
    g(s, 3, 4, 9, 14, m[r[14]], m[r[15]]);
  }
  for (int i = 0; i < 8; ++i) {
    out[i] = s[i] ^ s[i + 8];
    out[i + 8] = s[i + 8] ^ cv[i];
  }
}

// Compresses and keeps only the new chaining value (the first 8 words).
void compress_cv(uint32_t cv[8], const uint8_t block[kBlockLen], uint64_t counter,
                 uint32_t block_len, uint32_t flags) {
  uint32_t out[16];
  compress(cv, block, counter, block_len, flags, out);
  std::memcpy(cv, out, 32);
}

// A pending compression whose flags are decided later (ROOT or not): the
// spec's "output" object.
struct Output {
  uint32_t cv[8];
  uint8_t block[kBlockLen];
  uint64_t counter;
  uint32_t block_len;
  uint32_t flags;

  void chaining_value(uint32_t out_cv[8]) const {
    std::memcpy(out_cv, cv, 32);
    compress_cv(out_cv, block, counter, block_len, flags);
  }
  Digest root_bytes() const {
    uint32_t out[16];
    compress(cv, block, 0, block_len, flags | kRoot, out);
    Digest d;
    std::memcpy(d.data(), out, 32);  // little-endian words
    return d;
  }
};

Output parent_output(const uint32_t left[8], const uint32_t right[8]) {
  Output o;
  std::memcpy(o.cv, kIv, 32);
  std::memcpy(o.block, left, 32);
  std::memcpy(o.block + 32, right, 32);
  o.counter = 0;
  o.block_len = kBlockLen;
  o.flags = kParent;
  return o;
}

}  // namespace

Blake3Hasher::Blake3Hasher() {
  std::memcpy(chunk_.cv, kIv, 32);
  chunk_.chunk_counter = 0;
  std::memset(chunk_.block, 0, sizeof(chunk_.block));
  chunk_.block_len = 0;
  chunk_.blocks_compressed = 0;
  chunk_.flags = 0;
}

void Blake3Hasher::update(std::span<const uint8_t> data) {
  const uint8_t* p = data.data();
  size_t n = data.size();
  while (n > 0) {
    size_t chunk_len = size_t(chunk_.blocks_compressed) * kBlockLen + chunk_.block_len;
    if (chunk_len == kChunkLen) {
      // More input follows, so the full chunk is not the last one: finish
      // it and merge completed subtrees (one per trailing zero of the count).
      Output o{};
      std::memcpy(o.cv, chunk_.cv, 32);
      std::memcpy(o.block, chunk_.block, kBlockLen);
      o.counter = chunk_.chunk_counter;
      o.block_len = chunk_.block_len;
      o.flags = chunk_.flags | kChunkEnd | (chunk_.blocks_compressed == 0 ? kChunkStart : 0);
      uint32_t new_cv[8];
      o.chaining_value(new_cv);
      uint64_t total_chunks = chunk_.chunk_counter + 1;
      while ((total_chunks & 1) == 0) {
        --cv_stack_len_;
        parent_output(cv_stack_[cv_stack_len_], new_cv).chaining_value(new_cv);
        total_chunks >>= 1;
      }
      std::memcpy(cv_stack_[cv_stack_len_++], new_cv, 32);
      std::memcpy(chunk_.cv, kIv, 32);
      ++chunk_.chunk_counter;
      chunk_.block_len = 0;
      chunk_.blocks_compressed = 0;
      continue;
    }
    if (chunk_.block_len == kBlockLen) {
      // Same lazy rule inside a chunk: a full block is compressed only when
      // more bytes of this chunk arrive.
      uint32_t flags = chunk_.flags | (chunk_.blocks_compressed == 0 ? kChunkStart : 0);
      compress_cv(chunk_.cv, chunk_.block, chunk_.chunk_counter, kBlockLen, flags);
      ++chunk_.blocks_compressed;
      chunk_.block_len = 0;
    }
    // Fast path: whole blocks straight from the input while at least one more
    // byte remains in this chunk after them (so none of them is the last).
    if (chunk_.block_len == 0) {
      size_t room = kChunkLen - size_t(chunk_.blocks_compressed) * kBlockLen;
      while (n > kBlockLen && room > kBlockLen) {
        uint32_t flags = chunk_.flags | (chunk_.blocks_compressed == 0 ? kChunkStart : 0);
        compress_cv(chunk_.cv, p, chunk_.chunk_counter, kBlockLen, flags);
        ++chunk_.blocks_compressed;
        p += kBlockLen;
        n -= kBlockLen;
        room -= kBlockLen;
      }
    }
    size_t take = std::min(kBlockLen - chunk_.block_len, n);
    std::memcpy(chunk_.block + chunk_.block_len, p, take);
    chunk_.block_len = uint8_t(chunk_.block_len + take);
    p += take;
    n -= take;
  }
}

Digest Blake3Hasher::finalize() const {
  Output o{};
  std::memcpy(o.cv, chunk_.cv, 32);
  std::memcpy(o.block, chunk_.block, chunk_.block_len);  // rest stays zero
  o.counter = chunk_.chunk_counter;
  o.block_len = chunk_.block_len;
  o.flags = chunk_.flags | kChunkEnd | (chunk_.blocks_compressed == 0 ? kChunkStart : 0);
  for (size_t i = cv_stack_len_; i > 0; --i) {
    uint32_t right[8];
    o.chaining_value(right);
    o = parent_output(cv_stack_[i - 1], right);
  }
  return o.root_bytes();
}

Digest blake3(std::span<const uint8_t> data) {
  Blake3Hasher h;
  h.update(data);
  return h.finalize();
}

struct Sha256Hasher::Ctx {
  struct Free {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };
  std::unique_ptr<EVP_MD_CTX, Free> ctx{EVP_MD_CTX_new()};
};

Sha256Hasher::Sha256Hasher() : ctx_(std::make_unique<Ctx>()) {
  // Allocation or init failure of a built-in digest is not recoverable.
  if (!ctx_->ctx || EVP_DigestInit_ex(ctx_->ctx.get(), EVP_sha256(), nullptr) != 1) std::abort();
}
Sha256Hasher::~Sha256Hasher() = default;
Sha256Hasher::Sha256Hasher(Sha256Hasher&&) noexcept = default;
Sha256Hasher& Sha256Hasher::operator=(Sha256Hasher&&) noexcept = default;

void Sha256Hasher::update(std::span<const uint8_t> data) {
  EVP_DigestUpdate(ctx_->ctx.get(), data.data(), data.size());
}

Digest Sha256Hasher::finalize() const {
  // Finalize a copy so the hasher stays usable, like Blake3Hasher::finalize.
  std::unique_ptr<EVP_MD_CTX, Ctx::Free> copy(EVP_MD_CTX_new());
  Digest d{};
  unsigned int len = 0;
  if (!copy || EVP_MD_CTX_copy_ex(copy.get(), ctx_->ctx.get()) != 1 ||
      EVP_DigestFinal_ex(copy.get(), d.data(), &len) != 1 || len != d.size()) {
    std::abort();
  }
  return d;
}

Digest sha256(std::span<const uint8_t> data) {
  Digest d{};
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), d.data(), &len, EVP_sha256(), nullptr) != 1 ||
      len != d.size()) {
    std::abort();
  }
  return d;
}

Digest compute_digest(Digester algo, std::span<const uint8_t> data) {
  return algo == Digester::kSha256 ? sha256(data) : blake3(data);
}

std::string to_hex(std::span<const uint8_t> bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s(bytes.size() * 2, '0');
  for (size_t i = 0; i < bytes.size(); ++i) {
    s[2 * i] = kHex[bytes[i] >> 4];
    s[2 * i + 1] = kHex[bytes[i] & 0xF];
  }
  return s;
}

Result<Digest> digest_from_hex(std::string_view hex) {
  Digest d{};
  if (hex.size() != d.size() * 2) {
    return make_error(ErrorKind::kInvalidArgument, "digest hex must be {} characters, got {}",
                      d.size() * 2, hex.size());
  }
  for (size_t i = 0; i < d.size(); ++i) {
    int hi = hex_digit_value(hex[2 * i]);
    int lo = hex_digit_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return make_error(ErrorKind::kInvalidArgument, "digest hex has a non-hex character at {}",
                        hi < 0 ? 2 * i : 2 * i + 1);
    }
    d[i] = uint8_t(hi << 4 | lo);
  }
  return d;
}

}  // namespace nydus::rafs
