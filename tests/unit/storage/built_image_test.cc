// BlobStore against images built in the test by tools/nydus-image: many
// chunks per file, deduplicated chunks shared by two files, raw chunks inside
// compressed blobs, and every compressor (none, lz4_block, zstd).
#include <sys/stat.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <thread>

#include <catch2/catch.hpp>

#include "nydusd/rafs/bootstrap.h"
#include "nydusd/storage/blob_store.h"
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

constexpr uint32_t kChunkSize = 0x10000;

std::vector<uint8_t> make_content(size_t size, uint64_t seed) {
  // Alternating chunks of compressible text and random bytes, so compressed
  // blobs hold both compressed and raw (not smaller) chunks.
  // Each chunk starts with a stamp naming it, so no two chunks are equal
  // unless a test makes them so.
  std::vector<uint8_t> v(size);
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i < size; ++i) {
    bool text = (i / kChunkSize) % 2 == 0;
    v[i] = text ? uint8_t("nydus chunk data "[i % 17]) : uint8_t(rng());
  }
  for (size_t c = 0; c * kChunkSize < size; ++c) {
    std::string stamp = fmt::format("[seed {} chunk {}]", seed, c);
    for (size_t j = 0; j < stamp.size() && c * kChunkSize + j < size; ++j) {
      v[c * kChunkSize + j] = uint8_t(stamp[j]);
    }
  }
  return v;
}

void write_file(const fs::path& p, const std::vector<uint8_t>& bytes) {
  fs::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

std::vector<uint8_t> slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

// The source tree: path -> content.
std::map<std::string, std::vector<uint8_t>> source_files() {
  std::map<std::string, std::vector<uint8_t>> files;
  files["big.bin"] = make_content(40 * kChunkSize + 1234, 1);
  // The first three chunks of big.bin again: deduplicated to the same CI entries.
  files["copy.bin"] = std::vector<uint8_t>(files["big.bin"].begin(),
                                           files["big.bin"].begin() + 3 * kChunkSize);
  files["exact.bin"] = make_content(2 * kChunkSize, 2);
  files["small.txt"] = {'h', 'e', 'l', 'l', 'o', '\n'};
  files["empty"] = {};
  files["dir/nested.bin"] = make_content(100000, 3);
  return files;
}

struct BuiltImage {
  nydus::testing::TempDir dir{"nydus-stor-img"};
  std::map<std::string, std::vector<uint8_t>> files = source_files();
  std::string boot;
  std::string blob_dir;
  std::shared_ptr<const Bootstrap> bootstrap;
  std::string blob_id;

  BuiltImage(const std::string& compressor, const std::string& digester = "blake3") {
    fs::path src = dir / "src";
    for (const auto& [name, bytes] : files) write_file(src / name, bytes);
    boot = (dir / "image.boot").string();
    blob_dir = (dir / "blobs").string();
    fs::create_directories(blob_dir);
    std::string log = (dir / "build.log").string();
    std::string cmd = fmt::format(
        "'{}/nydus-image' create -t dir-rafs -B '{}' -D '{}' -c {} --digester {} -S {:#x} '{}' "
        ">'{}' 2>&1",
        NYDUS_BIN_DIR, boot, blob_dir, compressor, digester, kChunkSize, src.string(), log);
    int rc = std::system(cmd.c_str());
    auto log_bytes = slurp(log);
    INFO("build log:\n" << std::string(log_bytes.begin(), log_bytes.end()));
    REQUIRE(rc == 0);
    auto b = Bootstrap::open(boot);
    REQUIRE(b.ok());
    bootstrap = *b;
    REQUIRE(bootstrap->blobs().size() == 1);
    blob_id = bootstrap->blobs()[0].blob_id;
  }

  uint64_t nid(const std::string& path) const {
    uint64_t cur = bootstrap->root_nid();
    for (const auto& part : fs::path(path)) {
      auto next = bootstrap->lookup(cur, part.string());
      REQUIRE(next.ok());
      cur = *next;
    }
    return cur;
  }

  StorageConfig config(const std::string& work_dir) const {
    StorageConfig c;
    c.backend.dir = blob_dir;
    c.cache.type = "blobcache";
    c.cache.work_dir = work_dir;
    c.validate = true;
    return c;
  }
};

std::vector<uint8_t> read_whole(BlobStore& store, uint64_t nid, size_t size) {
  std::vector<uint8_t> out(size + 7);
  auto n = store.read(nid, 0, out, "whole");
  REQUIRE(n.ok());
  REQUIRE(*n == size);
  out.resize(size);
  return out;
}

}  // namespace

