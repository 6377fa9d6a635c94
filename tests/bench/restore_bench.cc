// restore_bench: what does a takeover cost as images grow and as a shared
// daemon serves more mounts? Not a test (no ctest registration). One command,
// as root:
//
//   build/bin/restore_bench [--sizes 1000,10000,100000] [--mounts 1,4,16] [--cycles 10]
//
// The nydusd and nydus-image it runs are the ones next to it (same build dir).
//
// For each image size (files of 0-2 KiB, 100 per directory, lz4_block) and
// each mount count, one shared daemon (no --bootstrap) gets that many mounts
// of the image through POST /api/v1/mount?mountpoint=/mI (each with its own
// blob cache), saves its state (sendfd), and then goes through --cycles of
//   kill     kill -9, spawn `nydusd --upgrade`, takeover, start
//   upgrade  spawn `nydusd --upgrade`, takeover, PUT exit on the old, start
// Timed per cycle:
//   total      kill -9 (resp. spawn of the successor) -> the successor RUNNING
//              and an O_DIRECT 4 KiB read in every mount answered by it
//   takeover   PUT takeover -> that same point: what a pre-spawned standby
//              makes a crash cost (process start-up excluded)
// Printed: medians (and max) in ms, and each as a RATIO to the 1k-file,
// 1-mount case of the same run.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include "tests/bench/bench_support.h"

using namespace nydus::bench;

