// Mechanical corruption sweeps over the reference bootstrap: every
// truncation, every single-bit flip in the first two blocks (superblock,
// ext superblock, device table, blob table) and random byte scribbles over
// the rest (meta area, inodes, dirents, chunk indexes, chunk table). Each
// variant is opened and, when it opens, every accessor is driven over the
// reachable tree (tests/fuzz/bootstrap_exercise.h): errors must carry a
// message and nothing may crash (run under ASan: NYDUS_SANITIZE).
#include <catch2/catch.hpp>
#include <random>

#include "nydusd/rafs/bootstrap.h"
#include "tests/fuzz/bootstrap_exercise.h"
#include "tests/unit/rafs/sample_image.h"

using namespace nydus;
using namespace nydus::rafs;
using namespace nydus::rafs::testing;

namespace {

struct Tally {
  size_t rejected = 0;
  size_t opened = 0;
  size_t tree_valid = 0;
};

void try_variant(std::vector<uint8_t> bytes, Tally& t) {
  auto b = Bootstrap::from_bytes(std::move(bytes), "variant");
  if (!b.ok()) {
    invariant(!b.error().message().empty(), "open error without a message");
    ++t.rejected;
    return;
  }
  ++t.opened;
  if (exercise_bootstrap(**b).tree_valid) ++t.tree_valid;
}

}  // namespace

TEST_CASE("rafs: the pristine sample passes the exercise with a valid tree", "[rafs][sweep]") {
  auto b = Bootstrap::from_bytes(sample_bytes());
  REQUIRE(b.ok());
  auto stats = exercise_bootstrap(**b);
  CHECK(stats.tree_valid);
  CHECK(stats.inodes == 3);
  CHECK(stats.entries == 4);
  CHECK(stats.chunks == 2);
}

TEST_CASE("rafs: every truncation of the bootstrap is rejected", "[rafs][sweep]") {
  const auto full = sample_bytes();
  for (size_t len = 0; len < full.size(); ++len) {
    auto b = Bootstrap::from_bytes(std::vector<uint8_t>(full.begin(), full.begin() + len), "truncated");
    REQUIRE_FALSE(b.ok());
    CHECK(b.error().kind() == ErrorKind::kCorrupt);
  }
}

TEST_CASE("rafs: every bit flip in the first two blocks is rejected or served safely", "[rafs][sweep]") {
  const auto full = sample_bytes();
  Tally t;
  for (size_t off = 0; off < 2 * 4096; ++off) {
    for (int bit = 0; bit < 8; ++bit) {
      auto bytes = full;
      bytes[off] ^= uint8_t(1 << bit);
      try_variant(std::move(bytes), t);
    }
  }
  INFO("rejected " << t.rejected << ", opened " << t.opened << ", valid tree " << t.tree_valid);
  CHECK(t.rejected + t.opened == 2 * 4096 * 8);
  // Every bit of the superblock's checked fields and of the blob table's
  // identity fields must be caught; most of the rest is padding.
  CHECK(t.rejected > 1500);
  WARN("bit flips: rejected " << t.rejected << ", opened " << t.opened << ", valid tree " << t.tree_valid);
}

TEST_CASE("rafs: random byte scribbles over the meta area and tables are rejected or served safely", "[rafs][sweep]") {
  const auto full = sample_bytes();
  std::mt19937_64 rng(0x5EED);
  std::uniform_int_distribution<size_t> pos(2 * 4096, full.size() - 1);
  std::uniform_int_distribution<size_t> hot(0x3000, 0x3160);  // inodes, dirents, chunk indexes
  std::uniform_int_distribution<int> count(1, 8);
  Tally t;
  for (int i = 0; i < 30000; ++i) {
    auto bytes = full;
    const int n = count(rng);
    for (int k = 0; k < n; ++k) bytes[(i % 2) ? pos(rng) : hot(rng)] = uint8_t(rng());
    try_variant(std::move(bytes), t);
  }
  CHECK(t.rejected + t.opened == 30000);
  WARN("scribbles: rejected " << t.rejected << ", opened " << t.opened << ", valid tree " << t.tree_valid);
}
