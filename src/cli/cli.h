// The `grid` command line: every subcommand of the single binary.
#pragma once

namespace grid::cli {

// Returns the process exit code: 0 success, 1 an error reported by the broker
// or the system (one line on stderr), 2 a usage error.
int Main(int argc, char** argv);

}  // namespace grid::cli
