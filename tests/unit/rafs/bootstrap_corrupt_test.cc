// Hostile bootstraps: one targeted patch per validation rule (each must be
// rejected with a message naming the field and where), then sweeps that
// truncate the sample at every length, flip every bit of its first two
// blocks and scribble random bytes over the rest; the reader must reject or
// serve each variant without crashing (run these under ASan too).
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <catch2/catch.hpp>
#include <functional>
#include <random>

#include "nydusd/rafs/bootstrap.h"
#include "tests/fuzz/bootstrap_exercise.h"
#include "tests/unit/rafs/sample_image.h"

using namespace nydus;
using namespace nydus::rafs;
using namespace nydus::rafs::testing;

namespace {

using Patch = std::function<void(std::vector<uint8_t>&)>;

std::shared_ptr<const Bootstrap> open_patched(const Patch& p) {
  auto bytes = sample_bytes();
  p(bytes);
  auto b = Bootstrap::from_bytes(std::move(bytes), "patched");
  if (!b.ok()) FAIL("open failed: " << b.error().message());
  return *b;
}

// The patched image must fail to open with `kind` and a message containing `what`.
void expect_open_error(const Patch& p, const std::string& what, ErrorKind kind = ErrorKind::kCorrupt) {
  auto bytes = sample_bytes();
  p(bytes);
  auto b = Bootstrap::from_bytes(std::move(bytes), "patched");
  REQUIRE_FALSE(b.ok());
  INFO(b.error().message());
  CHECK(b.error().kind() == kind);
  CHECK(b.error().message().find(what) != std::string::npos);
}

// The patched image opens, but validate_tree() fails mentioning `what`.
void expect_tree_error(const Patch& p, const std::string& what) {
  INFO("expecting: " << what);
  auto b = open_patched(p);
  auto st = b->validate_tree();
  REQUIRE_FALSE(st.ok());
  INFO(st.error().message());
  CHECK(st.error().kind() == ErrorKind::kCorrupt);
  CHECK(st.error().message().find(what) != std::string::npos);
  exercise_bootstrap(*b);  // the accessors must cope too
}

// Builds an inline xattr area for sync_io.rs (nid 136) in the zero bytes
// after its inode and moves its chunk index behind it. `entries` are the raw
// entry bytes (already padded); returns the patch.
Patch with_xattrs(std::vector<uint8_t> entries, uint8_t shared_count = 0) {
  return [entries, shared_count](std::vector<uint8_t>& b) {
    const uint64_t chunk_index = peek<uint64_t>(b, kSyncIndexOff);
    const uint32_t area = 12 + uint32_t(entries.size());
    std::fill(b.begin() + kSyncIndexOff, b.begin() + kSyncIndexOff + 12, 0);
    b[kSyncIndexOff + 4] = shared_count;
    std::copy(entries.begin(), entries.end(), b.begin() + kSyncIndexOff + 12);
    patch<uint16_t>(b, kSyncOff + 2, uint16_t(1 + (area - 12) / 4));
    patch<uint64_t>(b, round_up(kSyncIndexOff + area, 8), chunk_index);
  };
}

std::vector<uint8_t> xattr_entry(uint8_t index, const std::string& name, const std::string& value) {
  std::vector<uint8_t> e = {uint8_t(name.size()), index, uint8_t(value.size()), uint8_t(value.size() >> 8)};
  e.insert(e.end(), name.begin(), name.end());
  e.insert(e.end(), value.begin(), value.end());
  e.resize(round_up(e.size(), 4), 0);
  return e;
}

// Turns sync_io.rs (nid 136) into another inode type in place.
Patch retype_sync(uint16_t format, uint16_t mode, uint64_t size, uint32_t i_u, uint8_t file_type) {
  return [=](std::vector<uint8_t>& b) {
    patch<uint16_t>(b, kSyncOff, format);
    patch<uint16_t>(b, kSyncOff + 4, mode);
    patch<uint64_t>(b, kSyncOff + 8, size);
    patch<uint32_t>(b, kSyncOff + 16, i_u);
    b[kDirentsOff + 3 * 12 + 10] = file_type;
  };
}

}  // namespace

