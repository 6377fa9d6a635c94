#include "nydusd/storage/inflight.h"

#include <atomic>
#include <condition_variable>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

using nydus::ErrorKind;
using nydus::Result;
using nydus::storage::ChunkData;
using nydus::storage::InflightTable;

namespace {

// Lets the leader's fetch proceed only once every caller has arrived.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0;
  void arrive() {
    std::lock_guard lock(mu);
    ++arrived;
    cv.notify_all();
  }
  bool wait_for(int n) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(10), [&] { return arrived >= n; });
  }
};

}  // namespace

TEST_CASE("inflight: concurrent callers share one fetch", "[storage][inflight]") {
  InflightTable table;
  std::atomic<int> fetches{0};
  std::atomic<int> leaders{0};
  constexpr int kThreads = 8;
  Gate gate;
  std::vector<std::thread> threads;
  std::vector<Result<ChunkData>> results(kThreads, nydus::Error(ErrorKind::kInternal, "unset"));
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      InflightTable::Role role;
      gate.arrive();
      results[i] = table.run(
          7,
          [&]() -> Result<ChunkData> {
            ++fetches;
            // Hold the fetch until everyone has at least arrived; the ones
            // that arrive later than the table lookup still wait on us.
            gate.wait_for(kThreads);
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
            return ChunkData(std::make_shared<std::vector<uint8_t>>(3, 0xAB));
          },
          &role);
      if (role == InflightTable::Role::kLeader) ++leaders;
    });
  }
  for (auto& t : threads) t.join();
  CHECK(fetches == leaders);
  CHECK(fetches <= 2);  // normally 1; a caller arriving after the publish starts anew
  for (auto& r : results) {
    REQUIRE(r.ok());
    CHECK(**r == std::vector<uint8_t>(3, 0xAB));
  }
  CHECK(table.in_flight() == 0);
}

TEST_CASE("inflight: an error reaches every waiter and the next call retries", "[storage][inflight]") {
  InflightTable table;
  std::mutex mu;
  std::condition_variable cv;
  bool waiter_in = false;
  std::atomic<int> fetches{0};

  Result<ChunkData> waiter_result = nydus::Error(ErrorKind::kInternal, "unset");
  std::thread leader_thread;
  Result<ChunkData> leader_result = nydus::Error(ErrorKind::kInternal, "unset");
  leader_thread = std::thread([&] {
    leader_result = table.run(1, [&]() -> Result<ChunkData> {
      ++fetches;
      std::unique_lock lock(mu);
      cv.wait_for(lock, std::chrono::seconds(10), [&] { return waiter_in; });
      // Give the waiter time to block on the shared future.
      lock.unlock();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      return nydus::make_error(ErrorKind::kCorrupt, "boom");
    });
  });
  // Wait until the leader is registered, then join as a waiter.
  while (table.in_flight() == 0) std::this_thread::yield();
  std::thread waiter([&] {
    {
      std::lock_guard lock(mu);
      waiter_in = true;
    }
    cv.notify_all();
    InflightTable::Role role;
    waiter_result = table.run(1, [&]() -> Result<ChunkData> {
      ++fetches;
      return nydus::make_error(ErrorKind::kInternal, "waiter should not fetch");
    }, &role);
  });
  leader_thread.join();
  waiter.join();
  REQUIRE_FALSE(leader_result.ok());
  CHECK(leader_result.error().kind() == ErrorKind::kCorrupt);
  REQUIRE_FALSE(waiter_result.ok());
  // The waiter either shared the failure or (if it came late) fetched itself.
  if (fetches == 1) CHECK(waiter_result.error().kind() == ErrorKind::kCorrupt);
  CHECK(table.in_flight() == 0);

  // Cleared: a later call fetches again and can succeed.
  auto ok = table.run(1, [&]() -> Result<ChunkData> {
    return ChunkData(std::make_shared<std::vector<uint8_t>>(1, 1));
  });
  REQUIRE(ok.ok());
}

TEST_CASE("inflight: an exception in the fetch becomes an error, not a hang", "[storage][inflight]") {
  InflightTable table;
  auto r = table.run(5, []() -> Result<ChunkData> { throw std::runtime_error("oops"); });
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().kind() == ErrorKind::kInternal);
  CHECK(table.in_flight() == 0);
}
