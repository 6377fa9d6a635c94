#include "nydusd/storage/chunk_codec.h"

#include <catch2/catch.hpp>

#include "nydusd/rafs/compression.h"
#include "nydusd/rafs/digest.h"

using nydus::ErrorKind;
using nydus::rafs::BlobInfo;
using nydus::rafs::ChunkRef;
using nydus::rafs::Compressor;
using nydus::storage::decode_chunk;
using nydus::storage::verify_chunk;

namespace {

std::vector<uint8_t> sample_data(size_t n) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = uint8_t((i * 7) % 13 + (i / 1000));
  return v;
}

BlobInfo blob_of(Compressor c) {
  BlobInfo b;
  b.blob_id = "abc";
  b.chunk_count = 4;
  b.compressor = c;
  b.uncompressed_size = 1 << 20;
  return b;
}

}  // namespace

TEST_CASE("chunk codec: decode round trips for every compressor", "[storage][codec]") {
  auto c = GENERATE(Compressor::kNone, Compressor::kLz4Block, Compressor::kZstd);
  auto data = sample_data(100000);
  auto stored = nydus::rafs::compress(c, data);
  REQUIRE(stored.ok());
  ChunkRef ref;
  ref.compressor = c;
  ref.compressed = c != Compressor::kNone;
  ref.compressed_size = uint32_t(stored->size());
  ref.uncompressed_size = uint32_t(data.size());
  ref.digest = nydus::rafs::blake3(data);
  auto out = decode_chunk(blob_of(c), ref, *stored);
  REQUIRE(out.ok());
  CHECK(*out == data);
  CHECK(verify_chunk(blob_of(c), ref, *out).ok());
}

TEST_CASE("chunk codec: wrong sizes and bad data are corrupt", "[storage][codec]") {
  auto data = sample_data(50000);
  auto stored = nydus::rafs::compress(Compressor::kZstd, data);
  REQUIRE(stored.ok());
  ChunkRef ref;
  ref.compressor = Compressor::kZstd;
  ref.compressed = true;
  ref.compressed_size = uint32_t(stored->size());

  SECTION("promised size too large") {
    ref.uncompressed_size = uint32_t(data.size() + 1);
    auto out = decode_chunk(blob_of(Compressor::kZstd), ref, *stored);
    REQUIRE_FALSE(out.ok());
    CHECK(out.error().kind() == ErrorKind::kCorrupt);
  }
  SECTION("promised size too small") {
    ref.uncompressed_size = uint32_t(data.size() - 1);
    auto out = decode_chunk(blob_of(Compressor::kZstd), ref, *stored);
    REQUIRE_FALSE(out.ok());
    CHECK(out.error().kind() == ErrorKind::kCorrupt);
  }
  SECTION("garbage") {
    ref.uncompressed_size = uint32_t(data.size());
    std::vector<uint8_t> junk(stored->size(), 0x5A);
    auto out = decode_chunk(blob_of(Compressor::kZstd), ref, junk);
    REQUIRE_FALSE(out.ok());
    CHECK(out.error().kind() == ErrorKind::kCorrupt);
    CHECK_THAT(out.error().message(), Catch::Contains("blob abc chunk ci=0"));
  }
}

TEST_CASE("chunk codec: a digest mismatch is corrupt and names the chunk", "[storage][codec]") {
  auto data = sample_data(4096);
  ChunkRef ref;
  ref.ci_index = 3;
  ref.uncompressed_offset = 0x5000;
  ref.uncompressed_size = 4096;
  ref.digest = nydus::rafs::blake3(data);
  data[100] ^= 1;
  auto st = verify_chunk(blob_of(Compressor::kNone), ref, data);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().kind() == ErrorKind::kCorrupt);
  CHECK(st.error().to_errno() == EIO);
  CHECK_THAT(st.error().message(), Catch::Contains("ci=3") && Catch::Contains("uoff=0x5000"));
}

TEST_CASE("chunk codec: extents outside the blob are rejected", "[storage][codec]") {
  BlobInfo blob = blob_of(Compressor::kNone);
  blob.uncompressed_size = 0x9000;
  ChunkRef ref;
  ref.uncompressed_size = 0x1000;
  ref.uncompressed_offset = 0x8000;
  CHECK(nydus::storage::check_chunk_extent(blob, ref).ok());
  ref.uncompressed_offset = 0x8001;
  CHECK_FALSE(nydus::storage::check_chunk_extent(blob, ref).ok());
  ref.uncompressed_offset = 0;
  ref.ci_index = 4;
  CHECK_FALSE(nydus::storage::check_chunk_extent(blob, ref).ok());
  ref.ci_index = 0;
  ref.uncompressed_size = 0;
  CHECK_FALSE(nydus::storage::check_chunk_extent(blob, ref).ok());

  ref.uncompressed_size = 100;
  ref.compressed = false;
  ref.compressed_size = 99;
  CHECK_FALSE(nydus::storage::check_chunk_compressed(blob, ref).ok());
  ref.compressed_size = 100;
  CHECK(nydus::storage::check_chunk_compressed(blob, ref).ok());
  ref.compressed_size = 0;
  ref.compressed = true;
  CHECK_FALSE(nydus::storage::check_chunk_compressed(blob, ref).ok());
}
