#include <catch2/catch.hpp>

#include "nydusd/daemon/state_machine.h"

using namespace nydus::daemon;

namespace {

const DaemonState kStates[] = {DaemonState::kInit, DaemonState::kReady, DaemonState::kRunning,
                               DaemonState::kStopped};
const DaemonEvent kEvents[] = {DaemonEvent::kMount, DaemonEvent::kTakeover, DaemonEvent::kStart,
                               DaemonEvent::kStop, DaemonEvent::kExit};

}  // namespace

TEST_CASE("the reference's transitions are accepted with their actions", "[state_machine]") {
  struct Row {
    DaemonState from;
    DaemonEvent event;
    DaemonState to;
    DaemonAction action;
  };
  const Row table[] = {
      {DaemonState::kInit, DaemonEvent::kMount, DaemonState::kReady, DaemonAction::kMount},
      {DaemonState::kInit, DaemonEvent::kTakeover, DaemonState::kReady, DaemonAction::kRestore},
      {DaemonState::kInit, DaemonEvent::kStop, DaemonState::kStopped, DaemonAction::kNone},
      {DaemonState::kReady, DaemonEvent::kStart, DaemonState::kRunning, DaemonAction::kStartService},
      {DaemonState::kReady, DaemonEvent::kStop, DaemonState::kStopped, DaemonAction::kUmount},
      {DaemonState::kReady, DaemonEvent::kExit, DaemonState::kStopped, DaemonAction::kNone},
      {DaemonState::kRunning, DaemonEvent::kStop, DaemonState::kReady, DaemonAction::kStopService},
  };
  for (const auto& row : table) {
    auto t = next_transition(row.from, row.event);
    INFO(state_name(row.from) << " + " << event_name(row.event));
    REQUIRE(t.has_value());
    CHECK(t->to == row.to);
    CHECK(t->action == row.action);
  }
}

TEST_CASE("every other (state, event) pair is rejected", "[state_machine]") {
  int accepted = 0;
  for (auto state : kStates) {
    for (auto event : kEvents) {
      auto planned = plan_transition(state, event);
      if (next_transition(state, event)) {
        ++accepted;
        CHECK(planned.ok());
      } else {
        REQUIRE_FALSE(planned.ok());
        CHECK(planned.error().http_status() == 400);
        CHECK_THAT(planned.error().message(),
                   Catch::Contains(std::string(state_name(state))) &&
                       Catch::Contains(std::string(event_name(event))));
      }
    }
  }
  CHECK(accepted == 7);
}

TEST_CASE("STOPPED is terminal -- RUNNING only accepts Stop", "[state_machine]") {
  for (auto event : kEvents) CHECK_FALSE(next_transition(DaemonState::kStopped, event));
  CHECK_FALSE(next_transition(DaemonState::kRunning, DaemonEvent::kStart));
  CHECK_FALSE(next_transition(DaemonState::kRunning, DaemonEvent::kExit));
  CHECK_FALSE(next_transition(DaemonState::kRunning, DaemonEvent::kTakeover));
  CHECK_FALSE(next_transition(DaemonState::kReady, DaemonEvent::kTakeover));
}

TEST_CASE("hot upgrade path: INIT -Takeover-> READY -Start-> RUNNING -- old: RUNNING -Stop-> READY -Exit-> STOPPED",
          "[state_machine]") {
  auto s = DaemonState::kInit;
  for (auto e : {DaemonEvent::kTakeover, DaemonEvent::kStart}) s = next_transition(s, e)->to;
  CHECK(s == DaemonState::kRunning);
  s = DaemonState::kRunning;
  for (auto e : {DaemonEvent::kStop, DaemonEvent::kExit}) s = next_transition(s, e)->to;
  CHECK(s == DaemonState::kStopped);
}

TEST_CASE("state names are the ones GET /api/v1/daemon reports", "[state_machine]") {
  CHECK(state_name(DaemonState::kInit) == "INIT");
  CHECK(state_name(DaemonState::kReady) == "READY");
  CHECK(state_name(DaemonState::kRunning) == "RUNNING");
  CHECK(state_name(DaemonState::kStopped) == "STOPPED");
}
