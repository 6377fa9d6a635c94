// What the kernel and nydusd agreed on in FUSE_INIT, captured once per
// connection. The kernel never sends INIT again on a connection, so a
// successor taking over the /dev/fuse fd must be told this state: it sizes its
// read buffer from max_write, feeds libfuse a synthetic INIT built from it,
// and decides from has_resend() whether FUSE_NOTIFY_RESEND can recover the
// requests its predecessor had read (../shared/docs/fuse-takeover-facts.md §1, §3).
//
// The capture is wire-level: the raw fuse_init_in the kernel sent and the raw
// fuse_init_out libfuse answered (libfuse 3.14's fuse_conn_info holds neither
// the 64-bit kernel flags nor the negotiated reply).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"
#include "nydusd/fuse/fuse_abi.h"

namespace nydus::fuse {

struct FuseInitState {
  uint32_t kernel_major = 0;    // offered by the kernel
  uint32_t kernel_minor = 0;
  uint32_t proto_major = 0;     // negotiated: min(kernel, ours)
  uint32_t proto_minor = 0;
  uint64_t kernel_flags = 0;    // everything the kernel offered (flags | flags2 << 32)
  uint64_t flags = 0;           // what the reply enabled (flags | flags2 << 32)
  uint32_t max_write = 0;
  uint32_t max_readahead = 0;
  uint32_t time_gran = 0;
  uint16_t max_pages = 0;
  uint16_t max_background = 0;
  uint16_t congestion_threshold = 0;

  // Whether the kernel offered FUSE_HAS_RESEND (bit 39): it accepts
  // FUSE_NOTIFY_RESEND. No reply flag is needed to use it.
  bool has_resend() const { return (kernel_flags & abi::init_flags::kHasResend) != 0; }

  bool operator==(const FuseInitState&) const = default;
};

// Builds the state from the raw INIT request payload (after the in-header)
// and the raw INIT reply payload (after the out-header). Sizes follow the
// protocol's compat rules; a payload too short for its minor is kCorrupt.
Result<FuseInitState> capture_init(std::span<const uint8_t> init_in,
                                   std::span<const uint8_t> init_out);

// The smallest read buffer the kernel accepts for a connection with this
// max_write: max(8192, 40 (in_header) + 40 (write_in) + max_write). A smaller
// buffer makes read(2) of /dev/fuse fail with EINVAL.
size_t required_read_buffer(uint32_t max_write);

// The unique of a synthetic INIT fed to libfuse on a taken-over connection:
// even (bit 0 marks interrupts), non-zero (0 is a notification), never issued
// by the kernel. Its reply must be swallowed, never written to the kernel.
inline constexpr uint64_t kSyntheticInitUnique = 1ull << 62;

// A complete FUSE_INIT request (header + fuse_init_in) that replays `state`
// to libfuse on a connection whose INIT was answered by a predecessor: the
// kernel's major/minor, and as flags only what was negotiated (plus the
// kernel's capability-only bits, e.g. zero-message open), so libfuse never
// "wants" a feature the kernel did not enable.
std::vector<uint8_t> build_synthetic_init(const FuseInitState& state);

nlohmann::json to_json(const FuseInitState& state);

}  // namespace nydus::fuse
