// nydusd/fscache/registry.h and handler.h without the kernel: messages are
// fed to the handler, a fake device records the answers, and "anon fds" are
// ordinary temp files, against the real RAFS v6 fixture (tests/data).
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "nydusd/fscache/handler.h"
#include "nydusd/fscache/registry.h"
#include "nydusd/storage/storage.h"
#include "tests/support/temp_dir.h"

using namespace nydus;
using namespace nydus::fscache;

namespace {

const std::string kFixtureDir = NYDUS_TESTDATA_DIR "/rafs-v6-2.2";
const std::string kBoot = kFixtureDir + "/rafs-v6-2.2.boot";
const std::string kBlobId = "be7d77eeb719f70884758d1aa800ed0fb09d701aaec469964e9d54325f0d5fef";
constexpr uint64_t kLibRsNid = 133;
constexpr uint64_t kSyncIoNid = 136;

class FakeDevice final : public DeviceOps {
 public:
  Status write_command(std::string_view c) override {
    commands.emplace_back(c);
    return ok_status();
  }
  Status write_object(int fd, std::span<const uint8_t> data, uint64_t offset) override {
    // The kernel requires what direct I/O requires; so does the fake.
    if (offset % 4096 != 0 || data.size() % 4096 != 0 || reinterpret_cast<uintptr_t>(data.data()) % 4096 != 0) {
      return make_error(ErrorKind::kInvalidArgument, "unaligned cache file write");
    }
    if (::pwrite(fd, data.data(), data.size(), off_t(offset)) != ssize_t(data.size())) {
      return Error::from_errno(errno, "pwrite");
    }
    writes++;
    return ok_status();
  }
  Status complete_read(int fd, uint32_t msg_id) override {
    completed.emplace_back(fd, msg_id);
    if (reject_completions) return Error::from_errno(EINVAL, "READ_COMPLETE");
    return ok_status();
  }
  bool is_anon_fd(int fd) override { return anon_fds.count(fd) != 0; }

