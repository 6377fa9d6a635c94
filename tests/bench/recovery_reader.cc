// recovery_reader: the load and the clock of tests/bench/recovery_bench.sh.
// Not a test. Statically linked, so the same binary runs on the host and,
// bind-mounted, inside a container whose root file system is the nydus image.
//
//   recovery_reader gen DIR FILES MIB
//       Writes DIR/f000.bin ... (FILES files of MIB MiB): 4 KiB blocks that
//       alternate random words and one repeated word (as failover_bench), so
//       lz4 really compresses and the content is a pure function of
//       (file, offset): readers verify every byte without a copy of the source.
//   recovery_reader run ROOT OUT [--readers 8] [--files N] [--file-mib M]
//                       [--warm-files W] [--cold-percent P]
//       Waits for the file OUT.go, starts the readers on ROOT/f*.bin and
//       runs until the file OUT.stop exists. Each read: open (O_DIRECT when the file system takes it,
//       otherwise buffered with POSIX_FADV_DONTNEED after the read, so the page
//       cache never answers), pread 4 KiB or 1 MiB (50/50), close. With
//       probability P% the read goes to a 1 MiB chunk of files [W, N) no read
//       has touched yet (uncached in nydusd's blob cache: fetch from the
//       backend, decompress, fill the cache), otherwise to a random offset in
//       files [0, W) (warmed before the run). Every byte is compared with the
//       generator. Writes OUT.progress (ops errors) every 20 ms, the first
//       errors to OUT.errors, and at the end every read as a binary record
//       (start_ns, end_ns: CLOCK_MONOTONIC; kind; ok) to OUT.samples.
//   recovery_reader warm ROOT FILES
//       Reads files [0, FILES) once, whole (fills nydusd's blob cache).
//   recovery_reader now                    CLOCK_MONOTONIC in ns.
//   recovery_reader kill PID...            prints CLOCK_MONOTONIC ns, then SIGKILLs.
//   recovery_reader wait-running SOCK OLD_PID TIMEOUT_MS
//       Polls GET /api/v1/daemons on the snapshotter's system.sock (1 ms apart)
//       until a daemon other than OLD_PID is RUNNING; prints "NS PID" (the
//       time it was seen). Exit 1 on timeout.
//   recovery_reader analyze SAMPLES EVENTS BASE_FROM BASE_TO
//       EVENTS: one "t0 t1" per cycle (ns). A read overlaps a cycle when it
//       ran at any time within [t0, t1]. Prints key=value lines: baseline
//       p50/p99 of reads completed in [BASE_FROM, BASE_TO] (no event), and
//       per-cycle stall (the longest read overlapping the cycle) as
//       p50/p99/max over cycles, the distribution of all overlapping reads,
//       errors inside and outside cycles, and the error span (event -> end of
//       the last failed read before the next event: the outage readers saw).
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/bench/bench_content.h"

using namespace nydus::bench;

namespace {

constexpr int kMaxLoggedErrors = 50;

uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

std::string file_name(size_t f) {
  char name[32];
  std::snprintf(name, sizeof name, "f%03zu.bin", f);
  return name;
}

int usage() {
  std::fprintf(stderr, "usage: recovery_reader gen|run|warm|now|kill|wait-running|analyze ... (see the source)\n");
  return 2;
}

// --- gen -------------------------------------------------------------------

int cmd_gen(const std::string& dir, size_t files, size_t mib) {
  std::vector<char> buf(kChunk);
  for (size_t f = 0; f < files; ++f) {
    std::string path = dir + "/" + file_name(f);
    FILE* out = std::fopen(path.c_str(), "wb");
    if (!out) {
      std::perror(path.c_str());
      return 1;
    }
    for (size_t off = 0; off < (mib << 20); off += kChunk) {
      fill(f, off, kChunk, buf.data());
      if (std::fwrite(buf.data(), 1, kChunk, out) != kChunk) {
        std::perror(path.c_str());
        std::fclose(out);
        return 1;
      }
    }
    if (std::fclose(out) != 0) return 1;
  }
  return 0;
}

// --- run -------------------------------------------------------------------

enum Kind : uint8_t { kWarmSmall, kWarmLarge, kColdSmall, kColdLarge };

struct Sample {
  uint64_t start;
  uint64_t end;
  uint8_t kind;
  uint8_t ok;
  uint8_t pad[6];
};
static_assert(sizeof(Sample) == 24);

struct RunOptions {
  std::string root;
  std::string out;
  unsigned readers = 8;
  size_t files = 64;
  size_t file_mib = 16;
  size_t warm_files = 16;
  unsigned cold_percent = 2;
};

class Load {
 public:
  explicit Load(const RunOptions& o) : o_(o), cold_(o.warm_files, o.files, o.file_mib) {
    samples_.resize(o_.readers);
  }

