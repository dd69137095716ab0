#!/usr/bin/env bash
# The Python suite on aarch64: Debian's arm64 Python under qemu-aarch64 with the
# aarch64 build of the extension (tests/aarch64/setup_env.sh), the NEON kernel
# table the emulated CPU picks (-cpu max: neon_i8mm), and a subset of the suite
# that covers text, vision, the scheduler and the converter, plus the cross-arch
# check (tests/aarch64/test_cross_arch.py: image embeddings equal x86's within
# the int8 bound). tests/README.md names the subset and its time.
#   tests/aarch64/run_tests.sh              the CI subset
#   tests/aarch64/run_tests.sh test_x.py    any pytest arguments instead (from tests/)
# Needs qemu-user, g++-aarch64-linux-gnu, apt-get/dpkg (Debian), PyPI, and the
# package installed in the host Python (for the x86 side of the comparison).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
export BLUELM_AARCH64_BUILD=${BLUELM_AARCH64_BUILD:-$root/build/aarch64-python}
py=${PYTHON:-python}
# A hung test must not hold CI: the whole qemu pytest run gets this many seconds.
limit=${BLUELM_AARCH64_TIMEOUT:-1200}

t0=$SECONDS
bash "$root/tests/aarch64/setup_env.sh"
echo "setup: $((SECONDS - t0)) s"

echo "== x86 embeddings (host Python, installed package)"
x86=$BLUELM_AARCH64_BUILD/x86_embeddings.npz
(cd "$root/tests" && "$py" aarch64/test_cross_arch.py --dump "$x86")

cd "$root/tests"
if [ $# -eq 0 ]; then
  # Text (SmolLM2 through Model, its logits against llama.cpp's recording, the
  # per-arch decoders against transformers and llama.cpp), llguidance's aarch64
  # wheel (its tokenizer bridge and grammar errors), vision, the scheduler, the
  # converter. Left out:
  # pure-Python modules the x86 run covers (tokenizer, chat templates; their
  # aarch64 wheels run in test_model and the parity tests), long generations,
  # tests that race a thread against a long prefill with sleeps (they assume
  # native speed), the converter's pure-Python tokenizer hash (48 s here), the
  # known failure test_seeded_sampling_is_reproducible (40 s; known_failures.py),
  # test_completion's values, which assert x86's bit-identity to llama.cpp, and
  # its constrained generations (185 s here).
  set -- aarch64/test_cross_arch.py test_model.py test_arch_parity.py \
    test_completion.py::test_bad_structured_requests \
    test_vision_model.py test_vision_encoder.py test_prefill_pipeline.py test_convert.py \
    test_vision_convert.py test_llamacpp_parity.py::test_logits_prompt_tokenizes_like_llamacpp \
    test_llamacpp_parity.py::test_logits_close_to_llamacpp \
    test_llamacpp_parity.py::test_logits_argmax_matches_llamacpp
  for t in test_model.py::test_chat_answers_and_reuses_prefix \
    test_model.py::test_stream_equals_non_stream test_model.py::test_stop_string_cuts_text_in_stream_and_whole \
    test_model.py::test_max_tokens_and_eog test_model.py::test_seeded_sampling_is_reproducible \
    test_prefill_pipeline.py::test_cancel_mid_prefill_rolls_back \
    test_prefill_pipeline.py::test_keyboard_interrupt_mid_prefill_rolls_back \
    test_prefill_pipeline.py::test_model_cancel_and_interrupt_leave_it_usable \
    test_prefill_pipeline.py::test_two_threads_on_one_context_are_refused_clearly \
    test_prefill_pipeline.py::test_release_vision_frees_the_encoder_while_the_llm_prefills \
    test_convert.py::test_chktxt_hash_matches_llama_cpp_for_smollm; do
    set -- "$@" --deselect "tests/$t"
  done
fi
echo "== pytest under qemu-aarch64 ($(QEMU_CPU=${QEMU_CPU:-max} "$root/tests/aarch64/python.sh" -c \
  'import platform, bluelm_cpp._core as c; print(platform.machine(), "table", c.isa())'))"
t1=$SECONDS
set +e
PYTHONPATH="$root/tests/aarch64" BLUELM_X86_EMBEDDINGS="$x86" BLUELM_REQUIRE_CROSS_ARCH=1 \
  timeout --kill-after=30 "$limit" "$root/tests/aarch64/python.sh" -m pytest -q \
  -p no:cacheprovider -p known_failures -rfEsxXP --durations="${BLUELM_AARCH64_DURATIONS:-10}" "$@"
rc=$?
set -e
echo "aarch64 pytest: $((SECONDS - t1)) s (whole aarch64 part: $((SECONDS - t0)) s)"
[ $rc -eq 124 ] && echo "FAIL: the aarch64 run passed its ${limit} s limit (BLUELM_AARCH64_TIMEOUT)"
exit $rc