TEST_CASE("built image: every file reads back exactly, then from the cache only",
          "[storage][built]") {
  auto [compressor, digester] = GENERATE(table<std::string, std::string>({
      {"none", "blake3"}, {"lz4_block", "blake3"}, {"zstd", "blake3"}, {"zstd", "sha256"}}));
  INFO(compressor << " " << digester);
  BuiltImage img(compressor, digester);
  nydus::testing::TempDir work;
  {
    auto store = BlobStore::open(img.config(work.path().string()), img.bootstrap);
    REQUIRE(store.ok());
    for (const auto& [name, bytes] : img.files) {
      INFO(name);
      CHECK(read_whole(**store, img.nid(name), bytes.size()) == bytes);
    }
    CHECK((*store)->metrics().digest_failures == 0);
    // big.bin (41 chunks), exact.bin (2), small.txt (1), nested.bin (2);
    // copy.bin's chunks are big.bin's.
    CHECK((*store)->metrics().backend_read_count == 46);
  }
  auto store = BlobStore::open(img.config(work.path().string()), img.bootstrap);
  REQUIRE(store.ok());
  for (const auto& [name, bytes] : img.files) CHECK(read_whole(**store, img.nid(name), bytes.size()) == bytes);
  CHECK((*store)->metrics().backend_read_count == 0);
}

TEST_CASE("built image: 16 threads on random ranges fetch each chunk exactly once",
          "[storage][built]") {
  auto compressor = GENERATE(as<std::string>{}, "none", "lz4_block", "zstd");
  INFO(compressor);
  BuiltImage img(compressor);
  nydus::testing::TempDir work;
  TestBackend* backend = nullptr;
  auto store = BlobStoreImpl::create(img.config(work.path().string()), img.bootstrap,
                                     test_backend_factory(&backend));
  REQUIRE(store.ok());
  const std::vector<std::string> names = {"big.bin", "copy.bin", "dir/nested.bin", "exact.bin"};
  std::vector<uint64_t> nids;
  for (const auto& n : names) nids.push_back(img.nid(n));

  backend->hold();
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(uint64_t(t) + 100);
      for (int i = 0; i < 300; ++i) {
        size_t f = rng() % names.size();
        const auto& want = img.files.at(names[f]);
        uint64_t off = rng() % want.size();
        std::vector<uint8_t> buf(1 + rng() % (3 * kChunkSize));  // often spans chunks
        auto n = (*store)->read(nids[f], off, buf, names[f]);
        uint64_t expect = std::min<uint64_t>(buf.size(), want.size() - off);
        if (!n.ok() || *n != expect ||
            !std::equal(buf.begin(), buf.begin() + long(expect), want.begin() + long(off))) {
          ++failures;
        }
      }
    });
  }
  REQUIRE(backend->wait_reads(1, std::chrono::seconds(10)));
  backend->release();
  for (auto& th : threads) th.join();
  CHECK(failures == 0);
  for (const auto& [key, count] : backend->reads()) {
    INFO("blob offset " << key.second);
    CHECK(count == 1);
  }
  CHECK((*store)->metrics().backend_read_count == backend->total_reads());
  CHECK((*store)->metrics().cache_misses == backend->total_reads());
}

TEST_CASE("built image: prefetch_all fills every blob, reads then need no backend",
          "[storage][built][prefetch]") {
  BuiltImage img("lz4_block");
  nydus::testing::TempDir work;
  auto cfg = img.config(work.path().string());
  cfg.prefetch.enable = true;
  cfg.prefetch.threads = 4;
  cfg.prefetch.prefetch_all = true;
  auto store = BlobStoreImpl::create(cfg, img.bootstrap);
  REQUIRE(store.ok());
  (*store)->start_prefetch({img.nid("dir/nested.bin")});
  REQUIRE((*store)->wait_prefetch(std::chrono::seconds(30)));
  const auto& m = (*store)->metrics();
  CHECK(m.prefetch_chunks == img.bootstrap->blobs()[0].chunk_count);
  CHECK(m.prefetch_errors == 0);
  CHECK((*store)->data_all_ready());
  uint64_t before = m.backend_read_count;
  for (const auto& [name, bytes] : img.files) CHECK(read_whole(**store, img.nid(name), bytes.size()) == bytes);
  CHECK(m.backend_read_count == before);
  CHECK(m.cache_misses == 0);

  // The all-ready flag is persisted for the next process.
  auto map = nydus::storage::ChunkMap::open(
      (work / (img.blob_id + ".blob.data.chunk_map")).string(),
      img.bootstrap->blobs()[0].chunk_count, false);
  REQUIRE(map.ok());
  CHECK((*map)->all_ready());
}

