// The Context's speculative decoding: choosing a drafter, and the two-phase
// round (propose, then advance with a mask per row) of constrained decoding.
#include "llm/llm_weights.h"
#include "python/bindings.h"
#include "runtime/draft_model.h"
#include "runtime/prompt_lookup.h"

namespace bluelm::binding {
namespace {

py::object emitted_to_py(const Emitted& e, bool logprobs) {
  if (!logprobs) return py::int_(e.token);
  py::list top;
  for (const auto& [id, v] : e.logprobs.top) top.append(py::make_tuple(id, v));
  return py::make_tuple(e.token, e.logprobs.chosen, top);
}

}  // namespace

void bind_draft(py::class_<ContextHandle>& c) {
  c.def(
       "set_draft",
       [](ContextHandle& pc, const py::object& draft, int64_t n_draft, int ngram_min, int ngram_max,
          bool measured_cost) {
         BusyGuard g(pc.busy);
         Session& s = *pc.s;
         std::unique_ptr<Drafter> d;
         if (py::isinstance<py::str>(draft)) {
           const std::string kind = draft.cast<std::string>();
           if (kind != "prompt_lookup") throw ArgumentError("draft must be 'prompt_lookup', a draft model or None, got '" + kind + "'");
           d = std::make_unique<PromptLookup>(ngram_min, ngram_max);
         } else if (!draft.is_none()) {
           if (!py::isinstance<LlmModel>(draft)) throw ArgumentError("draft must be 'prompt_lookup', a LlamaModel or None");
           const Context& t = s.context();
           d = std::make_unique<DraftModel>(draft.cast<std::shared_ptr<LlmModel>>(), t.model(), t.n_ctx(), t.n_batch(),
                                            t.n_threads(), t.kv_type());
         }
         s.set_drafter(std::move(d), n_draft, measured_cost);
       },
       py::arg("draft"), py::arg("n_draft") = 8, py::arg("ngram_min") = 1, py::arg("ngram_max") = 16,
       py::arg("measured_cost") = false,
       "Speculative decoding for the following generations: 'prompt_lookup', a LlamaModel sharing the "
       "vocabulary (a draft model), or None (off); at most n_draft tokens per round. ngram_min / ngram_max: "
       "prompt lookup's shortest agreement with the sequence's end it drafts from and the longest it compares. "
       "measured_cost: greedy generations pick draft lengths by the rounds' measured cost (else by a fixed prior).")
      .def_property_readonly("draft",
                             [](ContextHandle& pc) -> py::object {
                               const Drafter* d = pc.s->drafter();
                               return d ? py::object(py::str(d->name())) : py::none();
                             })
      .def_property_readonly("n_draft", [](ContextHandle& pc) { return pc.s->n_draft(); })
      .def(
          "propose",
          [](ContextHandle& pc) {
            BusyGuard g(pc.busy);
            py::gil_scoped_release nogil;
            return pc.s->propose();
          },
          "The next round's draft (token ids; empty where there is none). advance() verifies it.")
      .def(
          "advance",
          [](ContextHandle& pc, const py::object& draft, const py::object& masks, bool logprobs, int n_top) {
            BusyGuard g(pc.busy);
            const std::vector<int32_t> d = to_token_ids(draft, "draft: ");
            const int64_t nv = pc.s->context().model().config().n_vocab, words = (nv + 31) / 32;
            std::vector<TokenMask> rows;
            py::buffer_info keep;
            if (!masks.is_none()) {
              keep = py::buffer(masks).request();
              const int64_t want = static_cast<int64_t>(d.size()) + 1;
              if (keep.itemsize != 4 || keep.ndim != 2 || keep.shape[0] < want || keep.shape[1] != words ||
                  keep.strides[1] != 4 || keep.strides[0] != words * 4) {
                throw ArgumentError("masks must be a C-contiguous array of shape [len(draft) + 1 = " + std::to_string(want) +
                                    ", " + std::to_string(words) + "] of 32-bit words");
              }
              for (int64_t i = 0; i < want; ++i) rows.push_back(static_cast<const uint32_t*>(keep.ptr) + i * words);
            }
            std::vector<Emitted> out;
            {
              py::gil_scoped_release nogil;
              pc.s->advance(d.data(), static_cast<int64_t>(d.size()), rows.empty() ? nullptr : rows.data(), logprobs,
                            n_top, out);
            }
            py::list res;
            for (const Emitted& e : out) res.append(emitted_to_py(e, logprobs));
            return res;
          },
          py::arg("draft"), py::arg("masks") = py::none(), py::arg("logprobs") = false, py::arg("n_top") = 0,
          "One round: verify `draft` (from propose(), or a prefix of it) in one forward pass; masks: None or "
          "len(draft) + 1 rows of allowed-token bits, the grammar's mask before each drafted token and after the "
          "last. Returns the accepted tokens and one more (ids, or (id, logprob, top) with logprobs=True); an "
          "empty list once the generation ended (stop_reason).")
      .def_property_readonly(
          "draft_stats",
          [](ContextHandle& pc) {
            const DraftStats& st = pc.s->draft_stats();
            py::dict d;
            d["rounds"] = st.rounds;
            d["drafted"] = st.drafted;
            d["accepted"] = st.accepted;
            d["steps"] = st.steps;
            d["logit_passes"] = st.logit_passes;
            d["argmax_passes"] = st.argmax_passes;
            py::dict t;
            t["draft"] = st.draft_s;
            t["forward"] = st.forward_s;
            t["logits"] = st.logits_s;
            t["verify"] = st.verify_s;
            d["seconds"] = t;
            double c0, c1;
            pc.s->round_cost().line(true, c0, c1);
            d["round_cost"] = py::make_tuple(c0, c1);
            return d;
          },
          "The current generation's speculative rounds: rounds, drafted and accepted tokens; round_cost: (c0, "
          "c1), a round verifying k drafted tokens costs 1 + c0 + c1 * k plain steps as measured so far.");
}

}  // namespace bluelm::binding
