// failover_bench: how invisible are nydusd crash failover and hot upgrade to
// readers? Not a test (no ctest registration). One command, as root:
//
//   build/bin/failover_bench [--cycles 50] [--readers 8] [--files 128] [--file-mib 16]
//                            [--warm-percent 25] [--cold-percent 10] [--baseline-ms 3000]
//                            [--modes kill,standby,upgrade]
//
// The nydusd and nydus-image it runs are the ones next to it (same build dir).
//
// Load (issue 8's spec): `--readers` threads, each looping: pick a 4 KiB or a
// 1 MiB read (50/50), aimed with probability --cold-percent at a chunk of the
// blob that no read has touched yet (uncached: nydusd fetches it from the
// localfs backend, decompresses and fills its blob cache) and otherwise at a
// random offset of the part of the image warmed into the blob cache before
// the run (--warm-percent of the files). Reads are O_DIRECT (the page cache
// never answers), and every byte is checked against the generator.
// The image: --files files of --file-mib MiB (default 2 GiB), lz4_block, 1 MiB chunks;
// contents alternate 4 KiB of random bytes and 4 KiB runs of one word, so
// compression and decompression are exercised.
//
// Modes, each with --cycles cycles on a fresh daemon and blob cache:
//   kill      kill -9 of the serving nydusd, then spawn `nydusd --upgrade`,
//             takeover, start (what a supervisor without a standby does)
//   standby   the successor is spawned and waiting in INIT first, then kill -9,
//             takeover, start (the snapshotter's pre-spawned standby)
//   upgrade   spawn `nydusd --upgrade`, takeover while the old one serves,
//             PUT exit on the old one, start the new one
// After each cycle the new daemon saves its state (sendfd) and the bench waits
// for 100 more reads before the next cycle.
//
// Printed per mode: reader errors (must be 0), the per-cycle outage (control
// plane: kill -9, or for upgrade the takeover request once the successor
// waits in INIT -> successor RUNNING) and the per-cycle
// reader stall (the longest single read that overlapped the cycle), as
// p50/p99/max over the cycles, and the stall as a RATIO to the p99 read
// latency of the same readers on the same daemon measured just before the
// cycles (--baseline-ms of load with no failover). Exit status 1 on any error.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>

#include "tests/bench/bench_content.h"
#include "tests/bench/bench_support.h"

using namespace nydus::bench;

namespace {

constexpr uint64_t kOpsAfterCycle = 100;
constexpr std::chrono::seconds kOpsDeadline{30};

struct Options {
  int cycles = 50;
  unsigned readers = 8;
  size_t files = 128;
  size_t file_mib = 16;
  unsigned warm_percent = 25;
  unsigned cold_percent = 10;
  int baseline_ms = 3000;
  std::vector<std::string> modes = {"kill", "standby", "upgrade"};
};
Options g_opt;

std::string file_name(size_t f) { return "f" + std::to_string(f) + ".bin"; }

RafsImage build_image(const fs::path& dir) {
  fs::path src = dir / "src";
  fs::create_directories(src);
  std::vector<char> buf(kChunk);
  size_t size = g_opt.file_mib << 20;
  for (size_t f = 0; f < g_opt.files; ++f) {
    std::ofstream out(src / file_name(f), std::ios::binary);
    for (size_t off = 0; off < size; off += kChunk) {
      fill(f, off, kChunk, buf.data());
      out.write(buf.data(), static_cast<long>(kChunk));
    }
  }
  RafsImage image = build_rafs_image(dir, src, kToolDeadline);
  fs::remove_all(src);  // contents are re-generated for checking
  return image;
}

enum Kind : uint8_t { kWarmSmall, kWarmLarge, kColdSmall, kColdLarge, kKinds };
const char* kKindNames[kKinds] = {"warm 4K", "warm 1M", "cold 4K", "cold 1M"};

struct Sample {
  Clock::time_point start;
  Clock::time_point end;
  Kind kind;
};

// The reader threads. Each keeps its own sample vector (no sharing while the
// load runs); they are read after stop().
class Load {
 public:
  Load(fs::path mnt, size_t warm_files)
      : mnt_(std::move(mnt)), warm_files_(warm_files), cold_(warm_files, g_opt.files, g_opt.file_mib) {}
  ~Load() { stop(); }

