// BlobStore against the reference sample image (tests/data/rafs-v6-2.2: one
// zstd blob, BLAKE3 digests, lib.rs = chunk 0, sync_io.rs = chunk 1).
#include "nydusd/storage/blob_store.h"

#include <chrono>
#include <functional>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include <catch2/catch.hpp>

#include "nydusd/rafs/bootstrap.h"
#include "common/file_io.h"
#include "nydusd/storage/chunk_map.h"
#include "tests/support/temp_dir.h"
#include "tests/unit/storage/test_backend.h"

using nydus::ErrorKind;
using nydus::rafs::Bootstrap;
using nydus::storage::BlobStore;
using nydus::storage::BlobStoreImpl;
using nydus::storage::StorageConfig;
using namespace nydus::storage::testing;
namespace fs = std::filesystem;

namespace {

constexpr uint64_t kLibSize = 16931;
constexpr uint64_t kSyncIoSize = 13400;
// Compressed offsets of the two chunks in the sample blob (spec §20).
constexpr uint64_t kChunk0Offset = 0;
constexpr uint64_t kChunk1Offset = 0x12DC;

std::shared_ptr<const Bootstrap> sample_bootstrap() {
  auto b = Bootstrap::open(kSampleBoot);
  REQUIRE(b.ok());
  return *b;
}

uint64_t nid_of(const Bootstrap& b, const std::string& name) {
  auto nid = b.lookup(b.root_nid(), name);
  REQUIRE(nid.ok());
  return *nid;
}

StorageConfig cached_config(const fs::path& work_dir, const std::string& blob_dir = kSampleDir) {
  StorageConfig c;
  c.backend.type = "localfs";
  c.backend.dir = blob_dir;
  c.cache.type = "blobcache";
  c.cache.work_dir = work_dir.string();
  c.validate = true;
  return c;
}

std::vector<uint8_t> read_all(BlobStore& store, uint64_t nid, uint64_t size,
                              const std::string& hint) {
  std::vector<uint8_t> out(size + 100);  // ask for more: the read is short at EOF
  auto n = store.read(nid, 0, out, hint);
  REQUIRE(n.ok());
  REQUIRE(*n == size);
  out.resize(size);
  return out;
}

// The files as read without any cache, for comparison.
std::pair<std::vector<uint8_t>, std::vector<uint8_t>> reference_contents() {
  auto boot = sample_bootstrap();
  StorageConfig c;
  c.backend.dir = kSampleDir;
  c.cache.type = "";
  c.validate = true;
  auto store = BlobStore::open(c, boot);
  REQUIRE(store.ok());
  return {read_all(**store, nid_of(*boot, "lib.rs"), kLibSize, "lib.rs"),
          read_all(**store, nid_of(*boot, "sync_io.rs"), kSyncIoSize, "sync_io.rs")};
}

std::string data_path(const fs::path& work) { return (work / (kSampleBlobId + ".blob.data")).string(); }
std::string map_path(const fs::path& work) { return data_path(work) + ".chunk_map"; }

std::vector<uint8_t> slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}
void spit(const fs::path& p, const std::vector<uint8_t>& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

bool chunk_ready_on_disk(const fs::path& work, uint32_t ci) {
  auto map = nydus::storage::ChunkMap::open(map_path(work), 2, false);
  REQUIRE(map.ok());
  return (*map)->is_ready(ci);
}

}  // namespace

