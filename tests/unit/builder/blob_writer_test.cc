// Chunk splitting, deduplication, the "stored raw unless strictly smaller"
// rule, the CI array as the reader decodes it, and the blob id.
#include "tools/nydus-image/blob_writer.h"

#include <cstring>
#include <random>
#include <set>

#include <catch2/catch.hpp>

#include "nydusd/rafs/blob_ci.h"
#include "nydusd/rafs/compression.h"
#include "nydusd/rafs/digest.h"
#include "common/file_io.h"
#include "tests/support/temp_dir.h"

using namespace nydus::builder;
namespace rafs = nydus::rafs;
using nydus::testing::TempDir;

namespace {

ReadFn reader_of(const std::vector<uint8_t>& data) {
  auto pos = std::make_shared<size_t>(0);
  return [&data, pos](uint8_t* buf, size_t len) -> nydus::Result<size_t> {
    size_t n = std::min(len, data.size() - *pos);
    std::memcpy(buf, data.data() + *pos, n);
    *pos += n;
    return n;
  };
}

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = uint8_t(rng());
  return v;
}

}  // namespace

TEST_CASE("builder: files are cut into chunks and deduplicated by digest", "[builder][blob]") {
  TempDir dir("builder-blob");
  Image img;
  img.chunk_size = 4096;
  auto w = BlobWriter::create({dir.path().string(), rafs::Compressor::kNone, rafs::Digester::kBlake3, 4096, 1}, img);
  REQUIRE(w.ok());

  auto a = random_bytes(4096, 1), b = random_bytes(4096, 2);
  std::vector<uint8_t> file;  // a b a + 100-byte tail
  for (auto* part : {&a, &b, &a}) file.insert(file.end(), part->begin(), part->end());
  file.insert(file.end(), b.begin(), b.begin() + 100);
  // Chunk ids are provisional until finish() resolves the files of the tree.
  img.root = make_dir();
  auto f1 = std::make_shared<Inode>(), f2 = std::make_shared<Inode>();
  f1->mode = f2->mode = S_IFREG | 0644;
  img.root->children.emplace("f1", f1);
  img.root->children.emplace("f2", f2);
  auto chunks = (*w)->add_file(file.size(), reader_of(file));
  REQUIRE(chunks.ok());
  CHECK(chunks->size() == 4);
  f1->chunks = *chunks;
  // A second file made of a known chunk adds nothing.
  auto again = (*w)->add_file(a.size(), reader_of(a));
  REQUIRE(again.ok());
  f2->chunks = *again;

  auto id = (*w)->finish();
  REQUIRE(id.ok());
  REQUIRE(id->has_value());
  CHECK(f1->chunks == std::vector<uint32_t>{0, 1, 0, 2});
  CHECK(f2->chunks == std::vector<uint32_t>{0});
  REQUIRE(img.chunks.size() == 3);
  CHECK(img.chunks[2].uncompressed_size == 100);
  CHECK(img.chunks[2].uncompressed_offset == 2 * 4096);  // 4 KiB aligned, dense
  CHECK(std::memcmp(img.chunks[1].digest, rafs::blake3(b).data(), 32) == 0);
  auto bytes = nydus::read_file((dir.path() / **id).string(), 1 << 20);
  REQUIRE(bytes.ok());
  CHECK(rafs::to_hex(rafs::sha256(*bytes)) == **id);  // named by the SHA-256 of the whole file
  REQUIRE(img.blobs.size() == 1);
  const rafs::BlobInfo& info = img.blobs[0];
  CHECK(info.chunk_count == 3);
  CHECK(info.uncompressed_size == 3 * 4096);
  CHECK(info.features == rafs::blob_features::kAligned);
  CHECK(info.ci_offset == 4096 + 4096 + 100);
  CHECK(bytes->size() == info.ci_offset + info.ci_compressed_size + 4096);
}

TEST_CASE("builder: short input is an error", "[builder][blob]") {
  TempDir dir("builder-blob");
  Image img;
  auto w = BlobWriter::create({dir.path().string(), rafs::Compressor::kNone, rafs::Digester::kBlake3, 4096, 1}, img);
  REQUIRE(w.ok());
  std::vector<uint8_t> data(10, 'x');
  CHECK_FALSE((*w)->add_file(20, reader_of(data)).ok());
}

TEST_CASE("builder: no data means no blob", "[builder][blob]") {
  TempDir dir("builder-blob");
  Image img;
  auto w = BlobWriter::create({dir.path().string(), rafs::Compressor::kZstd, rafs::Digester::kSha256, 1 << 20, 0}, img);
  REQUIRE(w.ok());
  auto id = (*w)->finish();
  REQUIRE(id.ok());
  CHECK_FALSE(id->has_value());
  CHECK(img.blobs.empty());
  CHECK(std::filesystem::is_empty(dir.path()));
}

