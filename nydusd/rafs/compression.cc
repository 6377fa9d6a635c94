#include "nydusd/rafs/compression.h"

#include <lz4.h>
#include <zlib.h>
#include <zstd.h>

#include <climits>
#include <cstring>

namespace nydus::rafs {

namespace {

// An LZ4 block cannot expand data by more than ~255x, deflate not by more
// than ~1032x; a larger claimed output is corrupt, and checking first avoids
// a huge hostile allocation.
constexpr uint64_t kLz4MaxRatio = 255;
constexpr uint64_t kDeflateMaxRatio = 1032;

// zlib window bits for a gzip (not zlib or raw deflate) stream.
constexpr int kGzipWindowBits = 15 + 16;

Error unsupported_algo(Compressor algo) {
  return make_error(ErrorKind::kUnsupported, "compressor {} is not supported", compressor_name(algo));
}

Result<std::vector<uint8_t>> gzip_compress(std::span<const uint8_t> in) {
  if (in.size() > UINT_MAX / 2) {
    return make_error(ErrorKind::kTooLarge, "gzip: input of {} bytes is too large", in.size());
  }
  z_stream z{};
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, kGzipWindowBits, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    return make_error(ErrorKind::kInternal, "gzip: deflateInit2 failed");
  }
  std::vector<uint8_t> out(deflateBound(&z, uLong(in.size())) + 32);
  z.next_in = const_cast<Bytef*>(in.data());
  z.avail_in = uInt(in.size());
  z.next_out = out.data();
  z.avail_out = uInt(out.size());
  const int rc = deflate(&z, Z_FINISH);
  const size_t n = z.total_out;
  deflateEnd(&z);
  if (rc != Z_STREAM_END) return make_error(ErrorKind::kInternal, "gzip: deflate failed ({})", rc);
  out.resize(n);
  return out;
}

// One gzip member, which must produce exactly out.size() bytes and end
// exactly at the end of `in`.
Status gzip_decompress(std::span<const uint8_t> in, std::span<uint8_t> out) {
  if (in.size() > UINT_MAX || out.size() > UINT_MAX) {
    return make_error(ErrorKind::kCorrupt, "gzip: {} -> {} bytes is too large", in.size(), out.size());
  }
  z_stream z{};
  if (inflateInit2(&z, kGzipWindowBits) != Z_OK) return make_error(ErrorKind::kInternal, "gzip: inflateInit2 failed");
  z.next_in = const_cast<Bytef*>(in.data());
  z.avail_in = uInt(in.size());
  // zlib wants a non-null output pointer even for an empty result.
  uint8_t dummy = 0;
  z.next_out = out.empty() ? &dummy : out.data();
  z.avail_out = uInt(out.size());
  const int rc = inflate(&z, Z_FINISH);
  const size_t produced = z.total_out, left = z.avail_in;
  inflateEnd(&z);
  if (rc != Z_STREAM_END) {
    return make_error(ErrorKind::kCorrupt, "gzip: malformed or oversized stream ({} bytes in, {} expected out)",
                      in.size(), out.size());
  }
  if (produced != out.size() || left != 0) {
    return make_error(ErrorKind::kCorrupt, "gzip: stream decompressed to {} bytes with {} input bytes left, want {}",
                      produced, left, out.size());
  }
  return ok_status();
}

}  // namespace

const char* compressor_name(Compressor algo) {
  switch (algo) {
    case Compressor::kNone: return "none";
    case Compressor::kLz4Block: return "lz4_block";
    case Compressor::kGzip: return "gzip";
    case Compressor::kZstd: return "zstd";
  }
  return "unknown";
}

