"""RULER: verbatim templates, tight budgets, determinism, caching, scoring and aggregates against hand numbers."""

from __future__ import annotations

import json
import re

import pytest
from helpers import essays

from longrecipe.tasks import ruler
from longrecipe.tasks.ruler import common

# Reference text: NVIDIA/RULER scripts/data/synthetic/constants.py (templates and answer prefixes, verbatim).
REFERENCE = {
    "niah": ("Some special magic {type_needle_v} are hidden within the following text. Make sure to memorize it. I "
             "will quiz you about the {type_needle_v} afterwards.\n{context}\nWhat are all the special magic "
             "{type_needle_v} for {query} mentioned in the provided text?",
             " The special magic {type_needle_v} for {query} mentioned in the provided text are"),
    "variable_tracking": ("Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n"
                          "{context}\nQuestion: Find all variables that are assigned the value {query} in the text "
                          "above.", " Answer: According to the chain(s) of variable assignment in the text above, "
                          "{num_v} variables are assigned the value {query}, they are: "),
    "common_words_extraction": ("Below is a numbered list of words. In these words, some appear more often than "
                                "others. Memorize the ones that appear most often.\n{context}\nQuestion: What are "
                                "the 10 most common words in the above list?",
                                " Answer: The top 10 words that appear most often in the list are:"),
    "freq_words_extraction": ("Read the following coded text and track the frequency of each coded word. Find the "
                              "three most frequently appeared coded words. {context}\nQuestion: Do not provide any "
                              "explanation. Please ignore the dots '....'. What are the three most frequently "
                              "appeared words in the above coded text?",
                              " Answer: According to the coded text above, the three most frequently appeared "
                              "words are:"),
    "qa": ("Answer the question based on the given documents. Only give me the answer and do not output any other "
           "words.\n\nThe following are given documents.\n\n{context}\n\nAnswer the question based on the given "
           "documents. Only give me the answer and do not output any other words.\n\nQuestion: {query}",
           " Answer:"),
}

TOKENS = {"niah": 128, "variable_tracking": 30, "common_words_extraction": 120, "freq_words_extraction": 50, "qa": 32}

@pytest.fixture(scope="module")
def tok(tiny):
    return tiny[1]


def test_thirteen_tasks_and_their_settings():
    assert ruler.TASKS == ("niah_single_1", "niah_single_2", "niah_single_3", "niah_multikey_1", "niah_multikey_2",
                           "niah_multikey_3", "niah_multivalue", "niah_multiquery", "vt", "cwe", "fwe", "qa_1", "qa_2")
    assert ruler.CONFIGS["niah_multikey_3"]["args"]["type_needle_k"] == "uuids"
    assert ruler.CONFIGS["niah_multivalue"]["args"]["num_needle_v"] == 4
    assert ruler.CONFIGS["cwe"]["args"] == {"freq_cw": 30, "freq_ucw": 3, "num_cw": 10}
    assert ruler.CONFIGS["fwe"]["args"] == {"alpha": 2.0}


@pytest.mark.parametrize("kind", list(REFERENCE))
def test_templates_byte_for_byte(kind):
    module = ruler.MODULES[kind]
    assert (module.TEMPLATE, module.ANSWER_PREFIX) == REFERENCE[kind]
    assert module.TOKENS_TO_GENERATE == TOKENS[kind]
    assert ruler.TOKENS_TO_GENERATE["qa_1"] == 32 and ruler.METRIC["qa_2"] == "string_match_part"


@pytest.mark.parametrize("task", ruler.TASKS)
def test_budget_honoured_tight_and_deterministic(tok, qa_files, task):
    length = 2048 if task == "cwe" else 1024  # cwe's one-shot example alone needs ~900 tiny-tokenizer tokens
    samples = ruler.generate(task, tok, length, 3, seed=7, qa_file=qa_files.get(task))
    again = ruler.generate(task, tok, length, 3, seed=7, qa_file=qa_files.get(task))
    other = ruler.generate(task, tok, length, 3, seed=8, qa_file=qa_files.get(task))
    assert json.dumps(samples) == json.dumps(again)
    assert [s["input"] for s in samples] != [s["input"] for s in other]
    for s in samples:
        n = common.count_tokens(tok, s["input"] + s["answer_prefix"])
        assert s["prompt_tokens"] == n and s["length"] == n + ruler.TOKENS_TO_GENERATE[task] <= length
        # tight: within one haystack unit (a noise sentence, a needle, a document) of the budget, >= 98 % for
        # tasks whose units are single words
        slack = {"niah_single_1": 25, "niah_multikey_2": 35, "niah_multikey_3": 60, "vt": 25, "qa_1": 40,
                 "qa_2": 40}.get(task, 0.02 * length)
        assert s["length"] >= length - slack, (task, s["length"])
        assert all(isinstance(o, str) and o for o in s["outputs"])


