#include "nydusd/storage/chunk_map.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include <catch2/catch.hpp>

#include "tests/support/temp_dir.h"

using nydus::storage::ChunkMap;
using nydus::storage::ChunkMapHeader;
using nydus::storage::chunk_map_file_size;
namespace fs = std::filesystem;

namespace {

std::vector<uint8_t> slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void spit(const fs::path& p, const std::vector<uint8_t>& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

}  // namespace

TEST_CASE("chunk map: created with header and zero bitmap, marks persist", "[storage][chunk_map]") {
  nydus::testing::TempDir dir;
  const std::string path = dir / "b.blob.data.chunk_map";
  {
    auto map = ChunkMap::open(path, 10, false);
    REQUIRE(map.ok());
    CHECK((*map)->rebuilt());
    for (uint32_t i = 0; i < 10; ++i) CHECK_FALSE((*map)->is_ready(i));
    (*map)->set_ready(0);
    (*map)->set_ready(9);
    CHECK((*map)->is_ready(0));
    CHECK((*map)->is_ready(9));
    CHECK_FALSE((*map)->all_ready());
  }
  auto bytes = slurp(path);
  REQUIRE(bytes.size() == chunk_map_file_size(10));
  REQUIRE(bytes.size() == 4096 + 2);
  ChunkMapHeader h;
  std::memcpy(&h, bytes.data(), sizeof(h));
  CHECK(h.magic == 0x424D4150);
  CHECK(h.version == 1);
  CHECK(h.magic2 == 0x434D4150);
  CHECK(h.chunk_count == 10);
  // Most significant bit first, as the reference lays it out.
  CHECK(bytes[4096] == 0x80);
  CHECK(bytes[4097] == 0x40);

  auto again = ChunkMap::open(path, 10, false);
  REQUIRE(again.ok());
  CHECK_FALSE((*again)->rebuilt());
  CHECK((*again)->is_ready(0));
  CHECK((*again)->is_ready(9));
  CHECK_FALSE((*again)->is_ready(5));
}

TEST_CASE("chunk map: all_ready is raised when the last chunk is marked", "[storage][chunk_map]") {
  nydus::testing::TempDir dir;
  const std::string path = dir / "m";
  auto map = ChunkMap::open(path, 3, false);
  REQUIRE(map.ok());
  for (uint32_t i = 0; i < 3; ++i) (*map)->set_ready(i);
  CHECK((*map)->all_ready());
  (*map)->clear_ready(1);
  CHECK_FALSE((*map)->all_ready());
  CHECK_FALSE((*map)->is_ready(1));
}

TEST_CASE("chunk map: a map that does not match is discarded and rebuilt", "[storage][chunk_map]") {
  nydus::testing::TempDir dir;
  const std::string path = dir / "m";
  auto prepare = [&] {
    fs::remove(path);
    auto map = ChunkMap::open(path, 20, false);
    REQUIRE(map.ok());
    for (uint32_t i = 0; i < 20; i += 2) (*map)->set_ready(i);
  };

  SECTION("truncated") {
    prepare();
    fs::resize_file(path, 4096 + 1);
  }
  SECTION("extended") {
    prepare();
    fs::resize_file(path, 8192);
  }
  SECTION("empty") {
    prepare();
    fs::resize_file(path, 0);
  }
  SECTION("bad magic") {
    prepare();
    auto b = slurp(path);
    b[0] ^= 0xFF;
    spit(path, b);
  }
  SECTION("bad magic2") {
    prepare();
    auto b = slurp(path);
    b[8] ^= 0xFF;
    spit(path, b);
  }
  SECTION("other version") {
    prepare();
    auto b = slurp(path);
    b[4] = 2;
    spit(path, b);
  }
  SECTION("other chunk count, same file size") {
    prepare();
    auto b = slurp(path);
    b[16] = 19;  // 19 chunks also need 3 bitmap bytes
    spit(path, b);
  }
  SECTION("bits past the last chunk") {
    prepare();
    auto b = slurp(path);
    b[4096 + 2] |= 0x01;  // chunk 23 of a 20-chunk blob
    spit(path, b);
  }

  auto map = ChunkMap::open(path, 20, false);
  REQUIRE(map.ok());
  CHECK((*map)->rebuilt());
  for (uint32_t i = 0; i < 20; ++i) CHECK_FALSE((*map)->is_ready(i));
  CHECK(slurp(path).size() == chunk_map_file_size(20));
  // No temporary files are left behind.
  int files = 0;
  for (auto& e : fs::directory_iterator(dir.path())) files += e.is_regular_file();
  CHECK(files == 1);
}

TEST_CASE("chunk map: a different chunk count for the same blob is not trusted", "[storage][chunk_map]") {
  nydus::testing::TempDir dir;
  const std::string path = dir / "m";
  {
    auto map = ChunkMap::open(path, 8, false);
    REQUIRE(map.ok());
    (*map)->set_ready(3);
  }
  auto map = ChunkMap::open(path, 16, false);
  REQUIRE(map.ok());
  CHECK((*map)->rebuilt());
  CHECK_FALSE((*map)->is_ready(3));
}

TEST_CASE("chunk map: discard rebuilds even a valid map", "[storage][chunk_map]") {
  nydus::testing::TempDir dir;
  const std::string path = dir / "m";
  {
    auto map = ChunkMap::open(path, 4, false);
    REQUIRE(map.ok());
    (*map)->set_ready(1);
  }
  auto map = ChunkMap::open(path, 4, true);
  REQUIRE(map.ok());
  CHECK((*map)->rebuilt());
  CHECK_FALSE((*map)->is_ready(1));
}

TEST_CASE("chunk map: a stale all_ready flag is reset, the bits are kept", "[storage][chunk_map]") {
  nydus::testing::TempDir dir;
  const std::string path = dir / "m";
  {
    auto map = ChunkMap::open(path, 4, false);
    REQUIRE(map.ok());
    (*map)->set_ready(2);
  }
  auto b = slurp(path);
  uint32_t flag = nydus::storage::kChunkMapAllReady;
  std::memcpy(&b[12], &flag, 4);
  spit(path, b);
  auto map = ChunkMap::open(path, 4, false);
  REQUIRE(map.ok());
  CHECK_FALSE((*map)->rebuilt());
  CHECK_FALSE((*map)->all_ready());
  CHECK((*map)->is_ready(2));
}

TEST_CASE("chunk map: two processes share one map without losing bits", "[storage][chunk_map]") {
  nydus::testing::TempDir dir;
  const std::string path = dir / "m";
  constexpr uint32_t kChunks = 4096;
  auto map = ChunkMap::open(path, kChunks, false);
  REQUIRE(map.ok());

  // The child sets the odd chunks while we set the even ones, in the same
  // bytes: atomic byte updates on the shared mapping must keep both.
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    auto child = ChunkMap::open(path, kChunks, false);
    if (!child.ok() || (*child)->rebuilt()) ::_exit(2);
    for (uint32_t i = 1; i < kChunks; i += 2) (*child)->set_ready(i);
    ::_exit(0);
  }
  for (uint32_t i = 0; i < kChunks; i += 2) (*map)->set_ready(i);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);

  for (uint32_t i = 0; i < kChunks; ++i) REQUIRE((*map)->is_ready(i));
  CHECK((*map)->refresh_ready_count() == kChunks);
  CHECK((*map)->all_ready());
}

TEST_CASE("chunk map: a blob with no chunks has a header-only map", "[storage][chunk_map]") {
  nydus::testing::TempDir dir;
  auto map = ChunkMap::open(dir / "m", 0, false);
  REQUIRE(map.ok());
  CHECK(fs::file_size(dir / "m") == 4096);
}
