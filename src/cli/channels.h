// `grid channels …` (channels.cc).
#pragma once

#include "cli/common.h"

namespace CLI {
class App;
}

namespace grid::cli {

void AddChannels(CLI::App& app, Globals& g, Run& run);

}  // namespace grid::cli
