// The takeover state codec (nydusd/daemon/takeover.h): round trip, validation
// of truncated / corrupted / unknown-major states, and compatibility both
// ways with a newer writer that has extra fields (state_compat.proto).
#include <catch2/catch.hpp>

#include <random>

#include "nydusd/daemon/takeover.h"
#include "state.pb.h"
#include "state_compat.pb.h"

using namespace nydus;
using namespace nydus::daemon;

namespace {

SavedState sample_state() {
  SavedState s;
  s.writer_version = "v1.2.3 (abc)";
  s.daemon_id = "d1";
  s.mountpoint = "/mnt/x";
  s.fuse.kernel_major = s.fuse.proto_major = 7;
  s.fuse.kernel_minor = s.fuse.proto_minor = 38;
  s.fuse.flags = 0x40440021;
  s.fuse.kernel_flags = 0x5fd73fffffbull;
  s.fuse.max_write = 131072;
  s.fuse.max_readahead = 131072;
  s.fuse.time_gran = 1;
  s.fuse.max_pages = 32;
  s.fuse.max_background = 128;
  s.fuse.congestion_threshold = 96;
  s.mounts.push_back({1, "/", "rafs", "/img/a.boot", R"({"device":{}})", {"/etc", "/bin"}});
  s.mounts.push_back({7, "/sub/b", "rafs", "/img/b.boot", R"({"x":1})", {}});
  s.next_mount_index = 8;
  s.failover_policy = "resend";
  s.thread_num = 4;
  s.fuse_conn_id = 42;
  s.pseudo_dirs = {{2, 1, "sub"}, {3, 2, "b"}};
  return s;
}

void check_restore_fields(const SavedState& got, const SavedState& want) {
  CHECK(got.daemon_id == want.daemon_id);
  CHECK(got.mountpoint == want.mountpoint);
  CHECK(got.fuse.proto_major == want.fuse.proto_major);
  CHECK(got.fuse.proto_minor == want.fuse.proto_minor);
  CHECK(got.fuse.flags == want.fuse.flags);
  CHECK(got.fuse.kernel_flags == want.fuse.kernel_flags);
  CHECK(got.fuse.has_resend() == want.fuse.has_resend());
  CHECK(got.fuse.max_write == want.fuse.max_write);
  CHECK(got.fuse.max_readahead == want.fuse.max_readahead);
  CHECK(got.fuse.time_gran == want.fuse.time_gran);
  REQUIRE(got.mounts.size() == want.mounts.size());
  for (size_t i = 0; i < got.mounts.size(); ++i) {
    CHECK(got.mounts[i].index == want.mounts[i].index);
    CHECK(got.mounts[i].mountpoint == want.mounts[i].mountpoint);
    CHECK(got.mounts[i].bootstrap == want.mounts[i].bootstrap);
    CHECK(got.mounts[i].config == want.mounts[i].config);
    CHECK(got.mounts[i].prefetch_files == want.mounts[i].prefetch_files);
  }
  CHECK(got.next_mount_index == want.next_mount_index);
  CHECK(got.failover_policy == want.failover_policy);
  CHECK(got.thread_num == want.thread_num);
  REQUIRE(got.pseudo_dirs.size() == want.pseudo_dirs.size());
  for (size_t i = 0; i < got.pseudo_dirs.size(); ++i) {
    CHECK(got.pseudo_dirs[i].ino == want.pseudo_dirs[i].ino);
    CHECK(got.pseudo_dirs[i].parent == want.pseudo_dirs[i].parent);
    CHECK(got.pseudo_dirs[i].name == want.pseudo_dirs[i].name);
  }
}

}  // namespace

TEST_CASE("a saved state round-trips", "[takeover]") {
  auto want = sample_state();
  auto got = decode_state(encode_state(want));
  REQUIRE(got.ok());
  CHECK(got->format_major == kStateFormatMajor);
  CHECK(got->writer_version == want.writer_version);
  CHECK(got->fuse_conn_id == 42);
  check_restore_fields(*got, want);
}

TEST_CASE("every truncation of a state is refused", "[takeover]") {
  auto bytes = encode_state(sample_state());
  for (size_t n = 0; n < bytes.size(); ++n) {
    auto got = decode_state(std::span(bytes.data(), n));
    INFO("prefix " << n << " of " << bytes.size());
    REQUIRE_FALSE(got.ok());
    CHECK(got.error().kind() == ErrorKind::kCorrupt);
  }
}

TEST_CASE("garbage and bit flips never crash the decoder", "[takeover]") {
  std::vector<uint8_t> garbage(64, 0xff);
  CHECK_FALSE(decode_state(garbage).ok());
  auto bytes = encode_state(sample_state());
  std::mt19937 rng(1);
  for (int i = 0; i < 2000; ++i) {
    auto copy = bytes;
    copy[rng() % copy.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));
    auto got = decode_state(copy);
    if (got.ok()) {
      for (const auto& m : got->mounts) CHECK(m.index != 0);
    }
  }
}

TEST_CASE("an unknown format_major is refused clearly", "[takeover]") {
  auto state = sample_state();
  state.format_major = kStateFormatMajor + 1;
  auto got = decode_state(encode_state(state));
  REQUIRE_FALSE(got.ok());
  CHECK(got.error().kind() == ErrorKind::kUnsupported);
  CHECK(got.error().message().find("format 2") != std::string::npos);
  state.format_major = 0;
  CHECK_FALSE(decode_state(encode_state(state)).ok());
}