TEST_CASE("store: both sample files read byte-exact through the cache", "[storage][store]") {
  auto [lib, sync_io] = reference_contents();
  const std::string prefix = "// Copyright (C) 2020 Alibaba Cloud";
  REQUIRE(std::memcmp(lib.data(), prefix.data(), prefix.size()) == 0);

  nydus::testing::TempDir work;
  auto boot = sample_bootstrap();
  auto store = BlobStore::open(cached_config(work.path()), boot);
  REQUIRE(store.ok());
  CHECK(read_all(**store, nid_of(*boot, "lib.rs"), kLibSize, "lib.rs") == lib);
  CHECK(read_all(**store, nid_of(*boot, "sync_io.rs"), kSyncIoSize, "sync_io.rs") == sync_io);

  const auto& m = (*store)->metrics();
  CHECK(m.backend_read_count == 2);
  CHECK(m.cache_misses == 2);
  CHECK(m.digest_failures == 0);

  // Again: from the cache now.
  CHECK(read_all(**store, nid_of(*boot, "lib.rs"), kLibSize, "lib.rs") == lib);
  CHECK(m.backend_read_count == 2);
  CHECK(m.cache_hits == 1);

  // Partial reads at odd offsets, spanning nothing but the asked bytes.
  std::vector<uint8_t> part(1000);
  auto n = (*store)->read(nid_of(*boot, "sync_io.rs"), 12999, part, "sync_io.rs");
  REQUIRE(n.ok());
  CHECK(*n == kSyncIoSize - 12999);
  CHECK(std::equal(part.begin(), part.begin() + long(*n), sync_io.begin() + 12999));
  auto eof = (*store)->read(nid_of(*boot, "sync_io.rs"), kSyncIoSize, part, "sync_io.rs");
  REQUIRE(eof.ok());
  CHECK(*eof == 0);

  // The cache files are where the reference puts them.
  CHECK(fs::file_size(data_path(work.path())) == 0x9000);
  CHECK(fs::file_size(map_path(work.path())) == 4096 + 1);
  auto files = (*store)->cache_files();
  CHECK(std::find(files.begin(), files.end(), data_path(work.path())) != files.end());
  CHECK(std::find(files.begin(), files.end(), map_path(work.path())) != files.end());
  // Each chunk sits at its uncompressed offset in the data file.
  auto data = slurp(data_path(work.path()));
  CHECK(std::equal(lib.begin(), lib.end(), data.begin()));
  CHECK(std::equal(sync_io.begin(), sync_io.end(), data.begin() + 0x5000));
}

TEST_CASE("store: a second store on the same work_dir reads with zero backend reads",
          "[storage][store]") {
  auto [lib, sync_io] = reference_contents();
  nydus::testing::TempDir work;
  auto boot = sample_bootstrap();
  {
    auto first = BlobStore::open(cached_config(work.path()), boot);
    REQUIRE(first.ok());
    read_all(**first, nid_of(*boot, "lib.rs"), kLibSize, "lib.rs");
    read_all(**first, nid_of(*boot, "sync_io.rs"), kSyncIoSize, "sync_io.rs");
    // The first store stays open while the second one works: they share
    // the map as two processes would.
    auto validate = GENERATE(true, false);
    auto cfg = cached_config(work.path());
    cfg.validate = validate;
    auto second = BlobStore::open(cfg, boot);
    REQUIRE(second.ok());
    CHECK(read_all(**second, nid_of(*boot, "lib.rs"), kLibSize, "lib.rs") == lib);
    CHECK(read_all(**second, nid_of(*boot, "sync_io.rs"), kSyncIoSize, "sync_io.rs") == sync_io);
    const auto& m = (*second)->metrics();
    CHECK(m.backend_read_count == 0);
    CHECK(m.cache_misses == 0);
    CHECK(m.cache_hits == 2);
  }
}

TEST_CASE("store: a damaged chunk map is rebuilt and the data fetched again", "[storage][store]") {
  auto [lib, sync_io] = reference_contents();
  nydus::testing::TempDir work;
  auto boot = sample_bootstrap();
  {
    auto first = BlobStore::open(cached_config(work.path()), boot);
    REQUIRE(first.ok());
    read_all(**first, nid_of(*boot, "lib.rs"), kLibSize, "lib.rs");
    read_all(**first, nid_of(*boot, "sync_io.rs"), kSyncIoSize, "sync_io.rs");
  }
  SECTION("truncated map") { fs::resize_file(map_path(work.path()), 100); }
  SECTION("garbage header") {
    auto b = slurp(map_path(work.path()));
    std::memset(b.data(), 0xEE, 64);
    spit(map_path(work.path()), b);
  }
  SECTION("map for another chunk count") {
    auto b = slurp(map_path(work.path()));
    b[16] = 3;
    spit(map_path(work.path()), b);
  }
  SECTION("data file truncated: the map cannot describe it any more") {
    fs::resize_file(data_path(work.path()), 0x1000);
  }

  auto store = BlobStore::open(cached_config(work.path()), boot);
  REQUIRE(store.ok());
  CHECK(read_all(**store, nid_of(*boot, "lib.rs"), kLibSize, "lib.rs") == lib);
  CHECK(read_all(**store, nid_of(*boot, "sync_io.rs"), kSyncIoSize, "sync_io.rs") == sync_io);
  CHECK((*store)->metrics().backend_read_count == 2);
  CHECK(fs::file_size(map_path(work.path())) == 4096 + 1);
  CHECK(fs::file_size(data_path(work.path())) == 0x9000);
}

