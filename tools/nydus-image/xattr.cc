#include "tools/nydus-image/xattr.h"

#include <cstring>

#include "nydusd/rafs/layout.h"

namespace nydus::builder {

namespace {

constexpr uint32_t kEntryHeader = sizeof(rafs::XattrEntry);
constexpr uint32_t kMaxValue = 0xFFFF;  // e_value_size is a u16

uint32_t entry_size(std::string_view suffix, std::string_view value) {
  return uint32_t(rafs::round_up(kEntryHeader + suffix.size() + value.size(), 4));
}

}  // namespace

std::optional<XattrName> split_xattr_name(std::string_view name) {
  struct Prefix {
    std::string_view text;
    uint8_t index;
    bool exact;  // the ACL names are whole names with an empty suffix
  };
  static constexpr Prefix kPrefixes[] = {
      {"user.", rafs::kXattrUser, false},
      {"system.posix_acl_access", rafs::kXattrPosixAclAccess, true},
      {"system.posix_acl_default", rafs::kXattrPosixAclDefault, true},
      {"trusted.", rafs::kXattrTrusted, false},
      {"security.", rafs::kXattrSecurity, false},
  };
  for (const auto& p : kPrefixes) {
    if (p.exact) {
      if (name == p.text) return XattrName{p.index, name.substr(name.size())};
      continue;
    }
    if (name.size() > p.text.size() && name.compare(0, p.text.size(), p.text) == 0) {
      std::string_view suffix = name.substr(p.text.size());
      if (suffix.size() > 255) return std::nullopt;  // e_name_len is a u8
      return XattrName{p.index, suffix};
    }
  }
  return std::nullopt;
}

std::string xattr_unstorable_reason(std::string_view name, std::string_view value) {
  if (!split_xattr_name(name)) return "prefix not storable in RAFS (only user., trusted., security. and POSIX ACLs)";
  if (value.size() > kMaxValue) return "value larger than 65535 bytes";
  return {};
}

uint32_t xattr_area_size(const std::map<std::string, std::string>& xattrs) {
  if (xattrs.empty()) return 0;
  uint32_t size = sizeof(rafs::XattrIbodyHeader);
  for (const auto& [name, value] : xattrs) size += entry_size(split_xattr_name(name)->suffix, value);
  return size;
}

uint16_t xattr_icount(const std::map<std::string, std::string>& xattrs) {
  uint32_t size = xattr_area_size(xattrs);
  // Inverse of rafs::xattr_ibody_size(): size = 12 + 4 * (icount - 1).
  return size == 0 ? 0 : uint16_t((size - sizeof(rafs::XattrIbodyHeader)) / 4 + 1);
}

std::vector<uint8_t> encode_xattrs(const std::map<std::string, std::string>& xattrs) {
  std::vector<uint8_t> out(xattr_area_size(xattrs), 0);
  if (out.empty()) return out;
  size_t pos = sizeof(rafs::XattrIbodyHeader);  // header stays zero: no shared xattrs, no filter
  for (const auto& [name, value] : xattrs) {
    XattrName n = *split_xattr_name(name);
    rafs::XattrEntry e{uint8_t(n.suffix.size()), n.index, uint16_t(value.size())};
    std::memcpy(out.data() + pos, &e, sizeof(e));
    std::memcpy(out.data() + pos + sizeof(e), n.suffix.data(), n.suffix.size());
    std::memcpy(out.data() + pos + sizeof(e) + n.suffix.size(), value.data(), value.size());
    pos += entry_size(n.suffix, value);
  }
  return out;
}

}  // namespace nydus::builder
