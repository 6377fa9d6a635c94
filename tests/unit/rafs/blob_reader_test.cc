// Reading file data from the reference blob: both files byte-exact with
// their BLAKE3 chunk digests verified, partial reads, the blob's CI array
// (from the blob and as a blob.meta file), the uncompressed blob cache, and
// damaged blobs (bad chunk bytes, bad CI) reported as kCorrupt.
#include "nydusd/rafs/blob_reader.h"

#include <catch2/catch.hpp>
#include <filesystem>

#include "nydusd/rafs/blob_ci.h"
#include "tests/support/temp_dir.h"
#include "tests/unit/rafs/sample_image.h"

using namespace nydus;
using namespace nydus::rafs;
using namespace nydus::rafs::testing;
namespace fs = std::filesystem;

namespace {

std::string as_string(const std::vector<uint8_t>& v) { return std::string(v.begin(), v.end()); }

std::vector<uint8_t> blob_bytes() { return *read_file(kSampleBlob, 1 << 20); }

void write_bytes(const fs::path& p, const std::vector<uint8_t>& bytes) {
  FILE* f = fopen(p.c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size());
  fclose(f);
}

}  // namespace

TEST_CASE("rafs: both sample files read byte-exact with verified BLAKE3 digests", "[rafs][blob]") {
  auto b = *Bootstrap::open(kSampleBoot);
  BlobReader reader(b, kSampleDir);
  auto lib = reader.read(kLibNid);
  REQUIRE(lib.ok());
  REQUIRE(lib->size() == kLibSize);
  CHECK(as_string(*lib).rfind("// Copyright (C) 2020 Alibaba Cloud", 0) == 0);
  auto sync = reader.read(kSyncNid);
  REQUIRE(sync.ok());
  REQUIRE(sync->size() == kSyncSize);
  CHECK(as_string(*sync).rfind("// Copyright (C) 2020 Alibaba Cloud", 0) == 0);

  // The digests come from the chunk table; check them independently too.
  auto lib_chunks = *b->map_range(kLibNid, 0, kLibSize);
  CHECK(blake3(*lib) == *lib_chunks[0].digest);
  CHECK(to_hex(blake3(*lib)).substr(0, 8) == "f7e2735f");
  CHECK(to_hex(blake3(*sync)).substr(0, 8) == "812465bc");

  // Partial reads agree with the whole file.
  for (auto [off, len] : {std::pair<uint64_t, uint64_t>{0, 1}, {100, 5000}, {16930, 100}, {16931, 1}, {20000, 5}}) {
    auto part = reader.read(kLibNid, off, len);
    REQUIRE(part.ok());
    const uint64_t end = std::min<uint64_t>(off + len, kLibSize);
    const uint64_t want = off >= kLibSize ? 0 : end - off;
    REQUIRE(part->size() == want);
    CHECK(std::equal(part->begin(), part->end(), lib->begin() + std::min<uint64_t>(off, kLibSize)));
  }
  CHECK(reader.read(kSampleRootNid).error().to_errno() == EISDIR);
}

TEST_CASE("rafs: the sample blob's CI array parses from the blob and from a blob.meta file", "[rafs][blob]") {
  auto b = *Bootstrap::open(kSampleBoot);
  const BlobInfo& blob = b->blobs()[0];
  auto ci = read_blob_ci(blob, kSampleBlob, CiSource::kBlob);
  REQUIRE(ci.ok());
  REQUIRE(ci->size() == 2);
  CHECK((*ci)[0].uncompressed_offset == 0);
  CHECK((*ci)[0].uncompressed_size == 0x4223);
  CHECK((*ci)[0].compressed_offset == 0);
  CHECK((*ci)[0].compressed_size == 0x12DC);
  CHECK((*ci)[0].compressed);
  CHECK((*ci)[1].uncompressed_offset == 0x5000);
  CHECK((*ci)[1].uncompressed_size == 13400);
  CHECK((*ci)[1].compressed_offset == 0x12DC);
  CHECK((*ci)[1].compressed_size == 2974);

  // blob.meta = uncompressed CI padded to 4 KiB + the header (CI is stored uncompressed here).
  auto raw = blob_bytes();
  std::vector<uint8_t> meta(4096 + 4096, 0);
  std::copy(raw.begin() + blob.ci_offset, raw.begin() + blob.ci_offset + blob.ci_uncompressed_size, meta.begin());
  std::copy(raw.begin() + blob.ci_offset + blob.ci_compressed_size,
            raw.begin() + blob.ci_offset + blob.ci_compressed_size + 4096, meta.begin() + 4096);
  auto from_meta = parse_blob_ci(blob, meta, CiSource::kBlobMeta);
  REQUIRE(from_meta.ok());
  CHECK((*from_meta)[1].compressed_offset == 0x12DC);
  nydus::testing::TempDir dir("rafs-ci");
  write_bytes(dir / "x.blob.meta", meta);
  CHECK(read_blob_ci(blob, (dir / "x.blob.meta").string(), CiSource::kBlobMeta).ok());

  auto short_meta = meta;
  short_meta.resize(8000);
  CHECK(parse_blob_ci(blob, short_meta, CiSource::kBlobMeta).error().message().find("blob.meta is 8000 bytes") !=
        std::string::npos);
}