def test_niah_sample_structure(tok):
    s = ruler.generate("niah_single_1", tok, 512, 1, seed=1)[0]
    assert s["input"].startswith("A special magic number is hidden within the following text. Make sure to "
                                 "memorize it. I will quiz you about the number afterwards.\n")
    key = s["answer_prefix"].split(" for ")[1].split(" mentioned")[0]
    assert s["answer_prefix"] == f" The special magic number for {key} mentioned in the provided text is"
    value = s["outputs"][0]
    assert len(value) == 7 and value.isdigit()
    assert f"One of the special magic numbers for {key} is: {value}." in s["input"]
    assert s["input"].endswith(f"What is the special magic number for {key} mentioned in the provided text?")
    assert s["answer_position"] == common.count_tokens(tok, s["input"][: s["input"].find(value)])
    assert 0 <= s["depth"] <= 1
    multi = ruler.generate("niah_multiquery", tok, 1024, 1, seed=1)[0]
    assert len(multi["outputs"]) == 4 and ", and " in multi["answer_prefix"]
    assert multi["input"].startswith("Some special magic numbers are hidden")
    assert multi["input"].count("One of the special magic numbers for") == 4


def test_vt_cwe_fwe_structure(tok):
    vt = ruler.generate("vt", tok, 1024, 1, seed=3)[0]
    names = vt["outputs"]
    assert len(names) == 5 and all(len(n) == 5 and n.isupper() for n in names)
    assert f"VAR {names[1]} = VAR {names[0]}" in vt["input"]
    assert vt["input"].count("Memorize and track") == 2  # the one-shot example, then the task
    assert vt["answer_prefix"].startswith(" Answer: According to the chain(s) of variable assignment in the text "
                                          "above, 5 variables are assigned the value ")
    cwe = ruler.generate("cwe", tok, 2048, 1, seed=3)[0]
    listing = cwe["input"].split("\n")[-2]
    words = [w.strip() for w in re.split(r"(?:^| )\d+\. ", listing) if w.strip()]
    assert len(words) == int(listing.rsplit(". ", 1)[0].rsplit(" ", 1)[-1])  # numbered 1..N
    for w in cwe["outputs"]:
        assert words.count(w) == 6  # below 4k tokens RULER repeats the 10 common words 6 times, the rest once
    fwe = ruler.generate("fwe", tok, 2048, 1, seed=3)[0]
    coded = fwe["input"].split("coded words. ")[1].split("\nQuestion")[0].split()
    counts = [coded.count(w) for w in fwe["outputs"]]
    assert counts == sorted(counts, reverse=True) and coded.count("...") > counts[0]


def test_essay_haystack_from_a_folder(tok):
    folder = essays()
    if folder is None:
        pytest.skip("no essay folder (CI sets LONGRECIPE_ESSAYS_DIR)")
    s = ruler.generate("niah_single_2", tok, 1024, 1, seed=0, essay_dir=folder)[0]
    first = " ".join(common.essay_words(folder)[:5])
    assert first in s["input"] and s["length"] >= 0.98 * 1024


def test_too_short_for_the_task(tok):
    with pytest.raises(ValueError, match="cannot hold the task's template"):
        ruler.generate("cwe", tok, 512, 1)


def test_missing_sources(tmp_path, tok):
    with pytest.raises(common.SourceError, match="no essays"):
        ruler.generate("niah_single_2", tok, 512, 1, essay_dir=str(tmp_path))
    with pytest.raises(common.SourceError, match="needs a local QA file"):
        ruler.generate("qa_1", tok, 512, 1)
    with pytest.raises(ValueError, match="unknown RULER task"):
        ruler.generate("niah_single_9", tok, 512, 1)


