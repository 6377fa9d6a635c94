// Chunk compression: round trips for none / lz4_block / zstd, exact-size
// decompression, and hostile compressed input (never a crash, always kCorrupt).
#include "nydusd/rafs/compression.h"

#include <catch2/catch.hpp>
#include <random>

using namespace nydus;
using namespace nydus::rafs;

namespace {

std::vector<uint8_t> sample_data(size_t n, bool compressible, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = compressible ? uint8_t("nydus rafs v6 "[i % 14] ^ (i / 4096)) : uint8_t(rng());
  return v;
}

}  // namespace

TEST_CASE("rafs: compress/decompress round trips", "[rafs][compression]") {
  for (Compressor algo : {Compressor::kNone, Compressor::kLz4Block, Compressor::kZstd, Compressor::kGzip}) {
    for (size_t n : {0, 1, 100, 4096, 65537, 1 << 20}) {
      for (bool compressible : {true, false}) {
        INFO(compressor_name(algo) << " " << n << " compressible " << compressible);
        auto data = sample_data(n, compressible, n);
        auto packed = compress(algo, data);
        REQUIRE(packed.ok());
        if (algo != Compressor::kNone && compressible && n >= 4096) CHECK(packed->size() < n / 4);
        auto back = decompress(algo, *packed, n);
        REQUIRE(back.ok());
        CHECK(*back == data);
      }
    }
  }
}

TEST_CASE("rafs: lz4_block is a raw block and zstd a standard frame", "[rafs][compression]") {
  auto data = sample_data(10000, true, 1);
  auto z = compress(Compressor::kZstd, data);
  REQUIRE(z.ok());
  CHECK((*z)[0] == 0x28);  // zstd frame magic 0xFD2FB528, little-endian
  CHECK((*z)[3] == 0xFD);
  auto l = compress(Compressor::kLz4Block, data);
  REQUIRE(l.ok());
  CHECK(!(l->size() >= 4 && (*l)[0] == 0x04 && (*l)[1] == 0x22));  // not an LZ4 frame
  CHECK(compress(Compressor(9), data).error().kind() == ErrorKind::kUnsupported);
}

TEST_CASE("rafs: decompression must produce exactly the promised size", "[rafs][compression]") {
  auto data = sample_data(5000, true, 2);
  for (Compressor algo : {Compressor::kNone, Compressor::kLz4Block, Compressor::kZstd, Compressor::kGzip}) {
    INFO(compressor_name(algo));
    auto packed = *compress(algo, data);
    for (size_t want : {size_t(4999), size_t(5001), size_t(0)}) {
      auto r = decompress(algo, packed, want);
      REQUIRE_FALSE(r.ok());
      CHECK(r.error().kind() == ErrorKind::kCorrupt);
    }
  }
  // An absurd size claim is refused before allocating it.
  auto r = decompress(Compressor::kLz4Block, std::vector<uint8_t>(10, 0), size_t(1) << 40);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().kind() == ErrorKind::kCorrupt);
}

TEST_CASE("rafs: hostile compressed bytes are rejected, not crashed on", "[rafs][compression]") {
  std::mt19937_64 rng(3);
  auto data = sample_data(20000, true, 3);
  for (Compressor algo : {Compressor::kLz4Block, Compressor::kZstd, Compressor::kGzip}) {
    auto packed = *compress(algo, data);
    for (int i = 0; i < 2000; ++i) {
      auto bad = packed;
      for (int k = 0; k < 1 + i % 4; ++k) bad[rng() % bad.size()] ^= uint8_t(1 + rng() % 255);
      if (i % 7 == 0) bad.resize(rng() % bad.size());
      auto r = decompress(algo, bad, data.size());
      if (!r.ok()) {
        CHECK(r.error().kind() == ErrorKind::kCorrupt);
      } else {
        CHECK(r->size() == data.size());  // flips in literals decode to wrong bytes of the right size
      }
    }
  }
}

TEST_CASE("rafs: gzip is one gzip member", "[rafs][compression]") {
  auto data = sample_data(10000, true, 4);
  auto g = compress(Compressor::kGzip, data);
  REQUIRE(g.ok());
  CHECK((*g)[0] == 0x1F);
  CHECK((*g)[1] == 0x8B);
  // Trailing bytes after the member are not part of the chunk.
  auto trailing = *g;
  trailing.push_back(0);
  CHECK(decompress(Compressor::kGzip, trailing, data.size()).error().kind() == ErrorKind::kCorrupt);
  CHECK(std::string(compressor_name(Compressor::kGzip)) == "gzip");
}
