// Helpers shared by http_server.cc and http_client.cc, kept free of Boost so
// they compile (and are tested) cheaply. Not part of the public API.
#pragma once

#include <string>
#include <string_view>

#include "net/http.h"

namespace grid::net::internal {

// Splits a request target into the decoded path and query parameters.
// Accepts origin-form ("/a?b=c"), absolute-form ("http://h/a?b=c") and "*".
void ParseTarget(std::string_view target, std::string* path, HeaderList* query);

// {"error":{"code":"<code>","message":"<message>"}} with JSON escaping.
std::string JsonErrorBody(std::string_view code, std::string_view message);

// ASCII lowercase copy.
std::string ToLower(std::string_view s);

}  // namespace grid::net::internal