TEST_CASE("built image: stop_prefetch returns promptly in the middle of a blob",
          "[storage][built][prefetch]") {
  BuiltImage img("zstd");
  nydus::testing::TempDir work;
  auto cfg = img.config(work.path().string());
  cfg.prefetch.threads = 2;
  std::shared_ptr<BlobStoreImpl> store;
  TestBackend* backend = nullptr;
  CHECK(stop_prefetch_mid_read(cfg, img.bootstrap, &store, &backend) < std::chrono::seconds(5));
  // Each thread finished the chunk in hand and nothing more.
  CHECK(backend->total_reads() == 2);

  // A foreground read is unaffected and a new prefetch picks up the rest.
  const auto& big = img.files.at("big.bin");
  CHECK(read_whole(*store, img.nid("big.bin"), big.size()) == big);
  store->start_prefetch({});
  REQUIRE(store->wait_prefetch(std::chrono::seconds(30)));
  CHECK(store->data_all_ready());
}

TEST_CASE("built image: a corrupt chunk fails only the ranges that need it",
          "[storage][built]") {
  auto compressor = GENERATE(as<std::string>{}, "none", "lz4_block", "zstd");
  INFO(compressor);
  BuiltImage img(compressor);
  const uint64_t big = img.nid("big.bin");
  // Chunk 2 of big.bin is compressible text (so really compressed unless
  // "none"); it is shared with copy.bin.
  auto refs = img.bootstrap->map_range(big, 2 * kChunkSize, 1);
  REQUIRE(refs.ok());
  REQUIRE(refs->size() == 1);
  const auto bad = refs->at(0);
  REQUIRE(bad.in_chunk_table);

  nydus::testing::TempDir blobs;
  auto blob = slurp(fs::path(img.blob_dir) / img.blob_id);
  blob[bad.compressed_offset + bad.compressed_size / 2] ^= 0x10;
  write_file(blobs / img.blob_id, blob);

  nydus::testing::TempDir work;
  auto cfg = img.config(work.path().string());
  cfg.backend.dir = blobs.path().string();
  {
    auto store = BlobStore::open(cfg, img.bootstrap);
    REQUIRE(store.ok());
    std::vector<uint8_t> buf(100);
    auto r = (*store)->read(big, 2 * kChunkSize + 10, buf, "/big.bin");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().to_errno() == EIO);
    CHECK_THAT(r.error().message(), Catch::Contains(fmt::format("ci={}", bad.ci_index)) &&
                                        Catch::Contains(img.blob_id) && Catch::Contains("/big.bin"));
    // copy.bin shares the chunk, so it fails the same way.
    CHECK_FALSE((*store)->read(img.nid("copy.bin"), 2 * kChunkSize, buf, "/copy.bin").ok());
    // Neighbouring chunks and other files are fine.
    const auto& want = img.files.at("big.bin");
    for (uint64_t off : {uint64_t(0), uint64_t(kChunkSize), uint64_t(3 * kChunkSize)}) {
      auto n = (*store)->read(big, off, buf, "/big.bin");
      REQUIRE(n.ok());
      CHECK(std::equal(buf.begin(), buf.end(), want.begin() + long(off)));
    }
    const auto& nested = img.files.at("dir/nested.bin");
    CHECK(read_whole(**store, img.nid("dir/nested.bin"), nested.size()) == nested);
  }
  auto map = nydus::storage::ChunkMap::open(
      (work / (img.blob_id + ".blob.data.chunk_map")).string(),
      img.bootstrap->blobs()[0].chunk_count, false);
  REQUIRE(map.ok());
  CHECK_FALSE((*map)->is_ready(bad.ci_index));
}
