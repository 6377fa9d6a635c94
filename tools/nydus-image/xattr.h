// Inline xattr encoding (§8): which names RAFS can store and the ibody bytes.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nydus::builder {

struct XattrName {
  uint8_t index = 0;     // rafs::XattrIndex
  std::string_view suffix;  // the name without the prefix the index stands for
};

// Splits a full xattr name into (index, suffix). nullopt for prefixes RAFS
// cannot store (nydusd rejects anything but user/trusted/security and the
// two POSIX ACL names), for an empty suffix, and for a suffix over 255 bytes.
std::optional<XattrName> split_xattr_name(std::string_view name);

// Why `name`/`value` cannot be stored, or empty if it can.
std::string xattr_unstorable_reason(std::string_view name, std::string_view value);

// Size in bytes of the inline xattr area for these xattrs (0 if none), and
// the matching i_xattr_icount.
uint32_t xattr_area_size(const std::map<std::string, std::string>& xattrs);
uint16_t xattr_icount(const std::map<std::string, std::string>& xattrs);

// The inline xattr area: 12-byte header (no shared xattrs), then entries
// padded to 4 bytes. Callers have filtered names with split_xattr_name().
std::vector<uint8_t> encode_xattrs(const std::map<std::string, std::string>& xattrs);

}  // namespace nydus::builder
