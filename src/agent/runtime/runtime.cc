#include "agent/runtime/runtime.h"

namespace grid::agent {

Runtime::~Runtime() = default;

}  // namespace grid::agent
