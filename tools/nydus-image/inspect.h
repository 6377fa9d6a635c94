// `nydus-image inspect`: prints the superblock, extended superblock, device
// slots and blob table of a bootstrap, and for --path the file's attributes
// and chunk map.
#pragma once

#include <optional>
#include <string>

#include "common/result.h"

namespace nydus::builder {

// Returns the report text.
Result<std::string> run_inspect(const std::string& bootstrap, const std::optional<std::string>& path);

}  // namespace nydus::builder