TEST_CASE("store: 16 threads reading random ranges fetch each chunk once", "[storage][store]") {
  auto [lib, sync_io] = reference_contents();
  nydus::testing::TempDir work;
  auto boot = sample_bootstrap();
  TestBackend* backend = nullptr;
  auto store = BlobStoreImpl::create(cached_config(work.path()), boot, test_backend_factory(&backend));
  REQUIRE(store.ok());
  const uint64_t nids[2] = {nid_of(*boot, "lib.rs"), nid_of(*boot, "sync_io.rs")};
  const std::vector<uint8_t>* want[2] = {&lib, &sync_io};

  // Hold the backend so the first readers pile up on the in-flight fetches.
  backend->hold();
  constexpr int kThreads = 16;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(uint64_t(t) * 7919);
      for (int i = 0; i < 200; ++i) {
        int f = int(rng() % 2);
        uint64_t size = want[f]->size();
        uint64_t off = rng() % size;
        std::vector<uint8_t> buf(1 + rng() % 5000);
        auto n = (*store)->read(nids[f], off, buf, "random");
        uint64_t expect = std::min<uint64_t>(buf.size(), size - off);
        if (!n.ok() || *n != expect ||
            !std::equal(buf.begin(), buf.begin() + long(expect), want[f]->begin() + long(off))) {
          ++failures;
        }
      }
    });
  }
  REQUIRE(backend->wait_reads(1, std::chrono::seconds(10)));
  // Keep the first fetch in flight a little so the other readers reach the
  // in-flight table (the exactly-once checks below hold with any timing).
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  backend->release();
  for (auto& th : threads) th.join();

  CHECK(failures == 0);
  CHECK(backend->reads_at(kSampleBlobId, kChunk0Offset) == 1);
  CHECK(backend->reads_at(kSampleBlobId, kChunk1Offset) == 1);
  CHECK(backend->total_reads() == 2);
  const auto& m = (*store)->metrics();
  CHECK(m.backend_read_count == 2);
  CHECK(m.cache_misses == 2);
  CHECK(m.chunk_coalesced_waits >= 1);
}

TEST_CASE("store: a corrupt chunk fails only its file and is never cached", "[storage][store]") {
  nydus::testing::TempDir blobs;
  nydus::testing::TempDir work;
  auto [lib, sync_io] = reference_contents();
  auto blob = slurp(kSampleDir + "/" + kSampleBlobId);
  blob[kChunk1Offset + 1000] ^= 0x40;  // inside sync_io.rs's compressed chunk
  spit(blobs / kSampleBlobId, blob);

  auto boot = sample_bootstrap();
  {
    auto store = BlobStore::open(cached_config(work.path(), blobs.path().string()), boot);
    REQUIRE(store.ok());
    std::vector<uint8_t> buf(100);
    auto bad = (*store)->read(nid_of(*boot, "sync_io.rs"), 0, buf, "/sync_io.rs");
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().kind() == ErrorKind::kCorrupt);
    CHECK(bad.error().to_errno() == EIO);
    CHECK_THAT(bad.error().message(), Catch::Contains(kSampleBlobId) && Catch::Contains("ci=1") &&
                                          Catch::Contains("/sync_io.rs"));
    // Other files keep working.
    CHECK(read_all(**store, nid_of(*boot, "lib.rs"), kLibSize, "lib.rs") == lib);
    // A retry fetches again (the failure was not remembered) and fails again.
    CHECK_FALSE((*store)->read(nid_of(*boot, "sync_io.rs"), 0, buf, "/sync_io.rs").ok());
    CHECK((*store)->metrics().backend_read_errors == 0);  // the backend itself was fine
  }
  CHECK(chunk_ready_on_disk(work.path(), 0));
  CHECK_FALSE(chunk_ready_on_disk(work.path(), 1));
}

