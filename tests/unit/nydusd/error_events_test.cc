#include "nydusd/daemon/error_events.h"

#include <catch2/catch.hpp>
#include <spdlog/logger.h>

using nydus::daemon::ErrorEvents;

TEST_CASE("error events keep the newest entries within the count and byte limits", "[events]") {
  ErrorEvents events(3, 1000);
  for (int i = 0; i < 5; ++i) events.record("chunk " + std::to_string(i) + " failed");
  auto j = events.to_json();
  CHECK(j["total_errors"] == 5);
  REQUIRE(j["errors"].size() == 3);
  CHECK_THAT(j["errors"][0].get<std::string>(), Catch::EndsWith(" GMT - chunk 2 failed"));
  CHECK_THAT(j["errors"][2].get<std::string>(), Catch::EndsWith("chunk 4 failed"));

  ErrorEvents small(100, 120);
  small.record(std::string(80, 'a'));
  small.record(std::string(80, 'b'));  // the first no longer fits beside it
  auto s = small.to_json();
  REQUIRE(s["errors"].size() == 1);
  CHECK(s["total_size"].get<size_t>() <= 120);
  small.record(std::string(5000, 'c'));  // larger than the whole budget: truncated, kept
  CHECK(small.to_json()["total_size"].get<size_t>() == 120);
}

TEST_CASE("the error sink takes error and critical messages only", "[events]") {
  auto events = std::make_shared<ErrorEvents>();
  spdlog::logger logger("t", ErrorEvents::make_sink(events));
  logger.set_level(spdlog::level::trace);
  logger.info("fine");
  logger.warn("meh");
  logger.error("blob {} chunk {}: digest mismatch", "b1", 7);
  logger.critical("worse");
  auto j = events->to_json();
  REQUIRE(j["errors"].size() == 2);
  CHECK_THAT(j["errors"][0].get<std::string>(), Catch::EndsWith("blob b1 chunk 7: digest mismatch"));
}