TEST_CASE("rafs: corrupt superblock fields are rejected at open", "[rafs][corrupt]") {
  expect_open_error([](auto& b) { b.resize(20000); }, "multiple of the block size");
  expect_open_error([](auto& b) { b.resize(4000); }, "smaller than one");
  expect_open_error([](auto& b) { patch<uint32_t>(b, kSbOff, 0x12345678); }, "@0x400: magic");
  expect_open_error([](auto& b) { patch<uint32_t>(b, kSbOff + 4, 1); }, "checksum");
  expect_open_error([](auto& b) { patch<uint32_t>(b, kSbOff + 8, 0); }, "feature_compat");
  expect_open_error([](auto& b) { b[kSbOff + 12] = 13; }, "blkszbits");
  expect_open_error([](auto& b) { b[kSbOff + 12] = 9; }, "tarfs", ErrorKind::kUnsupported);
  expect_open_error([](auto& b) { b[kSbOff + 13] = 1; }, "sb_extslots");
  expect_open_error([](auto& b) { patch<uint64_t>(b, kSbOff + 16, 0); }, "inos");
  expect_open_error([](auto& b) { patch<uint32_t>(b, kSbOff + 0x2C, 3); }, "xattr_blkaddr",
                    ErrorKind::kUnsupported);
  expect_open_error([](auto& b) { patch<uint32_t>(b, kSbOff + 0x28, 5); }, "meta_blkaddr");
  expect_open_error([](auto& b) { patch<uint32_t>(b, kSbOff + 0x50, 0x1C); }, "feature_incompat");
  expect_open_error([](auto& b) { patch<uint16_t>(b, kSbOff + 0x54, 1); }, "available_compr_algs");
  expect_open_error([](auto& b) { patch<uint16_t>(b, kSbOff + 0x58, 12); }, "devt_slotoff");
  expect_open_error([](auto& b) { b[kSbOff + 0x5A] = 1; }, "dirblkbits");
  expect_open_error([](auto& b) { b[kSbOff + 0x60] = 1; }, "superblock @0x460: reserved byte is 0x1");
  expect_open_error([](auto& b) { patch<uint32_t>(b, kSbOff + 8, 0x40000001); }, "SB_CHKSUM");
  expect_open_error([](auto& b) { std::fill(b.begin() + kSbOff + 0x40, b.begin() + kSbOff + 0x50, 'v'); },
                    "volume_name");
  expect_open_error([](auto& b) { patch<uint16_t>(b, kSbOff + 0x56, 255); }, "extra_devices");
  expect_open_error([](auto& b) { patch<uint16_t>(b, kSbOff + 0x56, 2); }, "2 devices");
  expect_open_error([](auto& b) { patch<uint32_t>(b, 0, kRafsV5Magic), patch<uint32_t>(b, 4, 0x500); }, "RAFS v5",
                    ErrorKind::kUnsupported);
  expect_open_error([](auto& b) { patch<uint16_t>(b, kSbOff + 14, kLibNid); }, "not a directory");
  expect_open_error([](auto& b) { patch<uint16_t>(b, kSbOff + 14, 60000); }, "outside the metadata area");
}

