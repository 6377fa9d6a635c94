#include <catch2/catch.hpp>

#include <cstring>

#include "nydusd/fuse/init_state.h"
#include "nydusd/fuse/node_id.h"

using namespace nydus::fuse;

TEST_CASE("node ids carry the mount index in the top byte", "[node_id]") {
  CHECK(make_node_id(1, 128) == (uint64_t{1} << 56 | 128));
  CHECK(make_node_id(255, kInoMask) == (~uint64_t{0}));
  auto id = *make_node_id(7, 4242);
  CHECK(node_mount_index(id) == 7);
  CHECK(node_ino(id) == 4242);
}

TEST_CASE("node ids reject inode numbers beyond 56 bits and the zero id", "[node_id]") {
  CHECK_FALSE(make_node_id(1, uint64_t{1} << 56));
  CHECK_FALSE(make_node_id(kPseudoIndex, 0));
  CHECK(make_node_id(1, 0) == (uint64_t{1} << 56));  // nid 0 of a mount is a valid id
}

TEST_CASE("pseudo fs ids are plain numbers and the root is FUSE_ROOT_ID", "[node_id]") {
  CHECK(kRootNodeId == 1);
  CHECK(node_mount_index(kRootNodeId) == kPseudoIndex);
  CHECK(make_node_id(kPseudoIndex, 5) == 5u);
}

namespace {

std::vector<uint8_t> bytes_of(const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  return {b, b + n};
}

}  // namespace

TEST_CASE("capture_init joins 64-bit flags and takes the negotiated values", "[init_state]") {
  abi::InitIn in{};
  in.major = 7;
  in.minor = 45;
  in.max_readahead = 131072;
  in.flags = static_cast<uint32_t>(abi::init_flags::kInitExt | abi::init_flags::kAsyncRead);
  in.flags2 = static_cast<uint32_t>(abi::init_flags::kHasResend >> 32);
  abi::InitOut out{};
  out.major = 7;
  out.minor = 38;
  out.max_readahead = 131072;
  out.flags = static_cast<uint32_t>(abi::init_flags::kInitExt | abi::init_flags::kAsyncRead);
  out.max_write = 1 << 20;
  out.time_gran = 1;
  out.max_pages = 256;
  auto state = capture_init(bytes_of(&in, sizeof(in)), bytes_of(&out, sizeof(out)));
  REQUIRE(state.ok());
  CHECK(state->kernel_minor == 45);
  CHECK(state->proto_minor == 38);
  CHECK(state->has_resend());
  CHECK((state->kernel_flags & abi::init_flags::kHasResend) != 0);
  CHECK((state->flags & abi::init_flags::kHasResend) == 0);
  CHECK(state->max_write == (1u << 20));
  CHECK(state->time_gran == 1);
  CHECK(state->max_pages == 256);
}

TEST_CASE("capture_init: flags2 only counts with INIT_EXT -- short payloads are corrupt", "[init_state]") {
  abi::InitIn in{};
  in.major = 7;
  in.minor = 45;
  in.flags2 = 0xffffffff;  // without INIT_EXT it means nothing
  abi::InitOut out{};
  out.major = 7;
  out.minor = 31;
  auto state = capture_init(bytes_of(&in, sizeof(in)), bytes_of(&out, sizeof(out)));
  REQUIRE(state.ok());
  CHECK_FALSE(state->has_resend());
  CHECK_FALSE(capture_init(bytes_of(&in, 8), bytes_of(&out, sizeof(out))).ok());
  CHECK_FALSE(capture_init(bytes_of(&in, sizeof(in)), bytes_of(&out, 8)).ok());
  // A pre-7.36 kernel sends only 16 bytes.
  CHECK(capture_init(bytes_of(&in, 16), bytes_of(&out, sizeof(out))).ok());
}

TEST_CASE("the read buffer follows max_write with the kernel's minimum", "[init_state]") {
  CHECK(required_read_buffer(0) == 8192);
  CHECK(required_read_buffer(4096) == 8192);
  CHECK(required_read_buffer(131072) == 131152);
  CHECK(required_read_buffer(1 << 20) == (1u << 20) + 80);
}

TEST_CASE("the synthetic INIT replays the negotiated flags under a reserved unique", "[init_state]") {
  FuseInitState state;
  state.kernel_major = 7;
  state.kernel_minor = 45;
  state.max_readahead = 65536;
  state.flags = abi::init_flags::kAsyncRead | abi::init_flags::kPassthrough;
  state.kernel_flags = state.flags | abi::init_flags::kNoOpenSupport | abi::init_flags::kBigWrites;
  auto bytes = build_synthetic_init(state);
  REQUIRE(bytes.size() == sizeof(abi::InHeader) + sizeof(abi::InitIn));
  abi::InHeader header;
  abi::InitIn in;
  std::memcpy(&header, bytes.data(), sizeof(header));
  std::memcpy(&in, bytes.data() + sizeof(header), sizeof(in));
  CHECK(header.len == bytes.size());
  CHECK(header.opcode == abi::kOpInit);
  CHECK(header.unique == kSyntheticInitUnique);
  CHECK((header.unique & 1) == 0);
  CHECK(in.major == 7);
  CHECK(in.minor == 45);
  CHECK(in.max_readahead == 65536);
  uint64_t offered = in.flags | uint64_t{in.flags2} << 32;
  // Negotiated flags and capability-only bits; never an offered-but-unwanted feature.
  CHECK(offered == (state.flags | abi::init_flags::kNoOpenSupport | abi::init_flags::kInitExt));
}