  void start() {
    samples_.assign(g_opt.readers, {});
    for (unsigned i = 0; i < g_opt.readers; ++i) threads_.emplace_back(&Load::reader, this, i);
  }
  void stop() {
    stop_ = true;
    for (auto& t : threads_) t.join();
    threads_.clear();
  }
  bool wait_more_ops(uint64_t more) const {
    uint64_t target = ops_.load() + more;
    auto deadline = Clock::now() + kOpsDeadline;
    while (ops_.load() < target) {
      if (Clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));  // bounded by the deadline
    }
    return true;
  }
  uint64_t ops() const { return ops_.load(); }
  uint64_t errors() const { return errors_.load(); }
  uint64_t cold_served() const { return cold_.served(); }
  uint64_t cold_exhausted() const { return cold_exhausted_.load(); }
  std::vector<std::string> first_errors() const {
    std::lock_guard lock(mu_);
    return first_errors_;
  }
  std::vector<Sample> samples() const {
    std::vector<Sample> all;
    for (const auto& s : samples_) all.insert(all.end(), s.begin(), s.end());
    return all;
  }

 private:
  void note_error(std::string message) {
    errors_.fetch_add(1);
    std::lock_guard lock(mu_);
    if (first_errors_.size() < 10) first_errors_.push_back(std::move(message));
  }

  void reader(unsigned index) {
    std::mt19937_64 rng(1000 + index);
    const size_t file_size = g_opt.file_mib << 20;
    ReadBuffer buf;
    auto& samples = samples_[index];
    samples.reserve(1 << 16);
    while (!stop_.load()) {
      bool large = rng() % 2 == 0;
      size_t len = large ? kLarge : kSmall;
      bool cold = rng() % 100 < g_opt.cold_percent && warm_files_ < g_opt.files;
      size_t f = 0;
      uint64_t off = 0;
      if (cold) {
        if (!cold_.next(large, rng, &f, &off)) {  // every chunk has been fetched once: this read is cached
          cold_exhausted_.fetch_add(1);
          f = warm_files_ + rng() % (g_opt.files - warm_files_);
          off = random_offset(rng, file_size, len);
        }
      } else {
        f = rng() % std::max<size_t>(1, warm_files_);
        off = random_offset(rng, file_size, len);
      }
      Kind kind = static_cast<Kind>((cold ? 2 : 0) + (large ? 1 : 0));
      std::string path = (mnt_ / file_name(f)).string();
      auto start = Clock::now();
      int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT);
      if (fd < 0) {
        note_error("open " + path + ": " + std::strerror(errno));
        continue;
      }
      size_t got = 0;
      while (got < len) {
        ssize_t n = ::pread(fd, buf.data() + got, len - got, static_cast<off_t>(off + got));
        if (n <= 0) {
          note_error("pread " + path + ": " + (n < 0 ? std::strerror(errno) : "short read"));
          break;
        }
        got += static_cast<size_t>(n);
      }
      ::close(fd);
      auto end = Clock::now();
      if (got == len && buf.mismatch(f, off, len) != len) {
        note_error("data mismatch in " + path + " at " + std::to_string(off));
      }
      samples.push_back({start, end, kind});
      ops_.fetch_add(1);
    }
  }

  fs::path mnt_;
  size_t warm_files_;
  ColdChunks cold_;
  std::atomic<uint64_t> cold_exhausted_{0};
  std::vector<std::thread> threads_;
  std::vector<std::vector<Sample>> samples_;  // one per reader, written only by it
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> ops_{0};
  std::atomic<uint64_t> errors_{0};
  mutable std::mutex mu_;
  std::vector<std::string> first_errors_;  // guarded by mu_
};

struct ModeResult {
  std::string mode;
  int cycles = 0;
  uint64_t reads = 0, errors = 0, cold_served = 0, cold_exhausted = 0, backend_mib = 0;
  double base_p50 = 0, base_p99 = 0, base_max = 0;
  double kind_p50[kKinds] = {}, kind_p99[kKinds] = {};
  std::vector<double> outage, stall;
  std::vector<std::string> first_errors;
};
std::vector<ModeResult> g_results;

const RafsImage& shared_image() {
  static std::unique_ptr<TempDir> dir;
  static RafsImage image;
  if (!dir) {
    dir = std::make_unique<TempDir>("nydusd-failover-bench-image");
    image = build_image(dir->path());
  }
  return image;
}

uint64_t backend_bytes(NydusdProcess& d) {
  auto r = d.call("GET", "/api/v1/metrics/backend");
  if (r.status != 200) return 0;
  return nlohmann::json::parse(r.body).value("read_amount_total", uint64_t{0});
}