namespace {

constexpr std::chrono::minutes kBuildDeadline{10};
constexpr size_t kFilesPerDir = 100;

struct Options {
  std::vector<size_t> sizes = {1000, 10000, 100000};
  std::vector<size_t> mounts = {1, 4, 16};
  int cycles = 10;
};
Options g_opt;

struct Image : RafsImage {
  double build_s = 0;
};

// Files d<i/100>/f<i%100>; f0 of every directory is 4 KiB (the probe read).
Image build_image(const fs::path& dir, size_t files) {
  fs::path src = dir / "src";
  std::mt19937 rng(static_cast<uint32_t>(files));
  std::string buf(2048, '\0');
  for (size_t i = 0; i < files; ++i) {
    fs::path d = src / ("d" + std::to_string(i / kFilesPerDir));
    if (i % kFilesPerDir == 0) fs::create_directories(d);
    size_t size = i % kFilesPerDir == 0 ? 4096 : rng() % 2048;
    std::ofstream out(d / ("f" + std::to_string(i % kFilesPerDir)), std::ios::binary);
    for (size_t done = 0; done < size;) {
      size_t n = std::min(size - done, buf.size());
      for (size_t k = 0; k < n; ++k) buf[k] = static_cast<char>(rng() % 64 + 32);
      out.write(buf.data(), static_cast<long>(n));
      done += n;
    }
  }
  auto start = Clock::now();
  RafsImage rafs = build_rafs_image(dir, src, kBuildDeadline, "warn");
  Image image{rafs, ms_between(start, Clock::now()) / 1000};
  fs::remove_all(src);
  return image;
}

// An O_DIRECT read always reaches the daemon (no page or dentry cache
// answers it): the proof that the successor serves every mount.
void probe_mounts(const fs::path& mnt, size_t mounts) {
  static thread_local char* buf = static_cast<char*>(std::aligned_alloc(4096, 4096));
  for (size_t m = 0; m < mounts; ++m) {
    std::string path = (mnt / ("m" + std::to_string(m)) / "d0" / "f0").string();
    int fd = ::open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
    REQUIRE(fd >= 0);
    ssize_t n = ::pread(fd, buf, 4096, 0);
    ::close(fd);
    REQUIRE(n == 4096);
  }
}

struct Row {
  size_t files = 0, mounts = 0;
  std::vector<double> kill_total, kill_takeover, up_total, up_takeover;
};
std::vector<Row> g_rows;
std::map<size_t, double> g_build_s;

void run_config(const Image& image, size_t files, size_t mounts) {
  TempDir tmp("nydusd-restore-bench");
  DaemonChain chain(tmp.path(), {});
  const fs::path& mnt = chain.mnt();
  auto current = chain.start_first();
  for (size_t m = 0; m < mounts; ++m) {
    fs::path cache = tmp / ("cache" + std::to_string(m));
    fs::create_directories(cache);
    nlohmann::json body = {{"source", image.boot},
                           {"fs_type", "rafs"},
                           {"config", v1_config(image.blob_dir, cache.string())}};
    auto r = current->call("POST", "/api/v1/mount?mountpoint=/m" + std::to_string(m), body.dump());
    INFO(r.body);
    REQUIRE(r.status == 204);
  }
  // The daemon saves its state after each mount change; take the latest.
  chain.save_state(*current, /*fresh=*/true);
  probe_mounts(mnt, mounts);

  Row row;
  row.files = files;
  row.mounts = mounts;
  for (bool hot : {false, true}) {
    for (int i = 0; i < g_opt.cycles; ++i) {
      auto begin = Clock::now();
      if (!hot) crash_daemon(*current);
      auto next = chain.spawn_successor();
      auto takeover = chain.take_over(*next, hot ? current.get() : nullptr);
      probe_mounts(mnt, mounts);
      auto end = Clock::now();
      (hot ? row.up_total : row.kill_total).push_back(ms_between(begin, end));
      (hot ? row.up_takeover : row.kill_takeover).push_back(ms_between(takeover, end));
      chain.save_state(*next);
      current = std::move(next);
    }
  }
  g_rows.push_back(row);
  stop_daemon(*current);
}

void print_results() {
  std::printf("\nrestore_bench: %d cycles per cell (medians, max in brackets, ms); load average %s\n",
              g_opt.cycles, load_average().c_str());
  for (const auto& [files, s] : g_build_s) std::printf("  image of %zu files built in %.1f s\n", files, s);
  if (g_rows.empty()) return;
  const Row& base = g_rows.front();
  double b[4] = {percentile(base.kill_total, 0.5), percentile(base.kill_takeover, 0.5),
                 percentile(base.up_total, 0.5), percentile(base.up_takeover, 0.5)};
  std::printf("ratios (x) are against %zu files / %zu mount(s)\n", base.files, base.mounts);
  std::printf("%7s %6s | %18s %7s | %18s %7s | %18s %7s | %18s %7s\n", "files", "mounts",
              "kill total", "ratio", "kill takeover", "ratio", "upgrade total", "ratio",
              "upgrade takeover", "ratio");
  for (const auto& r : g_rows) {
    const std::vector<double>* cols[4] = {&r.kill_total, &r.kill_takeover, &r.up_total, &r.up_takeover};
    std::printf("%7zu %6zu", r.files, r.mounts);
    for (int c = 0; c < 4; ++c) {
      double med = percentile(*cols[c], 0.5);
      char cell[40];
      std::snprintf(cell, sizeof cell, "%.1f [%.1f]", med, max_of(*cols[c]));
      std::printf(" | %18s %6.2fx", cell, b[c] > 0 ? med / b[c] : 0);
    }
    std::printf("\n");
  }
}

std::vector<size_t> parse_list(const char* text) {
  std::vector<size_t> v;
  std::stringstream s(text);
  for (std::string item; std::getline(s, item, ',');) v.push_back(std::stoul(item));
  return v;
}

}  // namespace

TEST_CASE("restore bench") {
  for (size_t files : g_opt.sizes) {
    TempDir dir("nydusd-restore-bench-image");
    Image image = build_image(dir.path(), files);
    g_build_s[files] = image.build_s;
    for (size_t mounts : g_opt.mounts) {
      INFO(files << " files, " << mounts << " mounts");
      run_config(image, files, mounts);
    }
  }
}

int main(int argc, char** argv) {
  std::vector<char*> rest = {argv[0]};
  try {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      bool has_value = i + 1 < argc;
      if (a == "--sizes" && has_value) {
        g_opt.sizes = parse_list(argv[++i]);
      } else if (a == "--mounts" && has_value) {
        g_opt.mounts = parse_list(argv[++i]);
      } else if (a == "--cycles" && has_value) {
        g_opt.cycles = std::atoi(argv[++i]);
      } else {
        rest.push_back(argv[i]);
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "restore_bench: bad list: %s\n", e.what());
    return 2;
  }
  if (g_opt.sizes.empty() || g_opt.mounts.empty() || g_opt.cycles <= 0) {
    std::fprintf(stderr, "restore_bench: --sizes, --mounts and --cycles must not be empty\n");
    return 2;
  }
  int status = run_test_cases(rest);
  print_results();
  return status;
}