Result<std::vector<uint8_t>> compress(Compressor algo, std::span<const uint8_t> in, int zstd_level) {
  switch (algo) {
    case Compressor::kNone:
      return std::vector<uint8_t>(in.begin(), in.end());
    case Compressor::kLz4Block: {
      if (in.size() > size_t(LZ4_MAX_INPUT_SIZE)) {
        return make_error(ErrorKind::kTooLarge, "lz4: input of {} bytes is too large", in.size());
      }
      std::vector<uint8_t> out(size_t(LZ4_compressBound(int(in.size()))));
      int n = LZ4_compress_default(reinterpret_cast<const char*>(in.data()), reinterpret_cast<char*>(out.data()),
                                   int(in.size()), int(out.size()));
      if (n <= 0 && !in.empty()) return make_error(ErrorKind::kInternal, "lz4: compression failed");
      out.resize(size_t(n));
      return out;
    }
    case Compressor::kZstd: {
      std::vector<uint8_t> out(ZSTD_compressBound(in.size()));
      size_t n = ZSTD_compress(out.data(), out.size(), in.data(), in.size(), zstd_level);
      if (ZSTD_isError(n)) return make_error(ErrorKind::kInternal, "zstd: {}", ZSTD_getErrorName(n));
      out.resize(n);
      return out;
    }
    case Compressor::kGzip:
      return gzip_compress(in);
  }
  return unsupported_algo(algo);
}

Status decompress(Compressor algo, std::span<const uint8_t> in, std::span<uint8_t> out) {
  switch (algo) {
    case Compressor::kNone:
      if (in.size() != out.size()) {
        return make_error(ErrorKind::kCorrupt, "stored data is {} bytes, want {}", in.size(), out.size());
      }
      if (!in.empty()) std::memcpy(out.data(), in.data(), in.size());
      return ok_status();
    case Compressor::kLz4Block: {
      if (in.size() > size_t(INT_MAX) || out.size() > size_t(INT_MAX) ||
          out.size() > in.size() * kLz4MaxRatio + 16) {
        return make_error(ErrorKind::kCorrupt, "lz4: {} bytes cannot decompress to {}", in.size(), out.size());
      }
      int n = LZ4_decompress_safe(reinterpret_cast<const char*>(in.data()), reinterpret_cast<char*>(out.data()),
                                  int(in.size()), int(out.size()));
      if (n < 0) return make_error(ErrorKind::kCorrupt, "lz4: malformed block of {} bytes", in.size());
      if (size_t(n) != out.size()) {
        return make_error(ErrorKind::kCorrupt, "lz4: block decompressed to {} bytes, want {}", n, out.size());
      }
      return ok_status();
    }
    case Compressor::kZstd: {
      size_t n = ZSTD_decompress(out.data(), out.size(), in.data(), in.size());
      if (ZSTD_isError(n)) {
        return make_error(ErrorKind::kCorrupt, "zstd: {} ({} bytes in, {} expected out)", ZSTD_getErrorName(n),
                          in.size(), out.size());
      }
      if (n != out.size()) {
        return make_error(ErrorKind::kCorrupt, "zstd: frame decompressed to {} bytes, want {}", n, out.size());
      }
      return ok_status();
    }
    case Compressor::kGzip:
      return gzip_decompress(in, out);
  }
  return unsupported_algo(algo);
}

Result<std::vector<uint8_t>> decompress(Compressor algo, std::span<const uint8_t> in, size_t out_size) {
  // Check claims that cannot be true before allocating what they ask for.
  if (algo == Compressor::kZstd) {
    unsigned long long declared = ZSTD_getFrameContentSize(in.data(), in.size());
    if (declared == ZSTD_CONTENTSIZE_ERROR) {
      return make_error(ErrorKind::kCorrupt, "zstd: not a zstd frame ({} bytes)", in.size());
    }
    if (declared != ZSTD_CONTENTSIZE_UNKNOWN && declared > out_size) {
      return make_error(ErrorKind::kCorrupt, "zstd: frame holds {} bytes, want {}", declared, out_size);
    }
  } else if (algo == Compressor::kLz4Block && out_size > in.size() * kLz4MaxRatio + 16) {
    return make_error(ErrorKind::kCorrupt, "lz4: {} bytes cannot decompress to {}", in.size(), out_size);
  } else if (algo == Compressor::kGzip && out_size > in.size() * kDeflateMaxRatio + 64) {
    return make_error(ErrorKind::kCorrupt, "gzip: {} bytes cannot decompress to {}", in.size(), out_size);
  } else if (algo == Compressor::kNone && in.size() != out_size) {
    return make_error(ErrorKind::kCorrupt, "stored data is {} bytes, want {}", in.size(), out_size);
  }
  std::vector<uint8_t> out(out_size);
  NYDUS_TRY(decompress(algo, in, std::span<uint8_t>(out)));
  return out;
}

}  // namespace nydus::rafs