TEST_CASE("store: a digest mismatch is an error, counted, and not cached", "[storage][store]") {
  // Correct blob, but the bootstrap's digest for chunk 1 is wrong.
  auto bytes = nydus::read_file(kSampleBoot, 1 << 20);
  REQUIRE(bytes.ok());
  // Chunk table @0x4000: entry 0 is sync_io.rs's chunk (CI 1), digest first.
  (*bytes)[0x4000 + 5] ^= 0xFF;
  auto boot = Bootstrap::from_bytes(std::move(*bytes), "bad-digest.boot");
  REQUIRE(boot.ok());

  nydus::testing::TempDir work;
  auto [lib, sync_io] = reference_contents();
  {
    auto store = BlobStore::open(cached_config(work.path()), *boot);
    REQUIRE(store.ok());
    std::vector<uint8_t> buf(100);
    auto bad = (*store)->read(nid_of(**boot, "sync_io.rs"), 0, buf, "sync_io.rs");
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().kind() == ErrorKind::kCorrupt);
    CHECK_THAT(bad.error().message(), Catch::Contains("digest mismatch"));
    CHECK((*store)->metrics().digest_failures == 1);
    CHECK(read_all(**store, nid_of(**boot, "lib.rs"), kLibSize, "lib.rs") == lib);
  }
  CHECK_FALSE(chunk_ready_on_disk(work.path(), 1));

  // Without validation the same image reads (the data itself is fine).
  auto cfg = cached_config(work.path());
  cfg.validate = false;
  auto store = BlobStore::open(cfg, *boot);
  REQUIRE(store.ok());
  CHECK(read_all(**store, nid_of(**boot, "sync_io.rs"), kSyncIoSize, "sync_io.rs") == sync_io);
}

TEST_CASE("store: with validation, bad cached data is detected and fetched again",
          "[storage][store]") {
  auto [lib, sync_io] = reference_contents();
  nydus::testing::TempDir work;
  auto boot = sample_bootstrap();
  {
    auto first = BlobStore::open(cached_config(work.path()), boot);
    REQUIRE(first.ok());
    read_all(**first, nid_of(*boot, "lib.rs"), kLibSize, "lib.rs");
  }
  auto data = slurp(data_path(work.path()));
  data[10] ^= 0x01;
  spit(data_path(work.path()), data);

  auto store = BlobStore::open(cached_config(work.path()), boot);
  REQUIRE(store.ok());
  CHECK(read_all(**store, nid_of(*boot, "lib.rs"), kLibSize, "lib.rs") == lib);
  CHECK((*store)->metrics().backend_read_count == 1);
  CHECK(slurp(data_path(work.path()))[10] == lib[10]);  // repaired
}

TEST_CASE("store: without a cache every read goes to the backend", "[storage][store]") {
  auto boot = sample_bootstrap();
  StorageConfig c;
  c.backend.dir = kSampleDir;
  c.cache.type = "";
  auto store = BlobStore::open(c, boot);
  REQUIRE(store.ok());
  read_all(**store, nid_of(*boot, "lib.rs"), kLibSize, "lib.rs");
  read_all(**store, nid_of(*boot, "lib.rs"), kLibSize, "lib.rs");
  CHECK((*store)->metrics().backend_read_count == 2);
  CHECK((*store)->cache_files().empty());
}

TEST_CASE("store: configuration errors are clear at open", "[storage][store]") {
  nydus::testing::TempDir work;
  auto boot = sample_bootstrap();
  struct Case {
    const char* name;
    std::function<void(StorageConfig&)> spoil;
    ErrorKind kind;
    const char* message_part;
  };
  const std::string missing_dir = (work / "no-such-dir").string();
  const Case cases[] = {
      {"missing blob dir", [&](StorageConfig& c) { c.backend.dir = missing_dir; }, ErrorKind::kNotFound,
       "no-such-dir"},
      {"unknown backend", [](StorageConfig& c) { c.backend.type = "registry"; }, ErrorKind::kUnsupported,
       "registry"},
      {"unknown cache type", [](StorageConfig& c) { c.cache.type = "fscache"; }, ErrorKind::kUnsupported,
       "fscache"},
      {"cache without work_dir", [](StorageConfig& c) { c.cache.work_dir.clear(); },
       ErrorKind::kInvalidArgument, "work_dir"},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    auto cfg = cached_config(work.path());
    c.spoil(cfg);
    auto s = BlobStore::open(cfg, boot);
    REQUIRE_FALSE(s.ok());
    CHECK(s.error().kind() == c.kind);
    CHECK_THAT(s.error().message(), Catch::Contains(c.message_part));
  }
}

