// opendsr::api: the OpenDSR v3 HTTP API over an engine, as an http_handler that any HTTP server
// can call (the Asio/Beast server in adapters/asio, or the embedder's own).
//
// Routes, under options.base_path ("/v3"):
//   POST   /requests (or /requests/)   201  create a request              signed
//   GET    /requests/{id}              200  its status object             signed
//   GET    /requests?group_id={g}      200  the group's status objects    signed
//   DELETE /requests/{id}              202  cancel it                     signed
//   GET    /discovery (or /discovery/) 200  capabilities and certificate  public, unsigned
//   GET    <path of the certificate URL>   the certificate PEM            public, unsigned
//   GET    /results/{token}            200  a results package (zip), streamed; 404 when the token
//                                           names nothing of this workspace or no data matched,
//                                           410 once expired                (with options.results)
//   POST   /subject-data               200  import JSON Lines (docs/import.md)
//                                                                           (with options.subjects)
//   GET    /outputs                    200  the workspace's outputs, credentials masked   signed
//   POST   /outputs                    201  add an output                                signed
//   PATCH  /outputs/{name}             200  change one (an open circuit closes)          signed
//   DELETE /outputs/{name}             200  remove one             (docs/distribution.md) signed
// A known route with another method is 405 with Allow; anything else is 404.
//
// Checks run in this order, the first failure answering: route and method, body size (from
// Content-Length, before any of the body is read), credentials (401 with WWW-Authenticate),
// rate limit (429 with Retry-After), Content-Type (415), then the engine's own (JSON, schema,
// duplicate id, group size, in-flight conflict). Every error is the OpenDSR JSON error body
// (<opendsr/error_body.hpp>) with Cache-Control: no-store; none holds an identity value or a
// credential.
//
// Signed responses carry X-OpenDSR-Processor-Domain and X-OpenDSR-Signature over the exact body
// bytes; a body signed before (an unchanged status read) reuses its signature. Successful
// responses of rate-limited routes carry X-mp-rate-limit-percentage-used.
//
// Thread safety: on_head(), on_error() and handle() may be called from any thread concurrently.
// Ownership: the engine, signer, directory and clock must outlive the api.
#pragma once

#include <opendsr/clock.hpp>
#include <opendsr/engine.hpp>
#include <opendsr/error_body.hpp>
#include <opendsr/group_commit.hpp>
#include <opendsr/http.hpp>
#include <opendsr/rate_limits.hpp>
#include <opendsr/result.hpp>
#include <opendsr/results_store.hpp>
#include <opendsr/signer.hpp>
#include <opendsr/subject_data.hpp>
#include <opendsr/workspaces.hpp>

#include <cstddef>
#include <memory>
#include <string>

namespace opendsr {

struct api_options {
  // The path every API route starts with: the major version. Default: "/v3".
  std::string base_path = "/v3";
  // The largest POST body; a larger one is 413. Default: 256 KiB.
  std::size_t max_body_bytes = 256 * 1024;
  // Per-workspace limits. Default: see rate_limits.
  rate_limits limits;
  // The shape of error bodies. Default: mParticle's top-level form.
  error_body_form error_form = error_body_form::top_level;
  // Commits POSTs together with the others that arrive at the same time (group commit); not
  // owned. Each POST waits on its own server thread for its batch to commit, then renders and
  // signs its response there, so the server needs more threads than cores for batches to form.
  // Default (nullptr): each POST commits alone.
  group_committer* committer = nullptr;
  // Where results packages are read for GET /results/{token}; not owned. Default (nullptr): the
  // route does not exist (404).
  results_store* results = nullptr;
  // Where POST /subject-data imports; not owned. Default (nullptr): the route does not exist.
  subject_data* subjects = nullptr;
  // The largest POST /subject-data body; a larger one is 413. Default: 16 MiB.
  std::size_t max_import_bytes = 16 * 1024 * 1024;
  // How many distinct signed bodies to remember for signature reuse; 0 signs every response.
  // Default: 16384 (about 6 MiB).
  std::size_t signature_cache_entries = 16384;
};

class api final : public http_handler {
 public:
  // Returns errc::invalid_argument naming an option that is unusable.
  static result<std::unique_ptr<api>> open(engine& engine, const signer& signer, const workspace_directory& workspaces,
                                           const clock& clock, api_options options = {});
  ~api() override;

  http_head_decision on_head(const http_request& head) override;
  http_response on_error(const error& e) override;

  // Answers a complete request (both phases at once), for servers that read whole requests.
  http_response handle(http_request request);

 private:
  struct impl;
  explicit api(std::unique_ptr<impl> impl);
  std::unique_ptr<impl> impl_;
};

}  // namespace opendsr
