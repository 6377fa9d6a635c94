// Replacing a file whole: the config files, bootstraps and blob.meta caches
// this project writes are read by other processes at any moment.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "common/result.h"

namespace nydus {

// Whether write_file_atomic fsyncs the data before the rename. kDurable for
// state that must survive a power cut (the snapshotter's configs);
// kNotDurable where the file can be rebuilt and an fsync costs too much (a
// bootstrap beside its freshly written blob: on ext4 the fsync would flush
// the whole blob too; a blob.meta cache).
enum class Durability { kDurable, kNotDurable };

// Writes `bytes` to `path` through a uniquely named temporary file in the
// same directory and rename(2): a reader sees the old file or the whole new
// one, never a part. The temporary is removed on any failure; errors name
// the path.
Status write_file_atomic(const std::string& path, std::span<const uint8_t> bytes, unsigned mode,
                         Durability durability);

inline Status write_file_atomic(const std::string& path, std::string_view text, unsigned mode,
                                Durability durability) {
  return write_file_atomic(path, std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()), mode,
                           durability);
}

}  // namespace nydus