def test_cache_round_trip(tmp_path, tok):
    first = ruler.generate("niah_multikey_1", tok, 512, 2, seed=5, cache_dir=tmp_path)
    files = list(tmp_path.iterdir())
    assert len(files) == 1
    assert ruler.generate("niah_multikey_1", tok, 512, 2, seed=5, cache_dir=tmp_path) == first
    ruler.generate("niah_multikey_1", tok, 600, 2, seed=5, cache_dir=tmp_path)
    assert len(list(tmp_path.iterdir())) == 2


def test_scoring_by_hand():
    refs = [["1234567", "7654321"], ["abc"]]
    # sample 1 finds one of two references (0.5), sample 2 finds its only one (1.0): mean 0.75 -> 75.0
    assert ruler.score("niah_multivalue", [" 1234567 and more", "ABC"], refs) == 75.0
    # QA: any reference found counts fully (RULER), not the fraction lm-eval computes
    assert ruler.score("qa_1", ["Brenn", "nothing"], [["Brenn", "the valley of Brenn"], ["x"]]) == 50.0
    assert ruler.score("niah_single_1", ["\x00 42\n"], [["42"]]) == 100.0
    assert ruler.score("vt", ["A B", "C"], [["A", "B", "C"], ["C", "D", "E"]]) == round((2 / 3 + 1 / 3) / 2 * 100, 2)


def test_aggregate_reproduces_published_rows():
    # RULER README, Llama3.1 (8B): 4K..128K = 95.5 93.8 91.6 87.4 84.7 77.0; Avg 88.3, wAvg(inc) 85.4, wAvg(dec) 91.3,
    # effective length 32K. By hand: inc = (95.5 + 2*93.8 + 3*91.6 + 4*87.4 + 5*84.7 + 6*77.0) / 21 = 1793 / 21.
    row = dict(zip([4096, 8192, 16384, 32768, 65536, 131072], [95.5, 93.8, 91.6, 87.4, 84.7, 77.0]))
    agg = ruler.aggregate(row)
    assert round(agg["avg"], 1) == 88.3 and agg["wavg_inc"] == pytest.approx(1793 / 21)
    assert round(agg["wavg_inc"], 1) == 85.4 and round(agg["wavg_dec"], 1) == 91.3
    assert agg["effective_length"] == 32768
    # InternLM2.5 (7B): 88.1 85.5 ... -> effective 4K; LWM: 82.3 ... -> below the threshold everywhere
    assert ruler.aggregate({4096: 88.1, 8192: 85.5, 16384: 84.5})["effective_length"] == 4096
    assert ruler.aggregate({4096: 82.3, 8192: 78.4})["effective_length"] is None
    # per-task dicts are averaged over tasks first
    assert ruler.aggregate({256: {"a": 100.0, "b": 50.0}})["per_length"][256] == 75.0


def test_tokenizer_hash_is_memoised_but_follows_added_tokens(tiny_dir):
    from transformers import AutoTokenizer

    from longrecipe.base.tokenization import tokenizer_hash

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    first = tokenizer_hash(tok)
    assert tokenizer_hash(tok) == first == tokenizer_hash(AutoTokenizer.from_pretrained(tiny_dir))
    tok.add_tokens(["<extra-token>"])
    assert tokenizer_hash(tok) != first  # a changed tokenizer must not reuse cached task files


@pytest.mark.parametrize("per_unit", [1.0, 2.5, 7.0])
def test_fit_finds_the_largest_size_whatever_the_start(per_unit):
    """fit (secant start + exponential search + bisection) = the brute-force largest n within the budget."""
    from longrecipe.tasks.ruler import common as C

    class Counter:  # tokens of "x" * n: 5 template tokens + n * per_unit, in steps
        def __call__(self, text):
            return {"input_ids": [0] * (5 + int(len(text) * per_unit))}

    tok = Counter()
    for budget in (40, 333, 1000, 4097):
        best = max(n for n in range(1, 5000) if 5 + int(n * per_unit) <= budget)
        for hint in (None, 1, best - 3, best, best + 50, 10 * best):
            for unit in (0.5, per_unit, 20.0):
                text, n = C.fit(lambda k: "x" * k, tok, budget, unit, lo=1, hint=hint)
                assert n == best and text == "x" * best, (budget, hint, unit)