TEST_CASE("rafs: corrupt extended superblock fields are rejected at open", "[rafs][corrupt]") {
  expect_open_error([](auto& b) { patch<uint64_t>(b, kExtOff, 0x194 | 0x400); }, "unknown flags");
  expect_open_error([](auto& b) { patch<uint64_t>(b, kExtOff, 0x194 | 0x1); }, "one compression bit");
  expect_open_error([](auto& b) { patch<uint64_t>(b, kExtOff, 0x194 & ~0x80); }, "one compression bit");
  expect_open_error([](auto& b) { patch<uint64_t>(b, kExtOff, 0x194 | 0x8); }, "one digest bit");
  expect_open_error([](auto& b) { patch<uint64_t>(b, kExtOff, 0x194 | 0x200); }, "tarfs", ErrorKind::kUnsupported);
  expect_open_error([](auto& b) { patch<uint64_t>(b, kExtOff, 0x194 | 0x0200'0000); }, "encrypted",
                    ErrorKind::kUnsupported);
  for (uint32_t cs : {0u, 2048u, 0x100001u, 32u << 20}) {
    expect_open_error([cs](auto& b) { patch<uint32_t>(b, kExtOff + 0x14, cs); }, "@0x494: chunk_size");
  }
  expect_open_error([](auto& b) { patch<uint64_t>(b, kExtOff + 0x08, 0x1001); }, "blob table offset");
  expect_open_error([](auto& b) { patch<uint64_t>(b, kExtOff + 0x08, 0x800); }, "blob table offset");
  expect_open_error([](auto& b) { patch<uint64_t>(b, kExtOff + 0x08, 0x5000); }, "past the end");
  expect_open_error([](auto& b) { patch<uint32_t>(b, kExtOff + 0x10, 0x80); }, "blob_table_size");
  expect_open_error([](auto& b) { patch<uint32_t>(b, kExtOff + 0x10, 0x200); }, "2 entries");
  expect_open_error([](auto& b) { patch<uint64_t>(b, kExtOff + 0x18, 0x1000); }, "overlaps");
  expect_open_error([](auto& b) { patch<uint64_t>(b, kExtOff + 0x18, 0x4100); }, "chunk table offset");
  expect_open_error([](auto& b) { patch<uint64_t>(b, kExtOff + 0x20, 0xA1); }, "chunk_table_size");
  expect_open_error([](auto& b) { patch<uint64_t>(b, kExtOff + 0x20, 0x50 * 100); }, "past the end");
  expect_open_error([](auto& b) { patch<uint64_t>(b, kExtOff + 0x20, ~uint64_t(0) / 80 * 80); }, "past the end");
  expect_open_error([](auto& b) { patch<uint32_t>(b, kExtOff + 0x30, 8); }, "prefetch_table_offset 0");
  expect_open_error([](auto& b) { patch<uint64_t>(b, kExtOff + 0x28, 0x1010), patch<uint32_t>(b, kExtOff + 0x30, 8); },
                    "overlaps");
  expect_open_error([](auto& b) { patch<uint64_t>(b, kExtOff + 0x28, 0x100), patch<uint32_t>(b, kExtOff + 0x30, 8); },
                    "prefetch table offset");
}

TEST_CASE("rafs: a prefetch table is read up to its first zero", "[rafs][corrupt]") {
  auto b = open_patched([](auto& b) {
    patch<uint64_t>(b, kExtOff + 0x28, 0x1100);
    patch<uint32_t>(b, kExtOff + 0x30, 12);
    patch<uint32_t>(b, 0x1100, kSyncNid);
    patch<uint32_t>(b, 0x1104, kLibNid);
  });
  auto nids = b->prefetch_nids();
  REQUIRE(nids.ok());
  CHECK(*nids == std::vector<uint64_t>{kSyncNid, kLibNid});
  CHECK(b->validate_tree().ok());

  auto bad = open_patched([](auto& b) {
    patch<uint64_t>(b, kExtOff + 0x28, 0x1100);
    patch<uint32_t>(b, kExtOff + 0x30, 4);
    patch<uint32_t>(b, 0x1100, 99999);
  });
  auto st = bad->validate_tree();
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().message().find("prefetch table") != std::string::npos);
}

TEST_CASE("rafs: corrupt device slots and blob entries are rejected at open", "[rafs][corrupt]") {
  expect_open_error([](auto& b) { patch<uint32_t>(b, kSlotOff + 64, 0); }, "blocks is 0");
  expect_open_error([](auto& b) { patch<uint32_t>(b, kSlotOff + 64, 10); }, "blocks 10 does not match");
  expect_open_error([](auto& b) { patch<uint64_t>(b, kBlobEntryOff + 96, 0xA000); }, "blocks 9 does not match");
  expect_open_error([](auto& b) { b[kSlotOff] = 0; }, "tag is empty");
  expect_open_error([](auto& b) { b[kSlotOff + 3] = 0xC3; }, "not UTF-8");
  expect_open_error([](auto& b) { b[kSlotOff] = 'x'; }, "differs from device slot");
  expect_open_error([](auto& b) { std::memcpy(&b[kSlotOff], "../../etc/passwd", 17); }, "not a valid file name");
  expect_open_error([](auto& b) { std::memcpy(&b[kSlotOff], "..", 3); }, "not a valid file name");
  expect_open_error([](auto& b) { patch<uint32_t>(b, kBlobEntryOff + 64, 1); }, "blob_index 1");
  expect_open_error([](auto& b) { patch<uint32_t>(b, kBlobEntryOff + 68, 0x200000); }, "@0x1044: chunk_size");
  expect_open_error([](auto& b) { patch<uint32_t>(b, kBlobEntryOff + 72, (1u << 24) + 1); }, "chunk_count");
  expect_open_error([](auto& b) { patch<uint32_t>(b, kBlobEntryOff + 76, 4); }, "compression_algo");
  expect_open_error([](auto& b) { patch<uint32_t>(b, kBlobEntryOff + 80, 2); }, "digest_algo");
  expect_open_error([](auto& b) { patch<uint32_t>(b, kBlobEntryOff + 84, 0x70000021 | 0x1000); }, "reserved bits");
  expect_open_error([](auto& b) { patch<uint32_t>(b, kBlobEntryOff + 84, 0x70000020); }, "ALIGNED");
  const std::pair<uint32_t, const char*> unsupported[] = {{0x8, "ZRAN"},      {0x10, "SEPARATE"}, {0x40, "TARFS"},
                                                          {0x80, "BATCH"},    {0x100, "ENCRYPTED"},
                                                          {0x800, "EXTERNAL"}};
  for (const auto& [bit, name] : unsupported) {
    expect_open_error([bit = bit](auto& b) { patch<uint32_t>(b, kBlobEntryOff + 84, 0x70000021 | bit); }, name,
                      ErrorKind::kUnsupported);
  }
  expect_open_error([](auto& b) { patch<uint32_t>(b, kBlobEntryOff + 216, 1); }, "cipher_algo",
                    ErrorKind::kUnsupported);
  expect_open_error([](auto& b) { patch<uint64_t>(b, kBlobEntryOff + 96, 0x9001); }, "uncompressed_size");
  expect_open_error([](auto& b) { patch<uint64_t>(b, kBlobEntryOff + 88, 1ull << 41); }, "compressed_size");
  expect_open_error([](auto& b) { patch<uint32_t>(b, kBlobEntryOff + 108, 7); }, "ci_compressor");
  expect_open_error([](auto& b) { patch<uint64_t>(b, kBlobEntryOff + 128, 0x30); }, "ci_uncompressed_size");
  expect_open_error([](auto& b) { patch<uint32_t>(b, kBlobEntryOff + 84, 0x70000025); }, "ci_uncompressed_size");
  expect_open_error([](auto& b) { patch<uint64_t>(b, kBlobEntryOff + 120, 0x10); }, "ci_compressed_size");
}

TEST_CASE("rafs: corrupt chunk table entries are rejected at open", "[rafs][corrupt]") {
  const uint64_t e0 = kChunkTableOff;  // sync_io.rs's chunk: blob 0, CI 1, uoff 0x5000
  expect_open_error([=](auto& b) { patch<uint32_t>(b, e0 + 32, 1); }, "blob_index 1");
  expect_open_error([=](auto& b) { patch<uint32_t>(b, e0 + 72, 2); }, "CI index 2");
  expect_open_error([=](auto& b) { patch<uint32_t>(b, e0 + 36, 0x21); }, "unknown flags");
  expect_open_error([=](auto& b) { patch<uint32_t>(b, e0 + 36, 0x9); }, "batch", ErrorKind::kUnsupported);
  expect_open_error([=](auto& b) { patch<uint32_t>(b, e0 + 44, 0); }, "uncompressed_size 0");
  expect_open_error([=](auto& b) { patch<uint64_t>(b, e0 + 56, 0x5001); }, "unaligned or outside");
  expect_open_error([=](auto& b) { patch<uint64_t>(b, e0 + 56, 0x8000); }, "unaligned or outside");
  expect_open_error([=](auto& b) { patch<uint32_t>(b, e0 + 36, 0); }, "compressed_size 2974 is invalid");
  expect_open_error([=](auto& b) { patch<uint64_t>(b, e0 + 48, 0x38DA); }, "compressed range");
  // The same key twice with different contents.
  expect_open_error([=](auto& b) {
    std::copy(b.begin() + e0, b.begin() + e0 + 80, b.begin() + e0 + 80);
    b[e0 + 80] ^= 1;
  }, "differently");
}

TEST_CASE("rafs: corrupt inodes are rejected with their nid and offset", "[rafs][corrupt]") {
  expect_open_error([](auto& b) { patch<uint16_t>(b, kRootOff, 0x15); }, "nid 128 (inode @0x3000): i_format 0x15");
  expect_open_error([](auto& b) { patch<uint16_t>(b, kRootOff, 0x3); }, "data layout 1");
  expect_open_error([](auto& b) { patch<uint16_t>(b, kRootOff, 0x9); }, "directory with data layout CHUNK_BASED");
  expect_open_error([](auto& b) { patch<uint64_t>(b, kRootOff + 8, 0); }, "directory with i_size 0");
  expect_open_error([](auto& b) { patch<uint32_t>(b, kRootOff + 44, 0); }, "i_nlink is 0");
  // An inline tail that would cross into the next block.
  expect_open_error([](auto& b) { patch<uint64_t>(b, kRootOff + 8, 4040); }, "crosses a block boundary");

  const auto lib_error = [](const Patch& p, const std::string& what) {
    auto b = open_patched(p);
    auto a = b->getattr(kLibNid);
    REQUIRE_FALSE(a.ok());
    INFO(a.error().message());
    CHECK(a.error().message().find(what) != std::string::npos);
    CHECK(a.error().message().find("nid 133") != std::string::npos);
    CHECK_FALSE(b->validate_tree().ok());
    exercise_bootstrap(*b);
  };
  lib_error([](auto& b) { patch<uint32_t>(b, kLibOff + 44, 0); }, "i_nlink is 0");
  lib_error([](auto& b) { patch<uint16_t>(b, kLibOff, 0x5); }, "regular file with data layout FLAT_INLINE");
  lib_error([](auto& b) { patch<uint16_t>(b, kLibOff + 4, 0170644); }, "unknown file type");
  lib_error([](auto& b) { patch<uint16_t>(b, kLibOff + 16, 0x08); }, "chunk format 0x8");
  lib_error([](auto& b) { patch<uint16_t>(b, kLibOff + 16, 0x68); }, "chunk format 0x68");
  lib_error([](auto& b) { patch<uint16_t>(b, kLibOff + 16, 0x27); }, "smaller than the RAFS chunk size");
  lib_error([](auto& b) { patch<uint64_t>(b, kLibOff + 8, 1ull << 50); }, "chunk indexes");
  lib_error([](auto& b) { patch<uint64_t>(b, kLibOff + 8, ~0ull); }, "chunk indexes");
  lib_error([](auto& b) { patch<uint16_t>(b, kLibOff + 2, 0xFFFF); }, "xattr area extend past");
}

TEST_CASE("rafs: corrupt chunk indexes are rejected by map_range and validate_tree", "[rafs][corrupt]") {
  const auto map_error = [](const Patch& p, const std::string& what) {
    auto b = open_patched(p);
    CHECK(b->getattr(kLibNid).ok());
    auto m = b->map_range(kLibNid, 0, 1);
    REQUIRE_FALSE(m.ok());
    INFO(m.error().message());
    CHECK(m.error().kind() == ErrorKind::kCorrupt);
    CHECK(m.error().message().find("nid 133 chunk 0 @0x30e") != std::string::npos);
    CHECK(m.error().message().find(what) != std::string::npos);
    auto st = b->validate_tree();
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().message().find("at /lib.rs") != std::string::npos);
  };
  map_error([](auto& b) { patch<uint16_t>(b, kLibIndexOff + 2, 0x0000); }, "device id 0");
  map_error([](auto& b) { patch<uint16_t>(b, kLibIndexOff + 2, 0x0002); }, "device id 2");
  map_error([](auto& b) { patch<uint16_t>(b, kLibIndexOff, 2); }, "CI index 2");
  map_error([](auto& b) { patch<uint16_t>(b, kLibIndexOff + 2, 0x0101); }, "CI index 65536");
  map_error([](auto& b) { patch<uint32_t>(b, kLibIndexOff + 4, 9); }, "outside blob 0");
  map_error([](auto& b) { patch<uint32_t>(b, kLibIndexOff + 4, 5); }, "outside blob 0");  // 0x5000 + 16931 > 0x9000
  map_error([](auto& b) { patch<uint32_t>(b, kLibIndexOff + 4, kChunkAddrHole); }, "hole");

  // sync_io.rs (13400 bytes) pointing at lib.rs's chunk, which the chunk table says is 16931 bytes.
  auto b = open_patched([](auto& b) { patch<uint64_t>(b, kSyncIndexOff, peek<uint64_t>(b, kLibIndexOff)); });
  auto m = b->map_range(kSyncNid, 0, 1);
  REQUIRE_FALSE(m.ok());
  CHECK(m.error().message().find("has 16931 bytes, the file needs 13400") != std::string::npos);
}

