// GET and POST /v3/outputs, PATCH and DELETE /v3/outputs/{name} (docs/distribution.md): the
// outputs of the authenticated workspace, managed through the running opendsrd, which holds the
// store (opendsr output ... is its client). The api checks the route, the body size, the
// credentials, the rate limit and the Content-Type first, decodes {name}, and signs what this
// answers.
//
// What is never shown: a credential's value. Outputs are rendered from output_info, whose
// credentials the engine masks; the body parser quotes no value in its messages (a key only
// when it looks like a name); nothing here logs.
#pragma once

#include <opendsr/distribution.hpp>
#include <opendsr/engine.hpp>
#include <opendsr/result.hpp>
#include <opendsr/time.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace opendsr::detail {

// A successful answer: its status (200, 201) and JSON body.
struct outputs_reply {
  int status = 200;
  std::string body;
};

// Answers `method` on /outputs (name == nullopt: GET lists, POST adds) or on /outputs/{name}
// (PATCH changes, DELETE removes) for `workspace`:
//   GET    200 {"outputs":[OUTPUT,...]}
//   POST   201 OUTPUT      body {"name","partner","active"?,"endpoint"?,"settings"?,"credentials"}
//   PATCH  200 OUTPUT      body any of {"active","endpoint","settings","credentials"}
//   DELETE 200 {"removed":"<name>"}
// OUTPUT is render_output's object. Errors: errc::invalid_json (syntax, duplicate key) and
// errc::invalid_request (a field's rule, the engine's validation, a name already used), each
// naming the field; errc::not_found for an unknown name; the engine's others as they are.
// REQUIRES: the method is one of the four, and the route's (the api checked both).
result<outputs_reply> answer_outputs(engine& e, std::string_view workspace, std::string_view method,
                                     const std::optional<std::string>& name, std::string_view body, timestamp now);

// The body of POST /outputs, checked strictly: a JSON object of the known fields only, each
// once, settings and credentials objects of strings without repeated keys; name, partner and
// credentials required. The definition is not validated against its partner (the engine does).
result<output_definition> parse_output_definition(std::string_view body);

// The body of PATCH /outputs/{name}, as strictly; at least one field.
result<output_change> parse_output_change(std::string_view body);

// OUTPUT: {"name","partner","domain","active","endpoint"(or null),"settings":{...},
// "credentials":{masked},"circuit_open","circuit_reason"(or null),"queued","queued_items",
// "batches","dead_batches","max_items","updated"(RFC 3339)}. The workspace is not shown.
std::string render_output(const output_info& output);

}  // namespace opendsr::detail
