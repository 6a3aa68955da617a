"""Greedy answers of vLLM's offline engine (evaluate/vllm_backend.py) for several models in one process, run by
test_serving_parity.py in a process of its own (vLLM starts its engine there). The engine core runs inside this
process (VLLM_ENABLE_V1_MULTIPROCESSING=0): vLLM is imported once for every model, not once per engine; the
numbers are the engine's either way.

usage: python vllm_engine_answers.py REQUESTS.json OUT.json MAX_MODEL_LEN MODEL_DIR...
REQUESTS.json: [[prompt, max_new_tokens], ...]; OUT.json: {model_dir: [answer, ...]}."""

from __future__ import annotations

import gc
import json
import os
import sys


def main(requests_file: str, out_file: str, max_model_len: str, *model_dirs: str) -> None:
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    from longrecipe.evaluate.backends import Request
    from longrecipe.evaluate.vllm_backend import VLLMBackend

    requests = [Request(p, n) for p, n in json.loads(open(requests_file).read())]
    answers = {}
    for model_dir in model_dirs:
        engine = VLLMBackend(model_dir, max_model_len=int(max_model_len))
        answers[model_dir] = [str(a) for a in engine.generate(requests)]
        engine.close()
        del engine
        gc.collect()
    with open(out_file, "w") as f:
        json.dump(answers, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
