#include "nydusd/daemon/state_machine.h"

namespace nydus::daemon {

std::optional<Transition> next_transition(DaemonState from, DaemonEvent event) {
  using S = DaemonState;
  using E = DaemonEvent;
  using A = DaemonAction;
  switch (from) {
    case S::kInit:
      if (event == E::kMount) return Transition{S::kReady, A::kMount};
      if (event == E::kTakeover) return Transition{S::kReady, A::kRestore};
      if (event == E::kStop) return Transition{S::kStopped, A::kNone};
      break;
    case S::kReady:
      if (event == E::kStart) return Transition{S::kRunning, A::kStartService};
      if (event == E::kStop) return Transition{S::kStopped, A::kUmount};
      if (event == E::kExit) return Transition{S::kStopped, A::kNone};
      break;
    case S::kRunning:
      if (event == E::kStop) return Transition{S::kReady, A::kStopService};
      break;
    case S::kStopped:
      break;
  }
  return std::nullopt;
}

Result<Transition> plan_transition(DaemonState from, DaemonEvent event) {
  auto transition = next_transition(from, event);
  if (!transition) {
    return make_error(ErrorKind::kFailedPrecondition, "unexpected event {} in state {}",
                      event_name(event), state_name(from));
  }
  return *transition;
}

std::string_view state_name(DaemonState state) {
  switch (state) {
    case DaemonState::kInit: return "INIT";
    case DaemonState::kReady: return "READY";
    case DaemonState::kRunning: return "RUNNING";
    case DaemonState::kStopped: return "STOPPED";
  }
  return "UNKNOWN";
}

std::string_view event_name(DaemonEvent event) {
  switch (event) {
    case DaemonEvent::kMount: return "Mount";
    case DaemonEvent::kTakeover: return "Takeover";
    case DaemonEvent::kStart: return "Start";
    case DaemonEvent::kStop: return "Stop";
    case DaemonEvent::kExit: return "Exit";
  }
  return "Unknown";
}

std::string_view action_name(DaemonAction action) {
  switch (action) {
    case DaemonAction::kNone: return "None";
    case DaemonAction::kMount: return "Mount";
    case DaemonAction::kRestore: return "Restore";
    case DaemonAction::kStartService: return "StartService";
    case DaemonAction::kStopService: return "StopService";
    case DaemonAction::kUmount: return "Umount";
  }
  return "Unknown";
}

}  // namespace nydus::daemon
