"""RULER variable tracking: chains of `VAR X = ...` assignments in noise, with RULER's one-shot example."""

from __future__ import annotations

import string
from typing import Any

import numpy as np

from longrecipe.tasks.ruler import common as C

TEMPLATE = ("Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n{context}\n"
            "Question: Find all variables that are assigned the value {query} in the text above.")
ANSWER_PREFIX = (" Answer: According to the chain(s) of variable assignment in the text above, {num_v} variables "
                 "are assigned the value {query}, they are: ")
TOKENS_TO_GENERATE = 30
ICL_LENGTH = 500  # RULER builds its one-shot example at max_seq_length=500


def _chains(rng: np.random.Generator, num_chains: int, num_hops: int, icl: bool) -> tuple[list, list]:
    k, hops = (3, min(10, num_hops)) if icl else (5, num_hops)
    names: list[str] = []
    while len(set(names)) < num_chains * (hops + 1):
        names.append("".join(rng.choice(list(string.ascii_uppercase), size=k)))
    names = list(dict.fromkeys(names))
    variables, chains = [], []
    for c in range(num_chains):
        vs = names[c * (hops + 1) : (c + 1) * (hops + 1)]
        first = "12345" if icl else str(int(rng.integers(10000, 99999)))
        variables.append(vs)
        chains.append([f"VAR {vs[0]} = {first}"] + [f"VAR {vs[j + 1]} = VAR {vs[j]} " for j in range(hops)])
    return variables, chains


def _context(chains: list[list[str]], n: int, rng: np.random.Generator) -> str:
    sentences = [C.NOISE] * n
    for chain in chains:
        positions = sorted(rng.choice(len(sentences), size=len(chain), replace=False).tolist()) if len(
            sentences) >= len(chain) else [0] * len(chain)
        for j, (pos, link) in enumerate(zip(positions, chain)):
            sentences.insert(pos + j, link)
    return "\n".join(sentences).replace(". \n", ".\n")


def _prompt(chains, variables, n: int, place_seed: int, hops: int) -> tuple[str, str]:
    value = chains[0][0].split("=")[-1].strip()
    context = _context(chains, n, np.random.default_rng([place_seed, n]))
    return TEMPLATE.format(context=context, query=value), ANSWER_PREFIX.format(num_v=hops + 1, query=value)


def _icl_example(tokenizer: Any, rng: np.random.Generator, args: dict, wrap) -> tuple[str, list[str]]:
    """RULER's one-shot example: 3-letter names, value 12345, fitted to 500 tokens, answer appended."""
    variables, chains = _chains(rng, args["num_chains"], args["num_hops"], icl=True)
    hops = min(10, args["num_hops"])
    seed = int(rng.integers(2**63))

    def build(n: int) -> str:
        body, prefix = _prompt(chains, variables, n, seed, hops)
        return wrap(body) + prefix

    prompt, _ = C.fit(build, tokenizer, ICL_LENGTH, C.count_tokens(tokenizer, C.NOISE))
    return prompt + " " + " ".join(variables[0]) + "\n", variables[0]


def _randomize_icl(example: str, names: list[str], rng: np.random.Generator) -> str:
    """RULER re-draws the example's variable names (same lengths) and its value for every sample."""
    for name in names:
        example = example.replace(name, "".join(rng.choice(list(string.ascii_uppercase), size=len(name))))
    return example.replace("12345", str(int(rng.integers(10000, 99999))))


def generate(args: dict[str, Any], tokenizer: Any, length: int, num_samples: int, seed: int, task: str,
             essay_dir: str | None = None, wrap=lambda s: s) -> list[dict]:
    if args.get("type_haystack", "noise") != "noise":
        raise ValueError("variable tracking is implemented with RULER's default noise haystack only")
    icl, icl_names = _icl_example(tokenizer, C.sample_rng(seed, task + ":icl", length, 0), args, wrap)
    out, hint = [], None
    for index in range(num_samples):
        rng = C.sample_rng(seed, task, length, index)
        variables, chains = _chains(rng, args["num_chains"], args["num_hops"], icl=False)
        shot = _randomize_icl(icl, icl_names, rng)
        place_seed = int(rng.integers(2**63))

        def build(n: int) -> str:
            body, prefix = _prompt(chains, variables, n, place_seed, args["num_hops"])
            return wrap(shot + "\n" + body) + prefix

        prompt, hint = C.fit(build, tokenizer, length - TOKENS_TO_GENERATE, C.count_tokens(tokenizer, C.NOISE), lo=1,
                             hint=hint)
        prefix = _prompt(chains, variables, 1, place_seed, args["num_hops"])[1]
        rec = C.record(tokenizer, prompt, prefix, variables[0], index, TOKENS_TO_GENERATE)
        # the answers also occur in the one-shot example: record where the real chain starts
        body = rec["input"][len(shot) :] if rec["input"].startswith(shot) else rec["input"]
        at = rec["input"].rfind(body) + body.find(f"VAR {variables[0][0]} =")
        rec["answer_position"] = C.count_tokens(tokenizer, rec["input"][:at])
        rec["depth"] = round(rec["answer_position"] / rec["prompt_tokens"], 4)
        out.append(rec)
    return out
