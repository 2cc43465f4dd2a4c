// What the `grid` subcommands share: the global options, the command
// type, JSON printing and the broker client. cli.cc defines them; each
// group of subcommands (cli.cc, channels.cc) registers itself with CLI11.
#pragma once

#include <boost/json.hpp>

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "client/broker_client.h"
#include "core/status.h"

namespace grid::cli {

struct Globals {
  std::string key;
  std::string broker = "http://127.0.0.1:8080";
  bool json = false;
  bool quiet = false;
};

// What a command returns: a failure (printed as one line) or success.
using Run = std::function<Status()>;

void PrintJson(const boost::json::value& v);
// The field as text ("" when absent or null; numbers and objects as JSON).
std::string Str(const boost::json::value& v, std::string_view key);
Result<std::unique_ptr<client::BrokerClient>> Client(const Globals& g);

}  // namespace grid::cli
