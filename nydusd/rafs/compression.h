// Chunk and CI compression (§12, §13): none, lz4_block (a raw LZ4 block: no
// frame, no size prefix), zstd (a standard frame) and gzip (one gzip member,
// zlib). Decompression always produces exactly the size the metadata
// promises; anything else is kCorrupt.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/result.h"
#include "nydusd/rafs/layout.h"

namespace nydus::rafs {

const char* compressor_name(Compressor algo);

// Compresses `in`. kNone returns a copy. `zstd_level` 0 means zstd's default.
// Callers decide whether to keep the result: RAFS stores a chunk raw unless
// compression makes it strictly smaller (§12, CI v1 has no flag).
Result<std::vector<uint8_t>> compress(Compressor algo, std::span<const uint8_t> in, int zstd_level = 0);

// Decompresses `in` into exactly out.size() bytes.
Status decompress(Compressor algo, std::span<const uint8_t> in, std::span<uint8_t> out);
Result<std::vector<uint8_t>> decompress(Compressor algo, std::span<const uint8_t> in, size_t out_size);

}  // namespace nydus::rafs