TEST_CASE("invalid mounts are refused", "[takeover]") {
  auto state = sample_state();
  state.mounts[1].index = 1;  // repeated index
  CHECK_FALSE(decode_state(encode_state(state)).ok());
  state = sample_state();
  state.mounts[0].index = 0;
  CHECK_FALSE(decode_state(encode_state(state)).ok());
  state = sample_state();
  state.fuse.max_write = 0;
  CHECK_FALSE(decode_state(encode_state(state)).ok());
}

TEST_CASE("new writer -> this reader: unknown fields are skipped", "[takeover][compat]") {
  auto want = sample_state();
  // A newer writer: the same data plus fields we do not know.
  auto encoded = encode_state(want);
  nydus::state::compat::DaemonStateNext next;
  REQUIRE(next.ParseFromArray(encoded.data(), static_cast<int>(encoded.size())));
  next.set_future_field("from the future");
  next.add_future_numbers(1);
  next.add_future_numbers(2);
  for (auto& m : *next.mutable_mounts()) m.set_future_mount_field("x");
  next.set_format_minor(9);  // a newer minor of the same major
  std::string bytes;
  REQUIRE(next.SerializeToString(&bytes));
  auto got = decode_state(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
  REQUIRE(got.ok());
  CHECK(got->format_minor == 9);
  check_restore_fields(*got, want);
}

TEST_CASE("this writer -> new reader: every field is read", "[takeover][compat]") {
  auto want = sample_state();
  auto bytes = encode_state(want);
  nydus::state::compat::DaemonStateNext next;
  REQUIRE(next.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())));
  CHECK(next.format_major() == kStateFormatMajor);
  CHECK(next.daemon_id() == "d1");
  CHECK(next.fuse().protocol_minor() == 38);
  CHECK(next.fuse().max_write() == 131072);
  CHECK(next.fuse().kernel_has_resend());
  REQUIRE(next.mounts_size() == 2);
  CHECK(next.mounts(1).index() == 7);
  CHECK(next.mounts(1).bootstrap() == "/img/b.boot");
  CHECK(next.mounts(0).prefetch_files_size() == 2);
  CHECK(next.next_mount_index() == 8);
  CHECK(next.mount_count() == 2);
  CHECK(next.future_field().empty());
}

TEST_CASE("a minor-0 state (no mount_count) from an older writer is accepted", "[takeover][compat]") {
  auto want = sample_state();
  auto bytes = encode_state(want);
  nydus::state::v1::DaemonState old;
  REQUIRE(old.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())));
  old.set_format_minor(0);
  old.clear_mount_count();
  std::string out;
  REQUIRE(old.SerializeToString(&out));
  auto got = decode_state(std::span(reinterpret_cast<const uint8_t*>(out.data()), out.size()));
  REQUIRE(got.ok());
  check_restore_fields(*got, want);
}

namespace {

SavedState singleton_state() {
  SavedState s;
  s.mode = "singleton";
  s.writer_version = "v1.2.3 (abc)";
  s.daemon_id = "fsc";
  s.fscache.cache_dir = "/var/lib/fscache";
  s.fscache.tag = "t";
  s.fscache.threads = 4;
  s.fscache.blobs.push_back({"dom", "img1", R"({"type":"bootstrap","id":"img1"})"});
  s.fscache.blobs.push_back({"", "img2", R"({"type":"bootstrap","id":"img2"})"});
  return s;
}

}  // namespace

TEST_CASE("a singleton (fscache) state round-trips", "[takeover][fscache]") {
  auto want = singleton_state();
  auto got = decode_state(encode_state(want));
  REQUIRE(got.ok());
  CHECK(got->mode == "singleton");
  CHECK(got->daemon_id == "fsc");
  CHECK(got->fscache.cache_dir == want.fscache.cache_dir);
  CHECK(got->fscache.tag == "t");
  CHECK(got->fscache.threads == 4);
  REQUIRE(got->fscache.blobs.size() == 2);
  CHECK(got->fscache.blobs[0].domain_id == "dom");
  CHECK(got->fscache.blobs[0].blob_id == "img1");
  CHECK(got->fscache.blobs[1].json == want.fscache.blobs[1].json);
  CHECK(got->mounts.empty());
}

TEST_CASE("every truncation of a singleton state is refused", "[takeover][fscache]") {
  auto bytes = encode_state(singleton_state());
  for (size_t n = 0; n < bytes.size(); ++n) {
    auto got = decode_state(std::span(bytes.data(), n));
    INFO("prefix " << n << " of " << bytes.size());
    REQUIRE_FALSE(got.ok());
    CHECK(got.error().kind() == ErrorKind::kCorrupt);
  }
}

TEST_CASE("invalid singleton states are refused", "[takeover][fscache]") {
  auto s = singleton_state();
  s.fscache.blobs.push_back(s.fscache.blobs[0]);  // listed twice
  CHECK(decode_state(encode_state(s)).error().kind() == ErrorKind::kCorrupt);
  s = singleton_state();
  s.fscache.blobs[1].json.clear();
  CHECK(decode_state(encode_state(s)).error().kind() == ErrorKind::kCorrupt);
  // No fscache section at all.
  nydus::state::v1::DaemonState msg;
  msg.set_format_major(kStateFormatMajor);
  msg.set_format_minor(kStateFormatMinor);
  msg.set_mode("singleton");
  msg.set_mount_count(0);
  std::string raw;
  msg.SerializeToString(&raw);
  CHECK(decode_state(std::span(reinterpret_cast<const uint8_t*>(raw.data()), raw.size())).error().kind() ==
        ErrorKind::kCorrupt);
  // An unknown mode.
  msg.set_mode("virtiofs");
  msg.SerializeToString(&raw);
  CHECK(decode_state(std::span(reinterpret_cast<const uint8_t*>(raw.data()), raw.size())).error().kind() ==
        ErrorKind::kUnsupported);
}