  void start() {
    for (unsigned i = 0; i < o_.readers; ++i) threads_.emplace_back(&Load::reader, this, i);
  }
  void stop() {
    stop_ = true;
    for (auto& t : threads_) t.join();
  }
  uint64_t ops() const { return ops_.load(); }
  uint64_t errors() const { return errors_.load(); }
  uint64_t cold_served() const { return cold_.served(); }
  size_t cold_total() const { return cold_.total(); }
  bool direct() const { return direct_.load(); }
  const std::vector<std::vector<Sample>>& samples() const { return samples_; }

 private:
  void note_error(const std::string& message) {
    errors_.fetch_add(1);
    std::lock_guard<std::mutex> lock(mu_);
    if (logged_ >= kMaxLoggedErrors) return;
    ++logged_;
    std::string path = o_.out + ".errors";
    if (FILE* e = std::fopen(path.c_str(), "a")) {
      std::fprintf(e, "%llu %s\n", static_cast<unsigned long long>(now_ns()), message.c_str());
      std::fclose(e);
    }
  }

  // One read; returns false and logs on any error or mismatch.
  bool read_once(size_t f, uint64_t off, size_t len, ReadBuffer& buf) {
    std::string path = o_.root + "/" + file_name(f);
    int fd = -1;
    if (direct_.load()) {
      fd = ::open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
      if (fd < 0 && errno == EINVAL) {
        direct_ = false;  // e.g. overlayfs over FUSE without direct I/O
      }
    }
    if (fd < 0 && !direct_.load()) fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      note_error(path + ": open: " + std::strerror(errno));
      return false;
    }
    size_t done = 0;
    bool ok = true;
    while (done < len) {
      ssize_t n = ::pread(fd, buf.data() + done, len - done, static_cast<off_t>(off + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        note_error(path + " @" + std::to_string(off + done) + ": pread: " + (n == 0 ? "short read" : std::strerror(errno)));
        ok = false;
        break;
      }
      done += static_cast<size_t>(n);
    }
    if (ok) {
      size_t i = buf.mismatch(f, off, len);
      if (i != len) {
        note_error(path + " @" + std::to_string(off) + "+" + std::to_string(len) + ": content mismatch at byte " +
                   std::to_string(off + i));
        ok = false;
      }
    }
    if (!direct_.load()) (void)::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
    return ok;
  }

  void reader(unsigned index) {
    std::mt19937_64 rng(1000 + index);
    const uint64_t file_size = o_.file_mib << 20;
    ReadBuffer buf;
    auto& out = samples_[index];
    out.reserve(1 << 20);
    while (!stop_.load(std::memory_order_relaxed)) {
      bool large = rng() % 2 == 0;
      size_t len = large ? kLarge : kSmall;
      bool cold = o_.cold_percent > 0 && rng() % 100 < o_.cold_percent;
      size_t f = 0;
      uint64_t off = 0;
      // Once every uncached chunk was read, fall back to warm.
      if (cold && !cold_.next(large, rng, &f, &off)) cold = false;
      if (!cold) {
        f = o_.warm_files > 0 ? rng() % o_.warm_files : rng() % o_.files;
        off = random_offset(rng, file_size, len);
      }
      uint64_t t0 = now_ns();
      bool ok = read_once(f, off, len, buf);
      uint64_t t1 = now_ns();
      Sample s{};
      s.start = t0;
      s.end = t1;
      s.kind = static_cast<uint8_t>((cold ? 2 : 0) + (large ? 1 : 0));
      s.ok = ok ? 1 : 0;
      out.push_back(s);
      ops_.fetch_add(1, std::memory_order_relaxed);
      if (!ok) std::this_thread::sleep_for(std::chrono::milliseconds(1));  // a dead mount fails fast: do not spin
    }
  }

