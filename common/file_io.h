// Small POSIX file helpers: whole-file reads with a size cap, and exact
// positional reads and writes. Errors name the path.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"

namespace nydus {

Result<UniqueFd> open_readonly(const std::string& path);
// Size of an open file.
Result<uint64_t> file_size(int fd, const std::string& path);
// Reads exactly out.size() bytes at `offset`; a short file is kCorrupt
// ("<path>: want N bytes at OFF, file ends at ...").
Status pread_exact(int fd, std::span<uint8_t> out, uint64_t offset, const std::string& path);
// Writes all of `data` at `offset` (a write that makes no progress is EIO).
Status pwrite_all(int fd, std::span<const uint8_t> data, uint64_t offset, const std::string& path);
// Reads a whole file; files larger than `max_size` are kTooLarge.
Result<std::vector<uint8_t>> read_file(const std::string& path, uint64_t max_size);

}  // namespace nydus
