// The reference image tests/data/rafs-v6-2.2 (decoded in the format spec
// §20) and helpers to patch its bytes for corruption tests.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "nydusd/rafs/bootstrap.h"
#include "common/file_io.h"

namespace nydus::rafs::testing {

inline const std::string kSampleDir = std::string(NYDUS_TESTDATA_DIR) + "/rafs-v6-2.2";
inline const std::string kSampleBoot = kSampleDir + "/rafs-v6-2.2.boot";
inline const std::string kSampleBlobId = "be7d77eeb719f70884758d1aa800ed0fb09d701aaec469964e9d54325f0d5fef";
inline const std::string kSampleBlob = kSampleDir + "/" + kSampleBlobId;

// Byte offsets of structures in the sample bootstrap (spec §20).
inline constexpr uint64_t kSbOff = 0x400;
inline constexpr uint64_t kExtOff = 0x480;
inline constexpr uint64_t kSlotOff = 0x580;
inline constexpr uint64_t kBlobEntryOff = 0x1000;
inline constexpr uint64_t kChunkTableOff = 0x4000;
inline constexpr uint64_t kSampleRootNid = 128, kRootOff = 0x3000;     // dir, extended, inline dirents
inline constexpr uint64_t kDirentsOff = 0x3040;                  // ".", "..", "lib.rs", "sync_io.rs"
inline constexpr uint64_t kLibNid = 133, kLibOff = 0x30A0, kLibIndexOff = 0x30E0;
inline constexpr uint64_t kSyncNid = 136, kSyncOff = 0x3100, kSyncIndexOff = 0x3140;
inline constexpr uint64_t kLibSize = 16931, kSyncSize = 13400;

inline std::vector<uint8_t> sample_bytes() {
  auto r = read_file(kSampleBoot, 1 << 20);
  if (!r.ok()) throw std::runtime_error(r.error().message());
  return std::move(r).value();
}

template <typename T>
void patch(std::vector<uint8_t>& bytes, uint64_t off, T value) {
  std::memcpy(bytes.data() + off, &value, sizeof(T));
}

template <typename T>
T peek(const std::vector<uint8_t>& bytes, uint64_t off) {
  T v;
  std::memcpy(&v, bytes.data() + off, sizeof(T));
  return v;
}

}  // namespace nydus::rafs::testing
