// The vocabulary of containerd's snapshots API as plain C++ values, shared by
// the metadata store, the Snapshotter core and the gRPC shell (which alone
// converts them to and from protobuf).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace nydus::snapshotter {

// Numbering is containerd's Kind enum (snapshots.proto).
enum class Kind : int { kUnknown = 0, kView = 1, kActive = 2, kCommitted = 3 };

std::string_view to_string(Kind kind);  // "view", "active", "committed", "unknown"

using Labels = std::map<std::string, std::string>;

// Nanoseconds since the Unix epoch (UTC).
using TimestampNs = int64_t;
TimestampNs now_ns();

// A mount(2) description handed back to containerd.
struct Mount {
  std::string type;
  std::string source;
  std::string target;
  std::vector<std::string> options;
  bool operator==(const Mount&) const = default;
};

// containerd's snapshots.Info.
struct Info {
  std::string name;
  std::string parent;  // name of the parent snapshot, "" for none
  Kind kind = Kind::kUnknown;
  Labels labels;
  TimestampNs created = 0;
  TimestampNs updated = 0;
  bool operator==(const Info&) const = default;
};

// containerd's snapshots.Usage.
struct Usage {
  int64_t size = 0;    // bytes, from allocated blocks
  int64_t inodes = 0;  // distinct inodes
  bool operator==(const Usage&) const = default;
};

// containerd's limit on one label (labels.Validate): key and value together.
inline constexpr size_t kMaxLabelSize = 4096;

}  // namespace nydus::snapshotter
