// Workspace secrets as Argon2id password hashes.
#include "guard.hpp"

#include <opendsr/botan.hpp>

#include <botan/argon2.h>
#include <botan/system_rng.h>

#include <memory>

namespace opendsr::botan {
namespace {

constexpr std::uint8_t argon2id = 2;  // Botan's "y" for Argon2id
constexpr std::string_view argon2id_prefix = "$argon2id$";

class argon2_hasher final : public secret_hasher {
 public:
  explicit argon2_hasher(const argon2_parameters& p) : p_(p) {}

  result<std::string> hash(std::string_view secret) const override {
    return detail::botan_guard(errc::internal, "hashing the secret failed", [&]() -> result<std::string> {
      return Botan::argon2_generate_pwhash(secret.data(), secret.size(), Botan::system_rng(), p_.parallelism,
                                           p_.memory_kib, p_.iterations, argon2id);
    });
  }

  result<bool> check(std::string_view secret, std::string_view stored) const override {
    if (!stored.starts_with(argon2id_prefix)) return error(errc::invalid_argument, "the stored hash is not Argon2id");
    // argon2_check_pwhash recomputes the digest with the stored parameters and salt, then
    // compares it with Botan's constant_time_compare. A hash it cannot decode throws.
    return detail::botan_guard(errc::invalid_argument, "the stored hash does not decode", [&]() -> result<bool> {
      return Botan::argon2_check_pwhash(secret.data(), secret.size(), std::string{stored});
    });
  }

 private:
  argon2_parameters p_;
};

}  // namespace

result<std::unique_ptr<secret_hasher>> make_secret_hasher(const argon2_parameters& parameters) {
  if (parameters.memory_kib < 8 * parameters.parallelism || parameters.iterations == 0 || parameters.parallelism == 0)
    return error(errc::invalid_argument, "Argon2 needs iterations >= 1, parallelism >= 1 and memory >= 8 KiB per lane");
  return std::unique_ptr<secret_hasher>(std::make_unique<argon2_hasher>(parameters));
}

}  // namespace opendsr::botan
