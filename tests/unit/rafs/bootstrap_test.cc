// The reader against the reference image: every value the spec (§20)
// decodes by hand, the tree, lookups, partial listings and chunk mapping.
#include "nydusd/rafs/bootstrap.h"

#include <sys/stat.h>

#include <catch2/catch.hpp>

#include "tests/unit/rafs/sample_image.h"

using namespace nydus;
using namespace nydus::rafs;
using namespace nydus::rafs::testing;

namespace {

std::shared_ptr<const Bootstrap> open_sample() {
  auto b = Bootstrap::open(kSampleBoot);
  if (!b.ok()) FAIL(b.error().message());
  return *b;
}

std::vector<DirEntry> list(const Bootstrap& b, uint64_t nid, uint64_t start = 0) {
  std::vector<DirEntry> out;
  auto st = b.readdir(nid, start, [&](const DirEntry& e, uint64_t next) {
    out.push_back(e);
    return true;
  });
  REQUIRE(st.ok());
  return out;
}

}  // namespace

TEST_CASE("rafs: sample bootstrap: superblock, blob and chunk tables", "[rafs][bootstrap]") {
  auto b = open_sample();
  const SuperInfo& s = b->super();
  CHECK(s.block_size == 4096);
  CHECK(s.chunk_size == 0x100000);
  CHECK(s.root_nid == kSampleRootNid);
  CHECK(b->root_nid() == kSampleRootNid);
  CHECK(s.inodes == 3);
  CHECK(s.flags == 0x194);
  CHECK(s.compressor == Compressor::kZstd);
  CHECK(s.digester == Digester::kBlake3);
  CHECK(s.explicit_uid_gid);
  CHECK(s.meta_blkaddr == 2);
  CHECK(s.blocks == 9);
  CHECK(s.build_time == 0);
  CHECK(s.file_size == 20480);

  REQUIRE(b->blobs().size() == 1);
  const BlobInfo& blob = b->blobs()[0];
  CHECK(blob.index == 0);
  CHECK(blob.blob_id == kSampleBlobId);
  CHECK(blob.chunk_size == 0x100000);
  CHECK(blob.chunk_count == 2);
  CHECK(blob.compressor == Compressor::kZstd);
  CHECK(blob.digester == Digester::kBlake3);
  CHECK(blob.features == 0x70000021);
  CHECK(blob.compressed_size == 0x38DA);
  CHECK(blob.uncompressed_size == 0x9000);
  CHECK(blob.ci_compressor == Compressor::kNone);
  CHECK(blob.ci_offset == 0x207A);
  CHECK(blob.ci_compressed_size == 0x20);
  CHECK(blob.ci_uncompressed_size == 0x20);
  CHECK_FALSE(blob.ci_v2);
  CHECK(blob.mapped_blkaddr == 0x200);

  auto table = b->chunk_table();
  REQUIRE(table.size() == 2);
  CHECK(to_hex(std::span(table[0].digest, 4)) == "812465bc");
  CHECK(table[0].compressed_size == 2974);
  CHECK(table[0].uncompressed_offset == 0x5000);
  CHECK(table[0].index == 1);
  CHECK(to_hex(std::span(table[1].digest, 4)) == "f7e2735f");
  CHECK(table[1].compressed_size == 4828);
  CHECK(b->find_chunk(0, 1, 0x5000) == &table[0]);
  CHECK(b->find_chunk(0, 0, 0) == &table[1]);
  CHECK(b->find_chunk(0, 0, 0x5000) == nullptr);
  CHECK(b->find_chunk(1, 0, 0) == nullptr);

  auto prefetch = b->prefetch_nids();
  REQUIRE(prefetch.ok());
  CHECK(prefetch->empty());
  CHECK(b->validate_tree().ok());
}

