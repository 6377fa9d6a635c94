// nydusd/fscache/protocol.h: parsing kernel messages, including short,
// inconsistent and hostile ones, and formatting commands.
#include <catch2/catch.hpp>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "nydusd/fscache/protocol.h"

using namespace nydus;
using namespace nydus::fscache;

namespace {

std::span<const uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

void put_u32(std::string* s, size_t off, uint32_t v) { std::memcpy(s->data() + off, &v, 4); }

}  // namespace

TEST_CASE("fscache protocol: a real OPEN decodes byte for byte", "[fscache][protocol]") {
  // fscache-facts.md §2.2: fsid "mk", 43 bytes.
  const uint8_t wire[] = {0, 0, 0, 0, 0, 0, 0, 0, 0x2b, 0, 0, 0, 1, 0, 0, 0,  // header
                          9, 0, 0, 0, 2, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0,     // open body
                          'e', 'r', 'o', 'f', 's', ',', 'm', 'k', 0, 'm', 'k'};
  static_assert(sizeof(wire) == 43);
  auto r = parse_request(std::span<const uint8_t>(wire, sizeof(wire)));
  REQUIRE(r.ok());
  auto* open = std::get_if<OpenRequest>(&*r);
  REQUIRE(open);
  CHECK(open->header.msg_id == 0);
  CHECK(open->header.object_id == 1);
  CHECK(open->volume_key == "erofs,mk");
  CHECK(open->cookie_key == "mk");
  CHECK(open->fd == 5);
  CHECK(open->flags == 0);
  // The builder produces the same bytes.
  std::string built = build_open_message(0, 1, "erofs,mk", "mk", 5);
  CHECK(built == std::string(reinterpret_cast<const char*>(wire), sizeof(wire)));
}

TEST_CASE("fscache protocol: READ and CLOSE", "[fscache][protocol]") {
  auto r = parse_request(bytes(build_read_message(7, 3, 0x5000, 0x4000)));
  REQUIRE(r.ok());
  auto* read = std::get_if<ReadRequest>(&*r);
  REQUIRE(read);
  CHECK(read->header.msg_id == 7);
  CHECK(read->header.object_id == 3);
  CHECK(read->offset == 0x5000);
  CHECK(read->length == 0x4000);

  auto c = parse_request(bytes(build_close_message(9, 4)));
  REQUIRE(c.ok());
  auto* close = std::get_if<CloseRequest>(&*c);
  REQUIRE(close);
  CHECK(close->header.msg_id == 9);
  CHECK(close->header.object_id == 4);
}

TEST_CASE("fscache protocol: short and inconsistent messages are refused", "[fscache][protocol]") {
  SECTION("shorter than a header") {
    for (size_t n = 0; n < kHeaderSize; ++n) {
      std::string m(n, '\0');
      auto r = parse_request(bytes(m));
      REQUIRE_FALSE(r.ok());
      CHECK(r.error().kind() == ErrorKind::kCorrupt);
    }
  }
  SECTION("len differs from the bytes read") {
    std::string m = build_read_message(1, 1, 0, 4096);
    put_u32(&m, 8, 31);
    CHECK_FALSE(parse_request(bytes(m)).ok());
    put_u32(&m, 8, 33);
    CHECK_FALSE(parse_request(bytes(m)).ok());
  }
  SECTION("len above the maximum") {
    std::string m(kMaxMessageSize + 8, '\0');
    put_u32(&m, 8, uint32_t(m.size()));
    CHECK_FALSE(parse_request(bytes(m)).ok());
  }
  SECTION("READ with a wrong body size") {
    std::string m = build_read_message(1, 1, 0, 4096);
    m.resize(24);
    put_u32(&m, 8, 24);
    CHECK_FALSE(parse_request(bytes(m)).ok());
  }
  SECTION("READ whose range overflows") {
    auto r = parse_request(bytes(build_read_message(1, 1, UINT64_MAX - 10, 4096)));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().kind() == ErrorKind::kCorrupt);
  }
  SECTION("OPEN truncated in its fixed part") {
    std::string m = build_open_message(1, 1, "erofs,d", "c", 7);
    m.resize(24);
    put_u32(&m, 8, 24);
    CHECK_FALSE(parse_request(bytes(m)).ok());
    CHECK(open_fd_of_malformed(bytes(m)) == -1);
  }
  SECTION("OPEN key sizes that do not add up") {
    std::string m = build_open_message(1, 1, "erofs,d", "cookie", 7);
    put_u32(&m, 20, 100);  // cookie_key_size beyond the message
    CHECK_FALSE(parse_request(bytes(m)).ok());
    put_u32(&m, 20, 6);
    put_u32(&m, 16, 0xFFFFFFF0u);  // volume size overflowing the sum
    CHECK_FALSE(parse_request(bytes(m)).ok());
    // The fd is still reported so the caller can close it.
    CHECK(open_fd_of_malformed(bytes(m)) == 7);
  }
  SECTION("OPEN volume key without its NUL, with an embedded NUL, or empty keys") {
    std::string m = build_open_message(1, 1, "erofs,d", "c", 7);
    m[kHeaderSize + kOpenBodySize + 7] = 'x';  // the terminator
    CHECK_FALSE(parse_request(bytes(m)).ok());
    std::string e = build_open_message(1, 1, std::string("erofs\0d", 7), "c", 7);
    CHECK_FALSE(parse_request(bytes(e)).ok());
    std::string c = build_open_message(1, 1, "erofs,d", std::string("a\0b", 3), 7);
    CHECK_FALSE(parse_request(bytes(c)).ok());
    CHECK_FALSE(parse_request(bytes(build_open_message(1, 1, "", "c", 7))).ok());
    CHECK_FALSE(parse_request(bytes(build_open_message(1, 1, "erofs,d", "", 7))).ok());
  }
  SECTION("OPEN with an fd above INT_MAX") {
    std::string m = build_open_message(1, 1, "erofs,d", "c", 0x80000000u);
    CHECK_FALSE(parse_request(bytes(m)).ok());
    CHECK(open_fd_of_malformed(bytes(m)) == -1);
  }
  SECTION("unknown opcode") {
    std::string m = build_close_message(1, 1);
    put_u32(&m, 4, 9);
    auto r = parse_request(bytes(m));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().kind() == ErrorKind::kUnsupported);
  }
}

