#include "nydusd/fuse/init_state.h"

#include <algorithm>
#include <cstring>

namespace nydus::fuse {

namespace {

uint64_t join_flags(uint32_t flags, uint32_t flags2) {
  uint64_t all = flags;
  if (all & abi::init_flags::kInitExt) all |= static_cast<uint64_t>(flags2) << 32;
  return all;
}

}  // namespace

Result<FuseInitState> capture_init(std::span<const uint8_t> init_in,
                                   std::span<const uint8_t> init_out) {
  abi::InitIn in{};
  if (init_in.size() < abi::kInitInCompatSize) {
    return make_error(ErrorKind::kCorrupt, "FUSE_INIT request of {} bytes is too short",
                      init_in.size());
  }
  std::memcpy(&in, init_in.data(), std::min(init_in.size(), sizeof(in)));
  // flags2 exists only in the extended request (7.36+).
  if (init_in.size() < offsetof(abi::InitIn, flags2) + sizeof(in.flags2)) in.flags2 = 0;

  abi::InitOut out{};
  if (init_out.size() < abi::kInitOutCompat22Size) {
    return make_error(ErrorKind::kCorrupt, "FUSE_INIT reply of {} bytes is too short",
                      init_out.size());
  }
  std::memcpy(&out, init_out.data(), std::min(init_out.size(), sizeof(out)));
  if (init_out.size() < sizeof(out)) {
    out.max_pages = 0;
    out.flags2 = 0;
  }

  FuseInitState state;
  state.kernel_major = in.major;
  state.kernel_minor = in.minor;
  state.proto_major = std::min(in.major, out.major);
  state.proto_minor = in.major == out.major ? std::min(in.minor, out.minor) : out.minor;
  state.kernel_flags = join_flags(in.flags, in.flags2);
  state.flags = join_flags(out.flags, out.flags2);
  state.max_write = out.max_write;
  state.max_readahead = out.max_readahead;
  state.time_gran = out.time_gran;
  state.max_pages = out.max_pages;
  state.max_background = out.max_background;
  state.congestion_threshold = out.congestion_threshold;
  return state;
}

size_t required_read_buffer(uint32_t max_write) {
  constexpr size_t kWriteIn = 40;  // sizeof(struct fuse_write_in)
  return std::max<size_t>(abi::kMinReadBuffer, sizeof(abi::InHeader) + kWriteIn + max_write);
}

std::vector<uint8_t> build_synthetic_init(const FuseInitState& state) {
  abi::InHeader header{};
  abi::InitIn in{};
  header.len = sizeof(header) + sizeof(in);
  header.opcode = abi::kOpInit;
  header.unique = kSyntheticInitUnique;
  in.major = state.kernel_major;
  in.minor = state.kernel_minor;
  in.max_readahead = state.max_readahead;
  // Offer what was negotiated plus the capability-only bits the kernel had
  // offered (zero-message open); INIT_EXT carries the high half.
  uint64_t offer = state.flags | (state.kernel_flags & abi::init_flags::kCapabilityOnly) |
                   abi::init_flags::kInitExt;
  in.flags = static_cast<uint32_t>(offer);
  in.flags2 = static_cast<uint32_t>(offer >> 32);

  std::vector<uint8_t> bytes(header.len);
  std::memcpy(bytes.data(), &header, sizeof(header));
  std::memcpy(bytes.data() + sizeof(header), &in, sizeof(in));
  return bytes;
}

nlohmann::json to_json(const FuseInitState& s) {
  return {{"kernel_major", s.kernel_major}, {"kernel_minor", s.kernel_minor},
          {"proto_major", s.proto_major},   {"proto_minor", s.proto_minor},
          {"kernel_flags", s.kernel_flags}, {"flags", s.flags},
          {"max_write", s.max_write},       {"max_readahead", s.max_readahead},
          {"time_gran", s.time_gran},       {"max_pages", s.max_pages},
          {"max_background", s.max_background},
          {"congestion_threshold", s.congestion_threshold},
          {"has_resend", s.has_resend()}};
}

}  // namespace nydus::fuse
