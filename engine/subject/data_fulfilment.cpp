#include <opendsr/data_fulfilment.hpp>

namespace opendsr {
namespace {

class data_fulfilment final : public fulfilment {
 public:
  data_fulfilment(subject_data& d, results_store& r, data_fulfilment_options o)
      : data_(d), results_(r), options_(std::move(o)) {}

  result<fulfilment_done> fulfil(const fulfilment_job& job) override {
    auto profile = data_.resolve(job.controller_id, job.identities);
    if (!profile) return std::move(profile).error();
    if (job.type == request_type::erasure) {
      if (*profile) {
        auto erased = data_.erase(job.controller_id, **profile);
        // Erased by another job meanwhile (two requests for one subject): nothing left to do.
        if (!erased && erased.error() != errc::not_found) return std::move(erased).error();
      }
      return fulfilment_done{};
    }
    if (job.results_token.empty()) return error(errc::invalid_argument, "An access or portability job has no results token.");
    if (*profile) {
      auto out = results_.begin(job.results_token);
      if (!out) return std::move(out).error();
      OPENDSR_TRY(options_.build_package(data_, job.controller_id, **profile, **out));
      auto committed = (*out)->commit();
      if (!committed) return std::move(committed).error();
    }
    return fulfilment_done{options_.results_base_url + job.results_token};
  }

 private:
  subject_data& data_;
  results_store& results_;
  const data_fulfilment_options options_;
};

}  // namespace

result<std::unique_ptr<fulfilment>> make_data_fulfilment(subject_data& data, results_store& results,
                                                         data_fulfilment_options options) {
  const std::string& base = options.results_base_url;
  const bool absolute = (base.starts_with("https://") && base.size() > 9) || (base.starts_with("http://") && base.size() > 8);
  if (!absolute || !base.ends_with('/'))
    return error(errc::invalid_argument, "results_base_url must be an absolute http or https URL ending with '/'.");
  if (!options.build_package) return error(errc::invalid_argument, "build_package must be set.");
  return std::unique_ptr<fulfilment>(std::make_unique<data_fulfilment>(data, results, std::move(options)));
}

}  // namespace opendsr