TEST_CASE("rafs: corrupt directories are rejected by readdir, lookup and validate_tree", "[rafs][corrupt]") {
  const auto dir_error = [](const Patch& p, const std::string& what) {
    auto b = open_patched(p);
    auto st = b->readdir(kSampleRootNid, 0, [](const DirEntry&, uint64_t) { return true; });
    REQUIRE_FALSE(st.ok());
    INFO(st.error().message());
    CHECK(st.error().message().find(what) != std::string::npos);
    CHECK(st.error().message().find("dir nid 128") != std::string::npos);
    CHECK_FALSE(b->validate_tree().ok());
    exercise_bootstrap(*b);
  };
  dir_error([](auto& b) { patch<uint16_t>(b, kDirentsOff + 8, 13); }, "de[0].nameoff 13");
  dir_error([](auto& b) { patch<uint16_t>(b, kDirentsOff + 8, 0); }, "de[0].nameoff 0");
  dir_error([](auto& b) { patch<uint16_t>(b, kDirentsOff + 8, 72); }, "de[0].nameoff 72");  // past i_size 67
  dir_error([](auto& b) { patch<uint16_t>(b, kDirentsOff + 2 * 12 + 8, 49); }, "dirent 1 @0x304c: name [49, 49)");  // ".." empty
  dir_error([](auto& b) { patch<uint16_t>(b, kDirentsOff + 3 * 12 + 8, 80); }, "must be 1..255");  // past block
  dir_error([](auto& b) { patch<uint16_t>(b, kDirentsOff + 3 * 12 + 8, 20); }, "must be 1..255");  // in dirents

  expect_tree_error([](auto& b) { b[0x3070 + 3] = 'z'; }, "strictly sorted");  // "lib.rs" -> "zib.rs"
  expect_tree_error([](auto& b) { std::memcpy(&b[0x3070 + 9], "lib.rs\0\0\0", 10); }, "strictly sorted");  // duplicate
  expect_tree_error([](auto& b) { b[0x3070 + 6] = '/'; }, "contains '/'");
  expect_tree_error([](auto& b) { b[kDirentsOff + 2 * 12 + 10] = kFtSymlink; }, "file type");
  expect_tree_error([](auto& b) { patch<uint64_t>(b, kDirentsOff, kLibNid); }, "\".\" points at nid 133");
  expect_tree_error([](auto& b) { patch<uint64_t>(b, kDirentsOff + 12, kLibNid); }, "\"..\" points at nid 133");
  expect_tree_error([](auto& b) { b[0x3070] = '-'; }, "at /-: directory nid 128 is reachable twice");
  expect_tree_error([](auto& b) {  // "." renamed "-" (which sorts before ".."), a hard link to lib.rs
    b[0x3070] = '-';
    patch<uint64_t>(b, kDirentsOff, kLibNid);
    b[kDirentsOff + 10] = kFtRegular;
  }, "missing \".\"");
  expect_tree_error([](auto& b) { patch<uint64_t>(b, kDirentsOff + 2 * 12, 99999); }, "at /lib.rs");
  // A directory entry pointing back at the root: a cycle.
  expect_tree_error([](auto& b) {
    patch<uint64_t>(b, kDirentsOff + 2 * 12, kSampleRootNid);
    b[kDirentsOff + 2 * 12 + 10] = kFtDirectory;
  }, "reachable twice");
}

