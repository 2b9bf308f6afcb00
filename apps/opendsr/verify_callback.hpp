// `opendsr verify-callback`: a controller's check of signed status callbacks, with the library's
// callback_verifier (include/opendsr/callback_verifier.hpp). Built with the `openssl` feature.
//
// One-shot mode checks one saved callback and prints "202 Accepted" (exit 0) or "401 <reason>"
// (exit 1); receiver mode (--listen) answers callbacks over HTTP as a controller would and prints
// one line per callback until SIGINT or SIGTERM. Usage errors exit 2.
#pragma once

namespace opendsr::app {

// Runs `opendsr verify-callback [flags]`. REQUIRES: argv[1] is "verify-callback". Returns the
// process's exit status.
int verify_callback_main(int argc, char** argv);

}  // namespace opendsr::app
