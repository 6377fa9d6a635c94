// nydusd's lifecycle state machine, as a pure function (no I/O, no locks):
//
//   from     event     to       action
//   INIT     Mount     READY    Mount          kernel mount + initial image
//   INIT     Takeover  READY    Restore        adopt a predecessor's fd and state
//   INIT     Stop      STOPPED  None
//   READY    Start     RUNNING  StartService   spawn the FUSE workers
//   READY    Stop      STOPPED  Umount         kernel unmount, close the fd
//   READY    Exit      STOPPED  None           leave the mount to a successor
//   RUNNING  Stop      READY    StopService    workers stop at a request boundary
//
// These are the reference's transitions (docs/reference-nydusd.md §4.1). Two
// deliberate differences: the state moves only after its action succeeded (the
// reference advances first, so a failed Restore leaves it READY), and the
// reported state is always the machine's state (the reference keeps reporting
// INIT after Mount until Start). Any other (state, event) pair is rejected and
// leaves the state unchanged (HTTP 400, as UnexpectedEvent in the reference).
#pragma once

#include <optional>
#include <string_view>

#include "common/result.h"

namespace nydus::daemon {

enum class DaemonState { kInit, kReady, kRunning, kStopped };
enum class DaemonEvent { kMount, kTakeover, kStart, kStop, kExit };
enum class DaemonAction { kNone, kMount, kRestore, kStartService, kStopService, kUmount };

struct Transition {
  DaemonState to;
  DaemonAction action;
};

// The transition for `event` in `from`, or nullopt when the event is not
// accepted there.
std::optional<Transition> next_transition(DaemonState from, DaemonEvent event);

// next_transition as a Result: kFailedPrecondition (HTTP 400) naming the
// state and event when rejected.
Result<Transition> plan_transition(DaemonState from, DaemonEvent event);

// "INIT", "READY", "RUNNING", "STOPPED": the strings GET /api/v1/daemon reports.
std::string_view state_name(DaemonState state);
std::string_view event_name(DaemonEvent event);
std::string_view action_name(DaemonAction action);

}  // namespace nydus::daemon