TEST_CASE("builder: bad chunk sizes are refused", "[builder][blob]") {
  TempDir dir("builder-blob");
  Image img;
  for (uint32_t size : {0u, 2048u, 3u << 12, 32u << 20})
    CHECK_FALSE(BlobWriter::create({dir.path().string(), rafs::Compressor::kNone, rafs::Digester::kBlake3, size, 1}, img).ok());
}

TEST_CASE("builder: chunks are compressed only when strictly smaller and the reader decodes the CI", "[builder][blob]") {
  for (auto algo : {rafs::Compressor::kLz4Block, rafs::Compressor::kZstd}) {
    INFO("compressor " << rafs::compressor_name(algo));
    TempDir dir("builder-blob");
    Image img;
    img.chunk_size = 0x10000;
    auto w = BlobWriter::create({dir.path().string(), algo, rafs::Digester::kSha256, 0x10000, 2}, img);
    REQUIRE(w.ok());
    std::vector<uint8_t> text;
    for (int i = 0; text.size() < 0x18000; ++i) {
      std::string line = "line " + std::to_string(i) + " of a compressible file\n";
      text.insert(text.end(), line.begin(), line.end());
    }
    text.resize(0x18000);
    auto noise = random_bytes(0x10000, 7);
    REQUIRE((*w)->add_file(text.size(), reader_of(text)).ok());
    REQUIRE((*w)->add_file(noise.size(), reader_of(noise)).ok());
    auto id = (*w)->finish();
    REQUIRE(id.ok());
    REQUIRE(img.chunks.size() == 3);
    CHECK((img.chunks[0].flags & rafs::chunk_flags::kCompressed) != 0);
    CHECK(img.chunks[0].compressed_size < img.chunks[0].uncompressed_size);
    CHECK(img.chunks[2].flags == 0);  // random data does not shrink: stored raw
    CHECK(img.chunks[2].compressed_size == img.chunks[2].uncompressed_size);

    auto ci = rafs::read_blob_ci(img.blobs[0], (dir.path() / **id).string(), rafs::CiSource::kBlob);
    REQUIRE(ci.ok());
    REQUIRE(ci->size() == 3);
    for (size_t i = 0; i < 3; ++i) {
      const auto& c = (*ci)[i];
      const auto& e = img.chunks[i];
      CHECK(c.compressed_offset == e.compressed_offset);
      CHECK(c.compressed_size == e.compressed_size);
      CHECK(c.uncompressed_offset == e.uncompressed_offset);
      CHECK(c.uncompressed_size == e.uncompressed_size);
      CHECK(c.compressed == ((e.flags & rafs::chunk_flags::kCompressed) != 0));
    }
  }
}

TEST_CASE("builder: CI v1 encoding round-trips through the reader decoder at the field limits", "[builder][blob]") {
  std::vector<rafs::ChunkInfo> cases;
  rafs::ChunkInfo c;
  c.uncompressed_offset = 0;
  c.uncompressed_size = 1;
  c.compressed_offset = 0;
  c.compressed_size = 1;
  cases.push_back(c);
  c.uncompressed_offset = (1ull << 44) - 4096;
  c.uncompressed_size = 16u << 20;  // 24 bits of (size - 1)
  c.compressed_offset = (1ull << 40) - 1;
  c.compressed_size = (16u << 20) - 5;
  cases.push_back(c);
  c.uncompressed_offset = 0x123456000;
  c.uncompressed_size = 0x100000;
  c.compressed_offset = 0xABCDEF;
  c.compressed_size = 0x100000;
  cases.push_back(c);
  for (const auto& in : cases) {
    rafs::ChunkInfo out = rafs::decode_ci_v1(rafs::encode_ci_v1(in));
    CHECK(out.uncompressed_offset == in.uncompressed_offset);
    CHECK(out.uncompressed_size == in.uncompressed_size);
    CHECK(out.compressed_offset == in.compressed_offset);
    CHECK(out.compressed_size == in.compressed_size);
    CHECK(out.compressed == (in.compressed_size != in.uncompressed_size));
  }
}

TEST_CASE("builder: the blob does not depend on the number of workers", "[builder][blob]") {
  std::vector<uint8_t> data = random_bytes(40 * 4096, 3);
  for (size_t i = 0; i < data.size(); i += 8192) std::fill_n(data.begin() + i, 4096, uint8_t(i / 8192 % 3));
  std::set<std::string> ids;
  for (unsigned threads : {1u, 2u, 5u}) {
    TempDir dir("builder-blob");
    Image img;
    img.chunk_size = 4096;
    auto w = BlobWriter::create({dir.path().string(), rafs::Compressor::kZstd, rafs::Digester::kBlake3, 4096, threads}, img);
    REQUIRE(w.ok());
    REQUIRE((*w)->add_file(data.size(), reader_of(data)).ok());
    auto id = (*w)->finish();
    REQUIRE(id.ok());
    REQUIRE(id->has_value());
    ids.insert(**id);
    CHECK(img.chunks.size() == 20 + 3);  // 20 random chunks, 3 distinct filled ones
  }
  CHECK(ids.size() == 1);
}