void run_mode(const std::string& mode) {
  const RafsImage& image = shared_image();
  TempDir tmp("nydusd-failover-bench");
  fs::create_directories(tmp / "cache");
  std::string config = (tmp / "config.json").string();
  std::ofstream(config) << v1_config(image.blob_dir, (tmp / "cache").string(), true);
  DaemonChain chain(tmp.path(), {"--thread-num", "4"});
  const fs::path& mnt = chain.mnt();
  auto current = chain.start_first({"--config", config, "--bootstrap", image.boot});
  chain.save_state(*current, /*fresh=*/true);

  // Warm the first files into the blob cache (the page cache is dropped
  // after, and O_DIRECT reads bypass it anyway).
  size_t warm_files = g_opt.files * g_opt.warm_percent / 100;
  for (size_t f = 0; f < warm_files; ++f) (void)read_file(mnt / file_name(f));
  std::ofstream("/proc/sys/vm/drop_caches") << "3";

  ModeResult result;
  result.mode = mode;
  uint64_t backend = 0;
  uint64_t backend_at_start = backend_bytes(*current);
  Load load(mnt, warm_files);
  load.start();
  auto base_begin = Clock::now();
  std::this_thread::sleep_for(std::chrono::milliseconds(g_opt.baseline_ms));  // the baseline phase
  auto base_end = Clock::now();
  std::vector<std::pair<Clock::time_point, Clock::time_point>> windows;
  for (int i = 0; i < g_opt.cycles; ++i) {
    std::unique_ptr<NydusdProcess> next;
    if (mode == "standby") next = chain.spawn_successor();
    backend += backend_bytes(*current);
    // The old daemon serves on while its successor starts.
    if (mode == "upgrade") next = chain.spawn_successor();
    auto begin = Clock::now();
    if (mode != "upgrade") crash_daemon(*current);
    if (!next) next = chain.spawn_successor();
    chain.take_over(*next, mode == "upgrade" ? current.get() : nullptr);
    result.outage.push_back(ms_between(begin, Clock::now()));
    chain.save_state(*next);
    REQUIRE(load.wait_more_ops(kOpsAfterCycle));
    windows.emplace_back(begin, Clock::now());
    current = std::move(next);
  }
  load.stop();
  backend += backend_bytes(*current);
  backend -= backend_at_start;

  auto samples = load.samples();
  std::vector<double> base, by_kind[kKinds];
  for (const auto& s : samples) {
    if (s.start >= base_begin && s.end <= base_end) {
      double ms = ms_between(s.start, s.end);
      base.push_back(ms);
      by_kind[s.kind].push_back(ms);
    }
  }
  for (const auto& [begin, end] : windows) {
    double worst = 0;
    for (const auto& s : samples) {
      if (s.end >= begin && s.start <= end) worst = std::max(worst, ms_between(s.start, s.end));
    }
    result.stall.push_back(worst);
  }
  result.cycles = g_opt.cycles;
  result.reads = load.ops();
  result.errors = load.errors();
  result.cold_served = load.cold_served();
  result.cold_exhausted = load.cold_exhausted();
  result.backend_mib = backend >> 20;
  result.base_p50 = percentile(base, 0.5);
  result.base_p99 = percentile(base, 0.99);
  result.base_max = max_of(base);
  for (int k = 0; k < kKinds; ++k) {
    result.kind_p50[k] = percentile(by_kind[k], 0.5);
    result.kind_p99[k] = percentile(by_kind[k], 0.99);
  }
  result.first_errors = load.first_errors();
  g_results.push_back(result);
  stop_daemon(*current);
}