TEST_CASE("rafs: inline xattrs decode and their corruption is rejected", "[rafs][corrupt]") {
  auto entries = xattr_entry(1, "foo", "bar");
  auto more = xattr_entry(6, "selinux", "label");
  entries.insert(entries.end(), more.begin(), more.end());
  auto acl = xattr_entry(2, "", std::string("\x02\x00\x00\x00", 4));
  entries.insert(entries.end(), acl.begin(), acl.end());
  auto trusted = xattr_entry(4, "overlay.opaque", "y");
  entries.insert(entries.end(), trusted.begin(), trusted.end());
  auto b = open_patched(with_xattrs(entries));
  auto x = b->xattrs(kSyncNid);
  REQUIRE(x.ok());
  REQUIRE(x->size() == 4);
  CHECK((*x)[0].name == "user.foo");
  CHECK((*x)[0].value == "bar");
  CHECK((*x)[1].name == "security.selinux");
  CHECK((*x)[1].value == "label");
  CHECK((*x)[2].name == "system.posix_acl_access");
  CHECK((*x)[2].value.size() == 4);
  CHECK((*x)[3].name == "trusted.overlay.opaque");
  CHECK((*x)[3].value == "y");
  CHECK(b->validate_tree().ok());
  auto m = b->map_range(kSyncNid, 0, 1);  // the moved chunk index still maps
  REQUIRE(m.ok());
  CHECK((*m)[0].uncompressed_offset == 0x5000);

  const auto xattr_error = [](const Patch& p, const std::string& what, ErrorKind kind = ErrorKind::kCorrupt) {
    auto b = open_patched(p);
    auto x = b->xattrs(kSyncNid);
    REQUIRE_FALSE(x.ok());
    INFO(x.error().message());
    CHECK(x.error().kind() == kind);
    CHECK(x.error().message().find(what) != std::string::npos);
    CHECK(x.error().message().find("nid 136") != std::string::npos);
    CHECK_FALSE(b->validate_tree().ok());
  };
  for (uint8_t index : {0, 5, 7, 0x80, 0x81}) {
    xattr_error(with_xattrs(xattr_entry(index, "foo", "bar")), "name index");
  }
  auto overrun = xattr_entry(1, "foo", "bar");
  overrun[2] = 200;  // value_size past the area
  xattr_error(with_xattrs(overrun), "overruns");
  xattr_error(with_xattrs(xattr_entry(1, "foo", "bar"), 1), "shared xattrs", ErrorKind::kUnsupported);
}

