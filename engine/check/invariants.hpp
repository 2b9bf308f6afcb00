// The invariant checker: scans a whole store and reports every way it breaks the engine's
// invariants (docs/engine.md, "Invariants"). The property tests run it after every step and the
// LMDB crash test after every recovery; an admin command may run it offline.
//
// It indexes the whole store in memory: it is for tests and offline verification, never for the
// serving path.
#pragma once

#include <opendsr/result.hpp>
#include <opendsr/storage.hpp>

#include <string>
#include <vector>

namespace opendsr::detail {

// Returns one sentence per broken invariant; empty iff the store is consistent. Storage errors
// pass through.
result<std::vector<std::string>> check_invariants(read_transaction& txn);

}  // namespace opendsr::detail