void print_results() {
  std::printf("\nfailover_bench: %d cycles per mode, %u readers (4 KiB/1 MiB O_DIRECT, %u%% aimed at "
              "uncached chunks), image %zu x %zu MiB lz4_block, %u%% warmed; load average %s\n",
              g_opt.cycles, g_opt.readers, g_opt.cold_percent, g_opt.files, g_opt.file_mib,
              g_opt.warm_percent, load_average().c_str());
  std::printf("\nbaseline: the same readers on the same daemon for %.1f s before the cycles (ms)\n",
              g_opt.baseline_ms / 1000.0);
  std::printf("%-8s %9s %9s %9s", "mode", "all p50", "all p99", "all max");
  for (const char* k : kKindNames) std::printf(" %15s", (std::string(k) + " p50/p99").c_str());
  std::printf("\n");
  for (const auto& r : g_results) {
    std::printf("%-8s %9.2f %9.2f %9.2f", r.mode.c_str(), r.base_p50, r.base_p99, r.base_max);
    for (int k = 0; k < kKinds; ++k) std::printf("   %5.2f / %5.2f", r.kind_p50[k], r.kind_p99[k]);
    std::printf("\n");
  }
  std::printf("\ncycles (ms; outage = kill/takeover request -> successor RUNNING; stall = longest read "
              "overlapping the cycle)\n");
  std::printf("%-8s %6s %8s %6s %8s %8s %22s %22s %22s\n", "mode", "cycles", "reads", "errors",
              "cold rd", "backend", "outage p50/p99/max", "stall p50/p99/max", "stall / base p99");
  for (const auto& r : g_results) {
    auto ratio = [&](double v) { return r.base_p99 > 0 ? v / r.base_p99 : 0; };
    double sp50 = percentile(r.stall, 0.5), sp99 = percentile(r.stall, 0.99), smax = max_of(r.stall);
    char outage[64], stall[64], rat[64], backend[32];
    std::snprintf(outage, sizeof outage, "%.1f/%.1f/%.1f", percentile(r.outage, 0.5),
                  percentile(r.outage, 0.99), max_of(r.outage));
    std::snprintf(stall, sizeof stall, "%.1f/%.1f/%.1f", sp50, sp99, smax);
    std::snprintf(rat, sizeof rat, "%.1fx/%.1fx/%.1fx", ratio(sp50), ratio(sp99), ratio(smax));
    std::snprintf(backend, sizeof backend, "%lluMiB", static_cast<unsigned long long>(r.backend_mib));
    std::printf("%-8s %6d %8llu %6llu %8llu %8s %22s %22s %22s\n", r.mode.c_str(), r.cycles,
                static_cast<unsigned long long>(r.reads), static_cast<unsigned long long>(r.errors),
                static_cast<unsigned long long>(r.cold_served), backend, outage, stall, rat);
    if (r.cold_exhausted > 0) {
      std::printf("  note: %llu reads aimed at uncached data found every chunk fetched already "
                  "(raise --files)\n",
                  static_cast<unsigned long long>(r.cold_exhausted));
    }
    for (const auto& e : r.first_errors) std::printf("  error: %s\n", e.c_str());
  }
}

}  // namespace

TEST_CASE("failover bench") {
  for (const auto& mode : g_opt.modes) {
    INFO("mode " << mode);
    run_mode(mode);
  }
}

int main(int argc, char** argv) {
  std::vector<char*> rest = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    bool has_value = i + 1 < argc;
    if (a == "--cycles" && has_value) {
      g_opt.cycles = std::atoi(argv[++i]);
    } else if (a == "--readers" && has_value) {
      g_opt.readers = static_cast<unsigned>(std::atoi(argv[++i]));
    } else if (a == "--files" && has_value) {
      g_opt.files = static_cast<size_t>(std::atoi(argv[++i]));
    } else if (a == "--file-mib" && has_value) {
      g_opt.file_mib = static_cast<size_t>(std::atoi(argv[++i]));
    } else if (a == "--warm-percent" && has_value) {
      g_opt.warm_percent = static_cast<unsigned>(std::atoi(argv[++i]));
    } else if (a == "--cold-percent" && has_value) {
      g_opt.cold_percent = static_cast<unsigned>(std::atoi(argv[++i]));
    } else if (a == "--baseline-ms" && has_value) {
      g_opt.baseline_ms = std::atoi(argv[++i]);
    } else if (a == "--modes" && has_value) {
      g_opt.modes.clear();
      std::stringstream s(argv[++i]);
      for (std::string m; std::getline(s, m, ',');) g_opt.modes.push_back(m);
    } else {
      rest.push_back(argv[i]);
    }
  }
  for (const auto& m : g_opt.modes) {
    if (m != "kill" && m != "standby" && m != "upgrade") {
      std::fprintf(stderr, "failover_bench: unknown mode %s (kill, standby, upgrade)\n", m.c_str());
      return 2;
    }
  }
  if (g_opt.files == 0 || g_opt.file_mib == 0 || g_opt.readers == 0) {
    std::fprintf(stderr, "failover_bench: --files, --file-mib and --readers must be positive\n");
    return 2;
  }
  int status = run_test_cases(rest);
  print_results();
  for (const auto& r : g_results) {
    if (r.errors > 0) status = 1;
  }
  return status;
}