TEST_CASE("rafs: inline and plain symlinks decode, bad ones are rejected", "[rafs][corrupt]") {
  // sync_io.rs turned into a symlink with an inline target after the inode.
  const auto symlink = [](uint64_t size, const std::string& target) {
    return [=](std::vector<uint8_t>& b) {
      retype_sync(0x5, S_IFLNK | 0777, size, 0, kFtSymlink)(b);
      std::copy(target.begin(), target.end(), b.begin() + kSyncIndexOff);
    };
  };
  auto b = open_patched(symlink(11, "lib.rs/../x"));
  auto t = b->readlink(kSyncNid);
  REQUIRE(t.ok());
  CHECK(*t == "lib.rs/../x");
  CHECK(b->validate_tree().ok());
  CHECK(b->map_range(kSyncNid, 0, 1).error().kind() == ErrorKind::kInvalidArgument);
  CHECK(b->readlink(kLibNid).error().to_errno() == EINVAL);

  for (auto [size, what] : {std::pair<uint64_t, const char*>{0, "symlink with i_size 0"}, {5000, "exceeds 4096"}}) {
    auto bad = open_patched(symlink(size, ""));
    auto a = bad->getattr(kSyncNid);
    REQUIRE_FALSE(a.ok());
    CHECK(a.error().message().find(what) != std::string::npos);
    CHECK_FALSE(bad->validate_tree().ok());
  }
  // Inline target ending past its block.
  auto crossing = open_patched(symlink(4000, ""));
  CHECK(crossing->getattr(kSyncNid).error().message().find("crosses a block boundary") != std::string::npos);

  // FLAT_PLAIN: the target in its own block (block 2 is the unused first meta block).
  auto plain = open_patched([](std::vector<uint8_t>& b) {
    retype_sync(0x1, S_IFLNK | 0777, 7, 2, kFtSymlink)(b);
    std::memcpy(&b[0x2000], "/target", 7);
  });
  CHECK(*plain->readlink(kSyncNid) == "/target");
  CHECK(plain->validate_tree().ok());
  auto outside = open_patched(retype_sync(0x1, S_IFLNK | 0777, 7, 5, kFtSymlink));
  CHECK(outside->getattr(kSyncNid).error().message().find("extend past the end") != std::string::npos);
}