TEST_CASE("store: prefetch fills the cache, then reads need no backend", "[storage][prefetch]") {
  auto [lib, sync_io] = reference_contents();
  nydus::testing::TempDir work;
  auto boot = sample_bootstrap();
  auto cfg = cached_config(work.path());
  cfg.prefetch.enable = true;
  cfg.prefetch.threads = 2;

  SECTION("listed file only") {
    cfg.prefetch.prefetch_all = false;
    auto store = BlobStoreImpl::create(cfg, boot);
    REQUIRE(store.ok());
    (*store)->start_prefetch({nid_of(*boot, "lib.rs")});
    REQUIRE((*store)->wait_prefetch(std::chrono::seconds(10)));
    const auto& m = (*store)->metrics();
    CHECK(m.prefetch_chunks == 1);
    CHECK(m.prefetch_bytes == kLibSize);
    CHECK(read_all(**store, nid_of(*boot, "lib.rs"), kLibSize, "lib.rs") == lib);
    CHECK(m.backend_read_count == 1);
    CHECK(m.cache_misses == 0);
  }
  SECTION("listed file, then everything") {
    cfg.prefetch.prefetch_all = true;
    auto store = BlobStoreImpl::create(cfg, boot);
    REQUIRE(store.ok());
    (*store)->start_prefetch({nid_of(*boot, "sync_io.rs")});
    REQUIRE((*store)->wait_prefetch(std::chrono::seconds(10)));
    const auto& m = (*store)->metrics();
    CHECK(m.prefetch_chunks == 2);
    CHECK(m.backend_read_count == 2);
    CHECK((*store)->data_all_ready());
    CHECK(read_all(**store, nid_of(*boot, "lib.rs"), kLibSize, "lib.rs") == lib);
    CHECK(read_all(**store, nid_of(*boot, "sync_io.rs"), kSyncIoSize, "sync_io.rs") == sync_io);
    CHECK(m.backend_read_count == 2);
    CHECK(m.cache_misses == 0);
    // A second prefetch finds nothing to do.
    (*store)->start_prefetch({});
    REQUIRE((*store)->wait_prefetch(std::chrono::seconds(10)));
    CHECK(m.backend_read_count == 2);
  }
  SECTION("the root directory stands for everything below it") {
    cfg.prefetch.prefetch_all = false;
    auto store = BlobStoreImpl::create(cfg, boot);
    REQUIRE(store.ok());
    (*store)->start_prefetch({boot->root_nid()});
    REQUIRE((*store)->wait_prefetch(std::chrono::seconds(10)));
    CHECK((*store)->metrics().prefetch_chunks == 2);
  }
  SECTION("disabled prefetch does nothing") {
    cfg.prefetch.enable = false;
    auto store = BlobStoreImpl::create(cfg, boot);
    REQUIRE(store.ok());
    (*store)->start_prefetch({boot->root_nid()});
    REQUIRE((*store)->wait_prefetch(std::chrono::seconds(10)));
    CHECK((*store)->metrics().backend_read_count == 0);
  }
}

TEST_CASE("store: a foreground read coalesces with the prefetch of its chunk", "[storage][prefetch]") {
  auto [lib, sync_io] = reference_contents();
  nydus::testing::TempDir work;
  auto boot = sample_bootstrap();
  auto cfg = cached_config(work.path());
  cfg.prefetch.enable = true;
  cfg.prefetch.threads = 1;
  TestBackend* backend = nullptr;
  auto store = BlobStoreImpl::create(cfg, boot, test_backend_factory(&backend));
  REQUIRE(store.ok());

  backend->hold();
  (*store)->start_prefetch({nid_of(*boot, "lib.rs")});
  REQUIRE(backend->wait_reads(1, std::chrono::seconds(10)));  // prefetch is fetching chunk 0
  std::vector<uint8_t> got;
  std::thread reader([&] { got = read_all(**store, nid_of(*boot, "lib.rs"), kLibSize, "lib.rs"); });
  // Give the reader time to reach the in-flight table; whether it waits
  // there or arrives after the prefetch finished, it must not fetch itself.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  backend->release();
  reader.join();
  REQUIRE((*store)->wait_prefetch(std::chrono::seconds(10)));
  CHECK(got == lib);
  CHECK(backend->reads_at(kSampleBlobId, kChunk0Offset) == 1);
  CHECK((*store)->metrics().cache_misses == 0);
}