TEST_CASE("rafs: sample bootstrap: tree, attributes, lookup", "[rafs][bootstrap]") {
  auto b = open_sample();
  auto entries = list(*b, kSampleRootNid);
  REQUIRE(entries.size() == 4);
  const std::pair<const char*, uint64_t> want[] = {{".", 128}, {"..", 128}, {"lib.rs", 133}, {"sync_io.rs", 136}};
  for (size_t i = 0; i < 4; ++i) {
    CHECK(entries[i].name == want[i].first);
    CHECK(entries[i].nid == want[i].second);
    CHECK(entries[i].file_type == (i < 2 ? kFtDirectory : kFtRegular));
  }

  auto root = b->getattr(kSampleRootNid);
  REQUIRE(root.ok());
  CHECK(root->nid == 128);
  CHECK(root->mode == (S_IFDIR | 0755));
  CHECK(root->size == 67);
  CHECK(root->nlink == 2);
  CHECK(root->extended);
  CHECK(root->layout == DataLayout::kFlatInline);

  auto lib = b->getattr(kLibNid);
  REQUIRE(lib.ok());
  CHECK(lib->mode == (S_IFREG | 0644));
  CHECK(lib->size == kLibSize);
  CHECK(lib->mtime == 0x63F23C61);
  CHECK(lib->mtime_nsec == 0x25789C56);
  CHECK(lib->nlink == 1);
  CHECK(lib->uid == 0);
  CHECK(lib->gid == 0);
  CHECK(lib->rdev == 0);
  CHECK(lib->layout == DataLayout::kChunkBased);

  auto sync = b->getattr(kSyncNid);
  REQUIRE(sync.ok());
  CHECK(sync->mode == (S_IFREG | 0644));
  CHECK(sync->size == kSyncSize);
  CHECK(sync->mtime == 1676819553);
  CHECK(sync->mtime_nsec == 628993084);

  for (const auto& [name, nid] : want) {
    auto r = b->lookup(kSampleRootNid, name);
    REQUIRE(r.ok());
    CHECK(*r == nid);
  }
  for (const char* missing : {"", "-dash", "a", "lib", "lib.rs2", "m", "sync_io.r", "zzz", "\xff"}) {
    auto r = b->lookup(kSampleRootNid, missing);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().kind() == ErrorKind::kNotFound);
    CHECK(r.error().to_errno() == ENOENT);
  }
  CHECK(b->lookup(kSampleRootNid, std::string(256, 'a')).error().to_errno() == ENAMETOOLONG);
  CHECK(b->lookup(kLibNid, "x").error().to_errno() == ENOTDIR);
  CHECK(b->readdir(kLibNid, 0, [](const DirEntry&, uint64_t) { return true; }).error().to_errno() == ENOTDIR);
}

TEST_CASE("rafs: sample bootstrap: readdir resumes at an index and stops early", "[rafs][bootstrap]") {
  auto b = open_sample();
  auto tail = list(*b, kSampleRootNid, 2);
  REQUIRE(tail.size() == 2);
  CHECK(tail[0].name == "lib.rs");
  CHECK(tail[1].name == "sync_io.rs");
  CHECK(list(*b, kSampleRootNid, 4).empty());
  CHECK(list(*b, kSampleRootNid, 1000).empty());

  std::vector<uint64_t> nexts;
  auto st = b->readdir(kSampleRootNid, 1, [&](const DirEntry&, uint64_t next) {
    nexts.push_back(next);
    return nexts.size() < 2;
  });
  REQUIRE(st.ok());
  CHECK(nexts == std::vector<uint64_t>{2, 3});
}

TEST_CASE("rafs: sample bootstrap: map_range gives chunks with compressed extents and digests", "[rafs][bootstrap]") {
  auto b = open_sample();
  auto lib = b->map_range(kLibNid, 0, ~uint64_t(0));
  REQUIRE(lib.ok());
  REQUIRE(lib->size() == 1);
  const ChunkRef& c = (*lib)[0];
  CHECK(c.blob_index == 0);
  CHECK(c.ci_index == 0);
  CHECK(c.file_offset == 0);
  CHECK(c.uncompressed_offset == 0);
  CHECK(c.uncompressed_size == kLibSize);
  CHECK(c.compressed_offset == 0);
  CHECK(c.compressed_size == 4828);
  CHECK(c.compressed);
  CHECK(c.in_chunk_table);
  CHECK(c.compressor == Compressor::kZstd);
  CHECK(c.digester == Digester::kBlake3);
  REQUIRE(c.digest);
  CHECK(to_hex(*c.digest).substr(0, 8) == "f7e2735f");

  auto sync = b->map_range(kSyncNid, 100, 10);
  REQUIRE(sync.ok());
  REQUIRE(sync->size() == 1);
  CHECK((*sync)[0].ci_index == 1);
  CHECK((*sync)[0].uncompressed_offset == 0x5000);
  CHECK((*sync)[0].compressed_offset == 0x12DC);
  CHECK((*sync)[0].compressed_size == 2974);

  CHECK(b->map_range(kSyncNid, kSyncSize, 10)->empty());
  CHECK(b->map_range(kSyncNid, 0, 0)->empty());
  CHECK(b->map_range(kSampleRootNid, 0, 1).error().to_errno() == EISDIR);
}

TEST_CASE("rafs: sample bootstrap: no xattrs, no symlinks", "[rafs][bootstrap]") {
  auto b = open_sample();
  for (uint64_t nid : {kSampleRootNid, kLibNid, kSyncNid}) {
    auto x = b->xattrs(nid);
    REQUIRE(x.ok());
    CHECK(x->empty());
    CHECK_FALSE(b->readlink(nid).ok());
  }
}

TEST_CASE("rafs: open reports a missing file and from_bytes names its source", "[rafs][bootstrap]") {
  auto missing = Bootstrap::open("/nonexistent/image.boot");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().kind() == ErrorKind::kNotFound);

  auto empty = Bootstrap::from_bytes({}, "empty-image");
  REQUIRE_FALSE(empty.ok());
  CHECK(empty.error().kind() == ErrorKind::kCorrupt);
  CHECK(empty.error().message().find("empty-image") != std::string::npos);
}