TEST_CASE("rafs: compact inodes decode, with the build time as mtime", "[rafs][corrupt]") {
  // lib.rs rewritten as a 32-byte compact inode, its chunk index moved up.
  auto b = open_patched([](std::vector<uint8_t>& b) {
    const uint64_t index = peek<uint64_t>(b, kLibIndexOff);
    std::fill(b.begin() + kLibOff, b.begin() + kLibOff + 72, 0);
    patch<uint16_t>(b, kLibOff, 0x8);
    patch<uint16_t>(b, kLibOff + 4, S_IFREG | 0600);
    patch<uint16_t>(b, kLibOff + 6, 1);
    patch<uint32_t>(b, kLibOff + 8, kLibSize);
    patch<uint32_t>(b, kLibOff + 16, 0x28);
    patch<uint16_t>(b, kLibOff + 24, 1000);
    patch<uint16_t>(b, kLibOff + 26, 2000);
    patch<uint64_t>(b, kLibOff + 32, index);
    patch<uint64_t>(b, kSbOff + 0x18, 1234567);  // build_time
    patch<uint32_t>(b, kSbOff + 0x20, 89);       // build_time_nsec
  });
  auto a = b->getattr(kLibNid);
  REQUIRE(a.ok());
  CHECK_FALSE(a->extended);
  CHECK(a->mode == (S_IFREG | 0600));
  CHECK(a->size == kLibSize);
  CHECK(a->uid == 1000);
  CHECK(a->gid == 2000);
  CHECK(a->nlink == 1);
  CHECK(a->mtime == 1234567);
  CHECK(a->mtime_nsec == 89);
  CHECK((*b->map_range(kLibNid, 0, 1))[0].ci_index == 0);
  CHECK(b->validate_tree().ok());
}