  const RunOptions& o_;
  ColdChunks cold_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> direct_{true};
  std::atomic<uint64_t> ops_{0};
  std::atomic<uint64_t> errors_{0};
  std::mutex mu_;
  int logged_ = 0;
  std::vector<std::thread> threads_;
  std::vector<std::vector<Sample>> samples_;
};

bool write_file(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (!f) return false;
  std::fputs(text.c_str(), f);
  std::fclose(f);
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

int cmd_run(const RunOptions& o) {
  Load load(o);
  std::string go_file = o.out + ".go";
  std::string stop_file = o.out + ".stop";
  struct stat st;
  // The bench warms the blob cache first, then says go.
  while (::stat(go_file.c_str(), &st) != 0) {
    if (::stat(stop_file.c_str(), &st) == 0) return 1;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  load.start();
  while (::stat(stop_file.c_str(), &st) != 0) {
    write_file(o.out + ".progress", std::to_string(load.ops()) + " " + std::to_string(load.errors()) + "\n");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  load.stop();
  FILE* f = std::fopen((o.out + ".samples").c_str(), "wb");
  if (!f) return 1;
  for (const auto& v : load.samples()) std::fwrite(v.data(), sizeof(Sample), v.size(), f);
  std::fclose(f);
  write_file(o.out + ".progress", std::to_string(load.ops()) + " " + std::to_string(load.errors()) + "\n");
  write_file(o.out + ".summary", "ops=" + std::to_string(load.ops()) + " errors=" + std::to_string(load.errors()) +
                                      " cold_served=" + std::to_string(load.cold_served()) + " cold_total=" +
                                      std::to_string(load.cold_total()) + " o_direct=" + (load.direct() ? "1" : "0") +
                                      "\n");
  return 0;
}

int cmd_warm(const std::string& root, size_t files) {
  std::vector<char> buf(kLarge);
  for (size_t f = 0; f < files; ++f) {
    std::string path = root + "/" + file_name(f);
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      std::perror(path.c_str());
      return 1;
    }
    while (::read(fd, buf.data(), buf.size()) > 0) {
    }
    (void)::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
  return 0;
}

// --- control ---------------------------------------------------------------

// One HTTP/1.1 GET over a unix socket (Connection: close); the body or "".
std::string http_get(const std::string& sock, const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", sock.c_str());
  timeval tv{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return "";
  }
  std::string req = "GET " + path + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
  if (::write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
    ::close(fd);
    return "";
  }
  std::string resp;
  char buf[8192];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) resp.append(buf, static_cast<size_t>(n));
  ::close(fd);
  auto pos = resp.find("\r\n\r\n");
  return pos == std::string::npos ? "" : resp.substr(pos + 4);
}

int cmd_wait_running(const std::string& sock, int old_pid, int timeout_ms) {
  uint64_t deadline = now_ns() + static_cast<uint64_t>(timeout_ms) * 1000000ULL;
  while (now_ns() < deadline) {
    auto j = nlohmann::json::parse(http_get(sock, "/api/v1/daemons"), nullptr, false);
    if (j.is_array()) {
      for (const auto& d : j) {
        int pid = d.value("pid", 0);
        if (pid > 0 && pid != old_pid && d.value("state", "") == "RUNNING") {
          std::printf("%llu %d\n", static_cast<unsigned long long>(now_ns()), pid);
          return 0;
        }
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return 1;
}

// --- analyze ---------------------------------------------------------------

double pct(std::vector<uint64_t> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p / 100.0 * static_cast<double>(v.size() - 1) + 0.5);
  return static_cast<double>(v[std::min(i, v.size() - 1)]) / 1000.0;  // µs
}

int cmd_analyze(const std::string& samples_path, const std::string& events_path, uint64_t base_from,
                uint64_t base_to) {
  std::vector<Sample> s;
  if (FILE* f = std::fopen(samples_path.c_str(), "rb")) {
    Sample x;
    while (std::fread(&x, sizeof x, 1, f) == 1) s.push_back(x);
    std::fclose(f);
  } else {
    std::perror(samples_path.c_str());
    return 1;
  }
  std::vector<std::pair<uint64_t, uint64_t>> ev;
  if (FILE* f = std::fopen(events_path.c_str(), "r")) {
    unsigned long long a, b;
    while (std::fscanf(f, "%llu %llu", &a, &b) == 2) ev.push_back({a, b});
    std::fclose(f);
  }
  std::sort(s.begin(), s.end(), [](const Sample& a, const Sample& b) { return a.start < b.start; });
  std::vector<uint64_t> base, base_kind[4], overlap, stalls;
  uint64_t errors = 0, errors_in = 0, ops = s.size(), ok_in = 0;
  for (const auto& x : s) {
    if (!x.ok) ++errors;
    if (x.ok && x.end >= base_from && x.end <= base_to) {
      base.push_back(x.end - x.start);
      base_kind[x.kind & 3].push_back(x.end - x.start);
    }
  }
  // Reads are sorted by start; the longest read is bounded by the run, so a
  // linear scan per event is fine for the sizes here (a few million reads).
  std::vector<char> in_event(s.size(), 0);
  for (const auto& [t0, t1] : ev) {
    uint64_t worst = 0;
    auto last = std::upper_bound(s.begin(), s.end(), t1, [](uint64_t t, const Sample& x) { return t < x.start; });
    for (auto it = s.begin(); it != last; ++it) {
      if (it->end < t0) continue;
      size_t i = static_cast<size_t>(it - s.begin());
      if (!in_event[i]) {
        in_event[i] = 1;
        overlap.push_back(it->end - it->start);
        if (!it->ok) ++errors_in;
        else ++ok_in;
      }
      worst = std::max(worst, it->end - it->start);
    }
    stalls.push_back(worst);
  }
  double base_p99 = pct(base, 99);
  std::printf("ops=%llu errors=%llu errors_in_cycles=%llu cycles=%zu\n", static_cast<unsigned long long>(ops),
              static_cast<unsigned long long>(errors), static_cast<unsigned long long>(errors_in), ev.size());
  std::printf("base_n=%zu base_p50_us=%.0f base_p99_us=%.0f base_max_us=%.0f\n", base.size(), pct(base, 50), base_p99,
              pct(base, 100));
  const char* names[4] = {"warm4k", "warm1m", "cold4k", "cold1m"};
  for (int k = 0; k < 4; ++k)
    std::printf("base_%s_n=%zu base_%s_p50_us=%.0f base_%s_p99_us=%.0f\n", names[k], base_kind[k].size(), names[k],
                pct(base_kind[k], 50), names[k], pct(base_kind[k], 99));
  std::printf("stall_p50_us=%.0f stall_p99_us=%.0f stall_max_us=%.0f\n", pct(stalls, 50), pct(stalls, 99),
              pct(stalls, 100));
  std::printf("overlap_n=%zu overlap_p50_us=%.0f overlap_p99_us=%.0f\n", overlap.size(), pct(overlap, 50),
              pct(overlap, 99));
  // Outage seen by the readers (restart): from the event to the end of the
  // last failed read that started before the next event.
  std::vector<uint64_t> errspans;
  for (size_t e = 0; e < ev.size(); ++e) {
    uint64_t from = ev[e].first;
    uint64_t to = e + 1 < ev.size() ? ev[e + 1].first : UINT64_MAX;
    uint64_t last_end = from;
    for (const auto& x : s)
      if (!x.ok && x.start >= from && x.start < to) last_end = std::max(last_end, x.end);
    errspans.push_back(last_end - from);
  }
  std::printf("errspan_p50_us=%.0f errspan_max_us=%.0f\n", pct(errspans, 50), pct(errspans, 100));
  std::vector<uint64_t> windows;
  for (const auto& [t0, t1] : ev) windows.push_back(t1 - t0);
  std::printf("window_p50_us=%.0f window_max_us=%.0f\n", pct(windows, 50), pct(windows, 100));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  std::string cmd = argv[1];
  std::vector<std::string> a(argv + 2, argv + argc);
  try {
    if (cmd == "gen" && a.size() == 3) return cmd_gen(a[0], std::stoul(a[1]), std::stoul(a[2]));
    if (cmd == "warm" && a.size() == 2) return cmd_warm(a[0], std::stoul(a[1]));
    if (cmd == "now") {
      std::printf("%llu\n", static_cast<unsigned long long>(now_ns()));
      return 0;
    }
    if (cmd == "kill" && !a.empty()) {
      std::printf("%llu\n", static_cast<unsigned long long>(now_ns()));
      std::fflush(stdout);
      int rc = 0;
      for (const auto& p : a)
        if (::kill(std::stoi(p), SIGKILL) != 0) rc = 1;
      return rc;
    }
    if (cmd == "wait-running" && a.size() == 3) return cmd_wait_running(a[0], std::stoi(a[1]), std::stoi(a[2]));
    if (cmd == "analyze" && a.size() == 4)
      return cmd_analyze(a[0], a[1], std::stoull(a[2]), std::stoull(a[3]));
    if (cmd == "run" && a.size() >= 2) {
      RunOptions o;
      o.root = a[0];
      o.out = a[1];
      for (size_t i = 2; i + 1 < a.size(); i += 2) {
        const std::string& k = a[i];
        unsigned long v = std::stoul(a[i + 1]);
        if (k == "--readers") o.readers = static_cast<unsigned>(v);
        else if (k == "--files") o.files = v;
        else if (k == "--file-mib") o.file_mib = v;
        else if (k == "--warm-files") o.warm_files = v;
        else if (k == "--cold-percent") o.cold_percent = static_cast<unsigned>(v);
        else return usage();
      }
      return cmd_run(o);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "recovery_reader: %s\n", e.what());
    return 2;
  }
  return usage();
}
