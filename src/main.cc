#include "cli/cli.h"

int main(int argc, char** argv) { return grid::cli::Main(argc, argv); }