TEST_CASE("rafs: a damaged CI array or header is rejected with the field named", "[rafs][blob]") {
  auto b = *Bootstrap::open(kSampleBoot);
  const BlobInfo& blob = b->blobs()[0];
  const auto raw = blob_bytes();
  const std::vector<uint8_t> region(raw.begin() + blob.ci_offset, raw.begin() + blob.ci_offset + 0x20 + 4096);
  const auto ci_error = [&](std::function<void(std::vector<uint8_t>&)> p, const std::string& what) {
    auto bytes = region;
    p(bytes);
    auto r = parse_blob_ci(blob, bytes, CiSource::kBlob);
    REQUIRE_FALSE(r.ok());
    INFO(r.error().message());
    CHECK(r.error().kind() == ErrorKind::kCorrupt);
    CHECK(r.error().message().find(what) != std::string::npos);
  };
  ci_error([](auto& v) { v[0x20] ^= 1; }, "magic");
  ci_error([](auto& v) { v[0x20 + 4092] ^= 1; }, "magic");
  ci_error([](auto& v) { v[0x20 + 12] = 3; }, "ci_entries");
  ci_error([](auto& v) { v[0x20 + 8] = 1; }, "ci_compressor");
  ci_error([](auto& v) { v[0x20 + 16] ^= 1; }, "ci_offset");
  ci_error([](auto& v) { v[0x20 + 24] = 0x21; }, "ci_compressed_size");
  ci_error([](auto& v) { v[0x20 + 4] |= 4; }, "CHUNK_INFO_V2");
  // Entry 1 moved below entry 0's end (uoff 0x5000 -> 0x4000).
  ci_error([](auto& v) { v[16 + 1] = 0x40; }, "overlap");
  // Entry 1's compressed range past the chunk data (coff 0x12DC -> 0x1FDC).
  ci_error([](auto& v) { v[24 + 1] = 0x1F; }, "past the chunk data");
  // Entry 0 uncompressed past the blob (uoff -> 0x9000).
  ci_error([](auto& v) { v[1] = 0x90; }, "outside");
  ci_error([](auto& v) { v.pop_back(); }, "CI region");

  nydus::testing::TempDir dir("rafs-ci");
  write_bytes(dir / "short", std::vector<uint8_t>(raw.begin(), raw.begin() + 0x2100));
  auto r = read_blob_ci(blob, (dir / "short").string(), CiSource::kBlob);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message().find("past the end of the blob") != std::string::npos);
}

TEST_CASE("rafs: the uncompressed blob cache holds each chunk at its uncompressed offset", "[rafs][blob]") {
  auto b = *Bootstrap::open(kSampleBoot);
  BlobReader reader(b, kSampleDir);
  nydus::testing::TempDir dir("rafs-cache");
  const fs::path cache = dir / "cache";
  REQUIRE(reader.write_uncompressed_blob(0, cache.string()).ok());
  auto bytes = *read_file(cache.string(), 1 << 20);
  REQUIRE(bytes.size() == 0x9000);
  auto lib = *reader.read(kLibNid);
  auto sync = *reader.read(kSyncNid);
  CHECK(std::equal(lib.begin(), lib.end(), bytes.begin()));
  CHECK(std::equal(sync.begin(), sync.end(), bytes.begin() + 0x5000));
  CHECK(std::all_of(bytes.begin() + kLibSize, bytes.begin() + 0x5000, [](uint8_t c) { return c == 0; }));
}

TEST_CASE("rafs: damaged chunk data fails decompression or its digest check", "[rafs][blob]") {
  auto b = *Bootstrap::open(kSampleBoot);
  nydus::testing::TempDir dir("rafs-bad-blob");
  const auto raw = blob_bytes();
  size_t digest_failures = 0, decode_failures = 0;
  // Flip bytes across sync_io.rs's compressed chunk [0x12DC, +2974).
  for (uint64_t off = 0x12DC; off < 0x12DC + 2974; off += 97) {
    auto bad = raw;
    bad[off] ^= 0x20;
    write_bytes(dir / kSampleBlobId, bad);
    BlobReader reader(b, dir.path().string());
    auto r = reader.read(kSyncNid);
    REQUIRE_FALSE(r.ok());
    INFO(r.error().message());
    CHECK(r.error().kind() == ErrorKind::kCorrupt);
    CHECK(r.error().message().find("blob 0 (" + kSampleBlobId + ") chunk 1") != std::string::npos);
    if (r.error().message().find("digest") != std::string::npos) ++digest_failures;
    else ++decode_failures;
    CHECK(reader.read(kLibNid).ok());  // the other chunk is untouched
  }
  CHECK(digest_failures > 0);

  // A missing blob is reported with its path.
  fs::remove(dir / kSampleBlobId);
  BlobReader reader(b, dir.path().string());
  auto r = reader.read(kLibNid);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().kind() == ErrorKind::kNotFound);
  CHECK(r.error().message().find(kSampleBlobId) != std::string::npos);
}

TEST_CASE("rafs: a chunk table that disagrees with the blob's CI is reported", "[rafs][blob]") {
  auto bytes = sample_bytes();
  // sync_io.rs's chunk table entry (the first one) with compressed_offset 0x12DD.
  patch<uint64_t>(bytes, kChunkTableOff + 48, 0x12DD);
  auto b = *Bootstrap::from_bytes(std::move(bytes));
  BlobReader reader(b, kSampleDir);
  auto r = reader.read(kSyncNid);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message().find("the blob's CI says") != std::string::npos);
}