TEST_CASE("store: stop_prefetch returns within one chunk fetch", "[storage][prefetch]") {
  nydus::testing::TempDir work;
  auto boot = sample_bootstrap();
  auto cfg = cached_config(work.path());
  cfg.prefetch.threads = 1;
  std::shared_ptr<BlobStoreImpl> store;
  TestBackend* backend = nullptr;
  // The one prefetch thread is inside a backend read; stop must wait for
  // that read only, then skip the rest.
  CHECK(stop_prefetch_mid_read(cfg, boot, &store, &backend) < std::chrono::seconds(5));
  CHECK(backend->total_reads() == 1);
  CHECK(store->wait_prefetch(std::chrono::milliseconds(0)));

  // Destroying a store with a running prefetch stops it too.
  backend->hold();
  store->start_prefetch({});
  REQUIRE(backend->wait_reads(2, std::chrono::seconds(10)));
  backend->release();
  store.reset();
}

TEST_CASE("store: chunks missing from the chunk table are located through the CI array",
          "[storage][store][ci]") {
  // The sample bootstrap with its chunk table cut off (ext SB chunk_table_size
  // @0x4a0 = 0): every chunk must be resolved from the blob's CI array.
  auto bytes = nydus::read_file(kSampleBoot, 1 << 20);
  REQUIRE(bytes.ok());
  std::memset(bytes->data() + 0x4a0, 0, 8);
  auto boot = Bootstrap::from_bytes(std::move(*bytes), "no-chunk-table.boot");
  REQUIRE(boot.ok());
  auto refs = (*boot)->map_range(nid_of(**boot, "lib.rs"), 0, 1);
  REQUIRE(refs.ok());
  REQUIRE_FALSE(refs->at(0).in_chunk_table);

  auto [lib, sync_io] = reference_contents();
  nydus::testing::TempDir work;
  const std::string meta = (work / (kSampleBlobId + ".blob.meta")).string();
  {
    auto store = BlobStore::open(cached_config(work.path()), *boot);
    REQUIRE(store.ok());
    CHECK(read_all(**store, nid_of(**boot, "lib.rs"), kLibSize, "lib.rs") == lib);
    CHECK(read_all(**store, nid_of(**boot, "sync_io.rs"), kSyncIoSize, "sync_io.rs") == sync_io);
    CHECK((*store)->metrics().backend_read_count == 3);  // the CI region once, then each chunk
    // The CI array is cached as <blob_id>.blob.meta: the CI padded to 4 KiB + header.
    CHECK(fs::file_size(meta) == 4096 + 4096);
    auto files = (*store)->cache_files();
    CHECK(std::find(files.begin(), files.end(), meta) != files.end());
  }
  // A new store whose data cache is gone but whose blob.meta remains reads
  // only the chunks.
  fs::remove(data_path(work.path()));
  fs::remove(map_path(work.path()));
  auto store = BlobStore::open(cached_config(work.path()), *boot);
  REQUIRE(store.ok());
  CHECK(read_all(**store, nid_of(**boot, "sync_io.rs"), kSyncIoSize, "sync_io.rs") == sync_io);
  CHECK((*store)->metrics().backend_read_count == 1);

  // Nor is a damaged blob.meta trusted.
  fs::resize_file(meta, 100);
  fs::remove(data_path(work.path()));
  fs::remove(map_path(work.path()));
  auto third = BlobStore::open(cached_config(work.path()), *boot);
  REQUIRE(third.ok());
  CHECK(read_all(**third, nid_of(**boot, "lib.rs"), kLibSize, "lib.rs") == lib);
  CHECK((*third)->metrics().backend_read_count == 2);
  CHECK(fs::file_size(meta) == 8192);
}