  std::vector<std::string> commands;
  std::vector<std::pair<int, uint32_t>> completed;
  std::set<int> anon_fds;
  int writes = 0;
  bool reject_completions = false;
};

// A temp file standing in for an anon fd; the handler takes ownership of the
// number, so the test keeps only the path.
struct CacheFile {
  std::string path;
  int fd;
};

CacheFile make_cache_file(const testing::TempDir& dir, const std::string& name) {
  std::string path = (dir / name).string();
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
  REQUIRE(fd >= 0);
  return {path, fd};
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool fd_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

std::span<const uint8_t> bytes(const std::string& s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

// The file's bytes as the FUSE path (storage BlobStore) reads them.
std::string file_via_storage(uint64_t nid, size_t size) {
  auto boot = rafs::Bootstrap::open(kBoot);
  REQUIRE(boot.ok());
  storage::StorageConfig cfg;
  cfg.backend.dir = kFixtureDir;
  cfg.cache.type = "";
  auto store = storage::BlobStore::open(cfg, *boot);
  REQUIRE(store.ok());
  std::string out(size, '\0');
  auto n = (*store)->read(nid, 0, std::span<uint8_t>(reinterpret_cast<uint8_t*>(out.data()), size), "test");
  REQUIRE(n.ok());
  REQUIRE(*n == size);
  return out;
}

class FailingSource final : public ObjectSource {
 public:
  uint64_t size() const override { return 8192; }
  Status read(uint64_t, std::span<uint8_t>) override { return make_error(ErrorKind::kIo, "backend down"); }
  std::string describe() const override { return "failing"; }
};

// What most cases arrange: a handler over a registry, a fake device and a
// read buffer; bind() puts the fixture bootstrap "rafs22" in a domain.
struct HandlerFixture {
  void bind(const std::string& domain, const std::string& cache_type = "fscache") {
    REQUIRE(registry.bind(domain, "rafs22", kBoot, kFixtureDir, cache_type, (dir / "work").string()).ok());
  }
  testing::TempDir dir{"fscache-handler"};
  BlobRegistry registry;
  FakeDevice dev;
  RequestHandler h{&registry, &dev};
  AlignedBuffer buf;
};

}  // namespace

TEST_CASE_METHOD(HandlerFixture, "fscache handler: serves the fixture bootstrap and blob like the kernel asks",
                 "[fscache][handler]") {
  const std::string cache_type = GENERATE(std::string("fscache"), std::string("filecache"));
  bind("dom1", cache_type);

  // Bootstrap OPEN: answered with the file size (20 480).
  CacheFile boot = make_cache_file(dir, "boot.cache");
  h.handle(bytes(build_open_message(0, 1, "erofs,dom1", "rafs22", uint32_t(boot.fd))), buf);
  REQUIRE(dev.commands == std::vector<std::string>{"copen 0,20480"});
  CHECK(fd_open(boot.fd));
  CHECK(::fcntl(boot.fd, F_GETFD) & FD_CLOEXEC);

  // READ of block 0, then of the inode block.
  h.handle(bytes(build_read_message(1, 1, 0, 4096)), buf);
  h.handle(bytes(build_read_message(2, 1, 0x3000, 4096)), buf);
  REQUIRE(dev.completed.size() == 2);
  CHECK(dev.completed[0] == std::make_pair(boot.fd, 1u));
  CHECK(dev.completed[1] == std::make_pair(boot.fd, 2u));
  std::string boot_bytes = read_file(kBoot);
  std::string cached = read_file(boot.path);
  REQUIRE(cached.size() == 0x4000);
  CHECK(cached.substr(0, 4096) == boot_bytes.substr(0, 4096));
  CHECK(cached.substr(0x3000, 4096) == boot_bytes.substr(0x3000, 4096));

  // Data blob OPEN: the uncompressed size (0x9000).
  CacheFile blob = make_cache_file(dir, "blob.cache");
  h.handle(bytes(build_open_message(3, 2, "erofs,dom1", kBlobId, uint32_t(blob.fd))), buf);
  CHECK(dev.commands.back() == "copen 3,36864");

  // The kernel's READs for lib.rs and sync_io.rs (facts §2.6).
  h.handle(bytes(build_read_message(4, 2, 0, 0x5000)), buf);
  h.handle(bytes(build_read_message(5, 2, 0x5000, 0x4000)), buf);
  CHECK(dev.completed.size() == 4);
  CHECK(h.metrics().read_errors == 0);
  std::string data = read_file(blob.path);
  REQUIRE(data.size() == 0x9000);
  const std::string lib_rs = file_via_storage(kLibRsNid, 16931);
  const std::string sync_io = file_via_storage(kSyncIoNid, 13400);
  CHECK(lib_rs.rfind("// Copyright (C) 2020 Alibaba Cloud", 0) == 0);
  CHECK(data.substr(0, 16931) == lib_rs);
  CHECK(data.substr(16931, 0x5000 - 16931) == std::string(0x5000 - 16931, '\0'));  // padding
  CHECK(data.substr(0x5000, 13400) == sync_io);

  if (cache_type == "filecache") {
    CHECK(std::filesystem::exists(dir / "work" / (kBlobId + ".blob.data")));
  }

  // An unaligned READ is widened to whole pages.
  h.handle(bytes(build_read_message(6, 2, 100, 10)), buf);
  CHECK(dev.completed.back().second == 6u);

  // A READ wholly beyond the object is completed without data.
  const int writes_before = dev.writes;
  h.handle(bytes(build_read_message(9, 2, 0x100000, 4096)), buf);
  CHECK(dev.completed.back().second == 9u);
  CHECK(dev.writes == writes_before);
  CHECK(h.metrics().read_errors == 1);

  // CLOSE closes the anon fd.
  h.handle(bytes(build_close_message(7, 2)), buf);
  CHECK_FALSE(fd_open(blob.fd));
  CHECK(h.object_count() == 1);
  h.handle(bytes(build_close_message(8, 1)), buf);
  CHECK_FALSE(fd_open(boot.fd));
  CHECK(h.object_count() == 0);
  CHECK(h.metrics().closes == 2);
}

TEST_CASE_METHOD(HandlerFixture, "fscache handler: a READ of part of a chunk fills the whole chunk",
                 "[fscache][handler]") {
  bind("dom1");
  CacheFile blob = make_cache_file(dir, "blob.cache");
  h.handle(bytes(build_open_message(1, 2, "erofs,dom1", kBlobId, uint32_t(blob.fd))), buf);
  // One page in the middle of sync_io.rs's chunk [0x5000, 0x5000 + 13400):
  // the cache file gets the whole chunk, so the kernel asks for no more of it.
  h.handle(bytes(build_read_message(2, 2, 0x6000, 4096)), buf);
  REQUIRE(dev.completed.size() == 1);
  CHECK(h.metrics().read_errors == 0);
  CHECK(h.metrics().read_bytes == 0x9000 - 0x5000);
  std::string data = read_file(blob.path);
  REQUIRE(data.size() == 0x9000);
  CHECK(data.substr(0x5000, 13400) == file_via_storage(kSyncIoNid, 13400));
  CHECK(data.substr(0, 0x5000) == std::string(0x5000, '\0'));  // chunk 0: not read, a hole

  // A bootstrap READ is not widened.
  CacheFile boot = make_cache_file(dir, "boot.cache");
  h.handle(bytes(build_open_message(3, 1, "erofs,dom1", "rafs22", uint32_t(boot.fd))), buf);
  h.handle(bytes(build_read_message(4, 1, 0x1000, 4096)), buf);
  CHECK(read_file(boot.path).size() == 0x2000);
}

TEST_CASE_METHOD(HandlerFixture,
                 "fscache handler: unknown OPENs are refused and READs of unknown objects are not completed",
                 "[fscache][handler]") {
  bind("dom1");

  CacheFile a = make_cache_file(dir, "a");
  h.handle(bytes(build_open_message(10, 1, "erofs,dom2", "rafs22", uint32_t(a.fd))), buf);  // other domain
  CacheFile b = make_cache_file(dir, "b");
  h.handle(bytes(build_open_message(11, 2, "erofs,dom1", "nosuch", uint32_t(b.fd))), buf);  // unknown cookie
  CacheFile c = make_cache_file(dir, "c");
  h.handle(bytes(build_open_message(12, 3, "nfs,dom1", "rafs22", uint32_t(c.fd))), buf);   // not EROFS
  CHECK(dev.commands == std::vector<std::string>{"copen 10,-2", "copen 11,-2", "copen 12,-2"});
  CHECK_FALSE(fd_open(a.fd));
  CHECK_FALSE(fd_open(b.fd));
  CHECK_FALSE(fd_open(c.fd));
  CHECK(h.metrics().opens_refused == 3);

  h.handle(bytes(build_read_message(13, 42, 0, 4096)), buf);
  CHECK(dev.completed.empty());
  CHECK(h.metrics().read_unknown_object == 1);
}

TEST_CASE_METHOD(HandlerFixture, "fscache handler: malformed messages", "[fscache][handler]") {
  bind("d");

  // An OPEN whose keys do not add up but whose fd is an anon fd: closed, -EINVAL.
  CacheFile a = make_cache_file(dir, "a");
  dev.anon_fds.insert(a.fd);
  std::string m = build_open_message(20, 1, "erofs,d", "rafs22", uint32_t(a.fd));
  uint32_t bad = 99;
  std::memcpy(m.data() + 20, &bad, 4);
  h.handle(bytes(m), buf);
  CHECK_FALSE(fd_open(a.fd));
  CHECK(dev.commands == std::vector<std::string>{"copen 20,-22"});

  // The same with an fd that is not an anon fd: left alone.
  dev.anon_fds.clear();  // (b may get a's old number)
  CacheFile b = make_cache_file(dir, "b");
  m = build_open_message(21, 1, "erofs,d", "rafs22", uint32_t(b.fd));
  std::memcpy(m.data() + 20, &bad, 4);
  h.handle(bytes(m), buf);
  CHECK(fd_open(b.fd));
  ::close(b.fd);

  // Garbage of every short size.
  for (size_t n = 0; n < 40; ++n) h.handle(bytes(std::string(n, '\xff')), buf);
  CHECK(h.metrics().malformed == 42);
  CHECK(h.object_count() == 0);
}

TEST_CASE("fscache handler: a READ that cannot be served is completed without data", "[fscache][handler]") {
  testing::TempDir dir("fscache-handler");
  BlobRegistry registry([](const BlobEntry&, std::shared_ptr<const rafs::Bootstrap>, const rafs::BlobInfo&)
                            -> Result<std::shared_ptr<ObjectSource>> {
    return std::shared_ptr<ObjectSource>(std::make_shared<FailingSource>());
  });
  REQUIRE(registry.bind("d", "rafs22", kBoot, kFixtureDir, "fscache", (dir / "work").string()).ok());
  FakeDevice dev;
  RequestHandler h(&registry, &dev);
  AlignedBuffer buf;
  CacheFile blob = make_cache_file(dir, "blob");
  h.handle(bytes(build_open_message(1, 5, "erofs,d", kBlobId, uint32_t(blob.fd))), buf);
  CHECK(dev.commands.back() == "copen 1,8192");
  h.handle(bytes(build_read_message(2, 5, 0, 4096)), buf);
  REQUIRE(dev.completed.size() == 1);
  CHECK(dev.completed[0].second == 2u);
  CHECK(h.metrics().read_errors == 1);
  CHECK(dev.writes == 0);

  // Another bootstrap of the domain describing the blob with another size
  // cannot share the object.
  auto mismatch = registry.bind("d", "other", kBoot, kFixtureDir, "fscache", (dir / "work").string());
  REQUIRE_FALSE(mismatch.ok());
  CHECK(mismatch.error().kind() == ErrorKind::kCorrupt);

  // A completion the kernel rejects (already dropped) is only counted.
  dev.reject_completions = true;
  h.handle(bytes(build_read_message(3, 5, 0, 4096)), buf);
  CHECK(h.metrics().completions_rejected == 1);
}

TEST_CASE_METHOD(HandlerFixture, "fscache handler: objects survive an unbind and can be handed over",
                 "[fscache][handler]") {
  bind("d");
  CacheFile blob = make_cache_file(dir, "blob");
  h.handle(bytes(build_open_message(1, 7, "erofs,d", kBlobId, uint32_t(blob.fd))), buf);
  REQUIRE(registry.unbind("d").ok());
  h.handle(bytes(build_read_message(2, 7, 0x5000, 0x4000)), buf);
  CHECK(h.metrics().read_errors == 0);
  CHECK(dev.completed.size() == 1);

  auto objs = h.objects();
  REQUIRE(objs.size() == 1);
  CHECK(objs[0].object_id == 7);
  CHECK(objs[0].cookie == kBlobId);
  CHECK(objs[0].domain == "d");

  // A successor adopts a dup of the anon fd for an object it serves.
  BlobRegistry next;
  REQUIRE(next.bind("d", "rafs22", kBoot, kFixtureDir, "fscache", (dir / "work").string()).ok());
  RequestHandler h2(&next, &dev);
  CHECK(h2.adopt_object(7, "d", kBlobId, UniqueFd(::dup(objs[0].anon_fd))).ok());
  CHECK_FALSE(h2.adopt_object(8, "d", "nosuch", UniqueFd(::dup(objs[0].anon_fd))).ok());
  h2.handle(bytes(build_read_message(3, 7, 0, 0x5000)), buf);
  CHECK(h2.metrics().read_errors == 0);
  CHECK(dev.completed.back().second == 3u);
}

TEST_CASE("fscache registry: bind, share, unbind, list", "[fscache][registry]") {
  testing::TempDir dir("fscache-registry");
  const std::string work = (dir / "work").string();
  BlobRegistry r;
  REQUIRE(r.bind("dom1", "a", kBoot, kFixtureDir, "fscache", work).ok());
  REQUIRE(r.bind("dom1", "b", kBoot, kFixtureDir, "fscache", work).ok());
  REQUIRE(r.bind("", "c", kBoot, kFixtureDir, "fscache", work).ok());
  CHECK(r.bootstrap_count() == 3);
  CHECK(r.data_blob_count() == 2);  // one per domain: dom1 shares it

  auto again = r.bind("dom1", "a", kBoot, kFixtureDir, "fscache", work);
  REQUIRE_FALSE(again.ok());
  CHECK(again.error().kind() == ErrorKind::kAlreadyExists);
  // The id of a data blob of the domain cannot become a bootstrap id.
  CHECK_FALSE(r.bind("dom1", kBlobId, kBoot, kFixtureDir, "fscache", work).ok());
  // A missing bootstrap or a non-bootstrap file is refused and leaves nothing behind.
  CHECK_FALSE(r.bind("dom2", "x", (dir / "nope").string(), kFixtureDir, "fscache", work).ok());
  CHECK_FALSE(r.bind("dom2", "x", kFixtureDir + "/" + kBlobId, kFixtureDir, "fscache", work).ok());
  CHECK(r.bootstrap_count() == 3);

  auto listed = r.list();
  REQUIRE(listed.size() == 3);
  CHECK(listed[0].id == "a");
  CHECK(listed[1].id == "b");
  CHECK(listed[2].id == "c");
  CHECK(r.list("dom1").size() == 2);

  CHECK(r.lookup("dom1", "a").is_bootstrap);
  CHECK(r.lookup("dom1", kBlobId).source);
  CHECK_FALSE(r.lookup("dom1", kBlobId).is_bootstrap);
  CHECK(r.lookup("c", "c").source);  // no domain_id: the fsid names the volume
  CHECK(r.lookup("c", kBlobId).source);
  CHECK_FALSE(r.lookup("dom1", "c").source);
  CHECK_FALSE(r.lookup("dom9", "a").source);

  // A data blob is released with its last bootstrap, not directly.
  auto direct = r.unbind("dom1", kBlobId);
  REQUIRE_FALSE(direct.ok());
  CHECK(direct.error().kind() == ErrorKind::kFailedPrecondition);
  REQUIRE(r.unbind("dom1", "a").ok());
  CHECK(r.lookup("dom1", kBlobId).source);
  REQUIRE(r.unbind("dom1", "b").ok());
  CHECK_FALSE(r.lookup("dom1", kBlobId).source);
  CHECK(r.unbind("dom1", "b").error().kind() == ErrorKind::kNotFound);

  // Without a domain, the blob id names it.
  REQUIRE(r.unbind("", "c").ok());
  CHECK(r.bootstrap_count() == 0);
  CHECK(r.data_blob_count() == 0);
  CHECK_FALSE(r.unbind("", std::nullopt).ok());

  REQUIRE(r.bind("dom3", "z", kBoot, kFixtureDir, "fscache", work).ok());
  REQUIRE(r.unbind("dom3").ok());
  CHECK(r.bootstrap_count() == 0);
  CHECK(r.unbind("dom3").error().kind() == ErrorKind::kNotFound);
}