TEST_CASE("rafs: special inodes decode rdev and validate their layout", "[rafs][corrupt]") {
  // char device 1:3 and a large major/minor in the new encoding.
  for (auto [major, minor] : {std::pair<uint32_t, uint32_t>{1, 3}, {259, 70000}}) {
    const uint32_t raw = (minor & 0xFF) | (major << 8) | ((minor & ~0xFFu) << 12);
    auto b = open_patched(retype_sync(0x1, S_IFCHR | 0600, 0, raw, kFtCharDevice));
    auto a = b->getattr(kSyncNid);
    REQUIRE(a.ok());
    CHECK(major(a->rdev) == major);
    CHECK(minor(a->rdev) == minor);
    CHECK(b->validate_tree().ok());
  }
  auto blk = open_patched(retype_sync(0x1, S_IFBLK | 0600, 0, 0x0801, kFtBlockDevice));
  CHECK(blk->getattr(kSyncNid)->rdev == makedev(8, 1));
  CHECK(blk->validate_tree().ok());
  auto fifo = open_patched(retype_sync(0x1, S_IFIFO | 0600, 0, 0, kFtFifo));
  CHECK(fifo->getattr(kSyncNid)->rdev == 0);
  CHECK(fifo->validate_tree().ok());
  auto sock = open_patched(retype_sync(0x1, S_IFSOCK | 0600, 0, 0, kFtSocket));
  CHECK(sock->validate_tree().ok());

  auto bad = open_patched(retype_sync(0x5, S_IFCHR | 0600, 0, 0, kFtCharDevice));
  auto a = bad->getattr(kSyncNid);
  REQUIRE_FALSE(a.ok());
  CHECK(a.error().message().find("device with data layout FLAT_INLINE") != std::string::npos);
}