TEST_CASE("fscache protocol: every truncation of valid messages is handled", "[fscache][protocol]") {
  // Cut each message at every length, fixing up len so only the body is
  // short: parsing must fail cleanly (no crash, no over-read under ASan).
  for (const std::string& full : {build_open_message(3, 2, "erofs,domain", "be7d77ee", 9),
                                  build_read_message(3, 2, 4096, 8192)}) {
    for (size_t n = kHeaderSize; n < full.size(); ++n) {
      std::string m = full.substr(0, n);
      put_u32(&m, 8, uint32_t(n));
      CHECK_FALSE(parse_request(bytes(m)).ok());
    }
  }
}

TEST_CASE("fscache protocol: volume keys and commands", "[fscache][protocol]") {
  auto d = domain_of_volume_key("erofs,dom1");
  REQUIRE(d.ok());
  CHECK(*d == "dom1");
  CHECK(*domain_of_volume_key("erofs,a,b") == "a,b");
  CHECK_FALSE(domain_of_volume_key("erofs,").ok());
  CHECK_FALSE(domain_of_volume_key("erofs").ok());
  CHECK_FALSE(domain_of_volume_key("nfs,x").ok());
  CHECK_FALSE(domain_of_volume_key("").ok());

  CHECK(format_copen(5, 36864) == "copen 5,36864");
  CHECK(format_copen(0, -2) == "copen 0,-2");
  CHECK(format_copen(4294967295u, 0) == "copen 4294967295,0");
  CHECK(kIocReadComplete == 0x40049801);
}

TEST_CASE("fscache protocol: random messages never crash the parser", "[fscache][protocol]") {
  // Header-consistent random bytes (len = size) of every opcode, so parsing
  // gets past the header into the bodies; run under ASan/UBSan in CI.
  std::mt19937 rng(20261204);
  for (int i = 0; i < 20000; ++i) {
    size_t n = kHeaderSize + rng() % (kMaxMessageSize - kHeaderSize + 1);
    std::string m(n, '\0');
    for (auto& c : m) c = char(rng() & 0xFF);
    put_u32(&m, 4, rng() % 4);
    put_u32(&m, 8, uint32_t(n));
    if (rng() % 2 == 0 && n >= 32) {
      // Plausible key sizes.
      const uint32_t v = rng() % uint32_t(n - 31);
      put_u32(&m, 16, v);
      put_u32(&m, 20, uint32_t(n - 32 - v));
    }
    auto r = parse_request(bytes(m));
    if (r.ok()) {
      if (auto* open = std::get_if<OpenRequest>(&*r)) {
        CHECK(open->volume_key.size() + 1 + open->cookie_key.size() + 32 == n);
      }
    }
    (void)open_fd_of_malformed(bytes(m));
  }
}
