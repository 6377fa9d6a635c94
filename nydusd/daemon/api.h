// nydusd's control API (HTTP on --apisock), as a Router: a pure mapping from
// request to response over a Daemon, testable without a socket.
//
// Endpoints, methods, bodies and status codes follow the reference
// (docs/reference-nydusd.md §2): success with a body is 200, without one 204;
// errors carry {"code","message"} with the status of their ErrorKind; an
// unknown path is 404 and a known path asked with another method is 400.
// Bodies are strict: an action endpoint that takes no body answers 400 when
// it gets one, and malformed JSON is 400.
//
//   GET  /api/v1/daemon                  200 DaemonInfo (v2: backend_collection null)
//   PUT  /api/v1/daemon                  {"log_level":..} -> 204
//   PUT  /api/v1/daemon/start            Start (READY -> RUNNING), else 400
//   PUT  /api/v1/daemon/exit             stop at a request boundary, exit, no unmount
//   PUT  /api/v1/daemon/fuse/sendfd      save state + fd to --supervisor: 204;
//                                        503 before FUSE INIT, 400 without --supervisor
//   PUT  /api/v1/daemon/fuse/takeover    Takeover (INIT only, else 400): receive from
//                                        --supervisor, restore, READY: 204
//   POST|PUT|DELETE /api/v1/mount?mountpoint=P
//   GET  /api/v1/daemon/backend?mountpoint=P   the image's super block
//   GET  /api/v1/metrics[?id=P], /metrics/backend, /metrics/blobcache
//   GET  /api/v1/metrics/inflight        200 list, 204 when idle
//   GET|PUT /api/v2/daemon
//   PUT  /api/v2/blobs                   BlobCacheEntry -> bind (singleton mode): 204;
//                                        400 bad body, 409 bound already, 501 fuse mode
//   DELETE /api/v2/blobs?domain_id=D[&blob_id=B]   unbind: 204, 404 unknown;
//                                        ?blob_id= alone (cull) 501
//   GET  /api/v2/blobs[?domain_id=D]     {"blobs":[entry...]} (the reference panics)
//   POST|PUT|DELETE /api/v1/mount        501 in singleton mode
#pragma once

#include "common/http.h"
#include "nydusd/daemon/daemon.h"

namespace nydus::daemon {

// The largest request body the API accepts (a mount's config travels in it).
inline constexpr uint64_t kApiBodyLimit = 1024 * 1024;

// `daemon` must outlive the router.
Router build_api_router(Daemon& daemon);

}  // namespace nydus::daemon
