"""LongBench v1/E/v2 (tasks/longbench*.py): metrics on hand-computed cases, prompts verbatim, truncation exact in
tokens, averages, and LongBench v2's answer parsing."""

from __future__ import annotations

import json

import pytest

from longrecipe.tasks import longbench as lb


def test_longbench_v2_answer_parsing():
    from longrecipe.tasks import longbench_v2 as v2

    assert v2.extract_answer("The correct answer is (C).") == "C"
    assert v2.extract_answer("**The correct answer is B**") == "B"
    assert v2.extract_answer("I think C") is None
    recs = [{"answer": "A", "difficulty": "easy", "length": "short"}, {"answer": "B", "difficulty": "hard",
                                                                         "length": "long"}]
    assert v2.summary(recs, ["A", None]) == {"Overall": 50.0, "Easy": 100.0, "Hard": 0.0, "Short": 100.0,
                                             "Long": 0.0}
    prompt = v2.fill(v2.TEMPLATE_0SHOT, {"context": " doc ", "question": "Q?", "choice_A": "a", "choice_B": "b",
                                          "choice_C": "c", "choice_D": "d"})
    assert prompt.startswith("Please read the following text and answer the question below.\n\n<text>\ndoc\n</text>")
    assert prompt.endswith('Format your response as follows: "The correct answer is (insert answer here)".')


def test_datasets_prompts_and_lengths():
    assert len(lb.DATASETS) == 21 and len(lb.DATASETS_E) == 13 and set(lb.DATASETS_E) <= set(lb.DATASETS)
    assert lb.MAX_NEW_TOKENS["gov_report"] == 512 and lb.MAX_NEW_TOKENS["hotpotqa"] == 32
    assert lb.MAX_NEW_TOKENS["lcc"] == 64 and lb.MAX_NEW_TOKENS["narrativeqa"] == 128
    # verbatim, including the reference's own quirks ("asconcisely", the space before "Answer the question")
    assert lb.PROMPTS["narrativeqa"].startswith("You are given a story, which can be either a novel or a movie "
                                                "script, and a question. Answer the question asconcisely as you can")
    assert "\n\n Answer the question based on the above article" in lb.PROMPTS["qasper"]
    assert lb.PROMPTS["lcc"] == "Please complete the code given below. \n{context}Next line of code:\n"
    assert lb.PROMPTS["passage_count"].endswith("The final answer is: ")
    assert lb.PROMPTS["multifieldqa_zh"].endswith("问题：{input}\n回答：")


def test_qa_f1_by_hand():
    # normalised: "cat sat on mat" vs "cat on mat": 3 common, P = 3/4, R = 1 -> F1 = 2*0.75/1.75 = 6/7
    assert lb.qa_f1_score("The cat sat on the mat.", "a cat on mat") == pytest.approx(6 / 7)
    assert lb.qa_f1_score("Paris!", "paris") == 1.0 and lb.qa_f1_score("", "x") == 0.0


def test_qa_f1_zh_by_hand():
    # jieba: 北京/是/中国/的/首都 vs 北京: 1 common, P = 1/5, R = 1 -> F1 = 2*0.2/1.2 = 1/3
    assert lb.qa_f1_zh_score("北京是中国的首都", "北京") == pytest.approx(1 / 3)
    assert lb.qa_f1_zh_score("北京。", "北京") == 1.0  # Chinese punctuation removed


def test_rouge_l_as_the_reference_computes_it():
    # the `rouge` package counts unique words: ref {the,cat,was,under,bed} all hit (R = 1), pred has 6 unique
    # words (P = 5/6): F = 2PR/(P+R) = 10/11
    assert lb.rouge_score("the cat was found under the bed", "the cat was under the bed") == pytest.approx(10 / 11,
                                                                                                          abs=1e-6)
    assert lb.rouge_score("", "anything") == 0.0  # the reference scores failures as 0
    assert lb.rouge_zh_score("会议讨论了预算", "会议讨论了预算") == pytest.approx(1.0, abs=1e-6)


def test_classification_substring_rule():
    classes = ["Location", "Number", "Description", "Entity"]
    assert lb.classification_score("Number and Location", "Number", all_classes=classes) == 0.5
    assert lb.classification_score("Human being", "Human being", all_classes=["Human being", "Human"]) == 1.0
    # the reference removes while iterating: "a" is dropped, the next name ("b") is skipped and kept -> 1/2
    assert lb.classification_score("a b", "a b", all_classes=["a b", "a", "b"]) == 0.5
    assert lb.classification_score("nothing", "Number", all_classes=classes) == 0.0


def test_retrieval_count_and_code():
    assert lb.retrieval_score("Paragraph 3, maybe Paragraph 5", "Paragraph 3") == 0.5
    assert lb.retrieval_zh_score("段落12", "段落12") == 1.0
    assert lb.count_score("There are 4 or 5 unique paragraphs", 5) == 0.5
    assert lb.count_score("no numbers", 5) == 0.0
    assert lb.code_sim_score("\n# comment\n    return x + 1\nmore", "    return x + 1") == 1.0
    assert lb.code_sim_score("// c\n`x`\nfoo()", "foo()") == 1.0
    assert lb.code_sim_score("foo(1)", "foo()") == pytest.approx(91 / 100)  # fuzz.ratio("foo(1)", "foo()") = 91


def test_score_rules():
    # first-line rule (trec, triviaqa, samsum, lsht), max over answers
    assert lb.score("trec", "Number\nLocation", ["Number"], ["Number", "Location"]) == 1.0
    assert lb.score("hotpotqa", "Paris", ["London", "paris"]) == 1.0
    assert lb.score("triviaqa", "\n\nParis\nLondon", ["Paris"]) == 1.0
    assert lb.dataset_score("hotpotqa", ["Paris", "Rome"], [["Paris"], ["Madrid"]]) == 50.0
    with pytest.raises(ValueError):
        lb.score("nq", "x", ["x"])


def test_category_averages_reproduce_the_leaderboard():
    # LongBench README, GPT-3.5-Turbo-16k: English categories 39.8 38.7 26.5 67.1 54.1 37.8 -> Avg 44.0;
    # Chinese 61.2 28.7 16.0 29.2 54.1 77.5 -> Avg 44.45 (published 44.5). Code is shared by both languages.
    en = {"Single-Doc QA": 39.8, "Multi-Doc QA": 38.7, "Summarization": 26.5, "Few-shot Learning": 67.1,
          "Code Completion": 54.1, "Synthetic Tasks": 37.8}
    zh = {"Single-Doc QA": 61.2, "Multi-Doc QA": 28.7, "Summarization": 16.0, "Few-shot Learning": 29.2,
          "Code Completion": 54.1, "Synthetic Tasks": 77.5}
    scores = {}
    for lang, cats in (("en", en), ("zh", zh)):
        for cat, value in cats.items():
            for d in lb.CATEGORIES[cat][lang]:
                scores[d] = value
    avg = lb.category_averages(scores)
    assert round(avg["en"]["Avg"], 1) == 44.0 and round(avg["zh"]["Avg"], 2) == 44.45
    assert avg["en"]["Code Completion"] == avg["zh"]["Code Completion"] == 54.1


def test_middle_truncation_exact_in_tokens(tiny):
    _, tok = tiny
    assert lb.middle_truncate(list(range(100)), 10) == [0, 1, 2, 3, 4, 95, 96, 97, 98, 99]
    assert lb.middle_truncate([1, 2, 3], 10) == [1, 2, 3]
    record = {"context": "word " * 2000, "input": "What is the question?"}
    prompt = lb.build_prompt("narrativeqa", record, tok, 300)
    ids = tok(lb.PROMPTS["narrativeqa"].format(**record), add_special_tokens=False)["input_ids"]
    assert prompt == tok.decode(ids[:150] + ids[-150:], skip_special_tokens=True)
    assert prompt.startswith("You are given a story") and prompt.endswith("Question: What is the question?\n\nAnswer:")
    # no chat template for trec even when asked (the tiny tokenizer has none: it would raise otherwise)
    assert lb.build_prompt("trec", {"context": "c", "input": "q"}, tok, 300, chat_template=True).endswith("c\nq")


def test_buckets_and_loading(tmp_path):
    assert [lb.bucket(n) for n in (0, 3999, 4000, 7999, 8000, 20000)] == ["0-4k", "0-4k", "4-8k", "4-8k", "8k+",
                                                                          "8k+"]
    good = {"input": "q", "context": "c", "answers": ["a"], "length": 10, "dataset": "hotpotqa", "language": "en",
            "all_classes": None, "_id": "1"}
    f = tmp_path / "hotpotqa.jsonl"
    f.write_text(json.dumps(good) + "\n" + '{"input": "q"\n')
    with pytest.raises(ValueError, match=r"hotpotqa.jsonl:2: malformed JSON line"):
        lb.load(f)
    f.write_text(json.dumps({"input": "q"}) + "\n")
    with pytest.raises(ValueError, match="hotpotqa.jsonl:1: missing field 'context'"):
        lb.load(f)
    with pytest.raises(FileNotFoundError, match="LongBench data not found"):
        lb.load(tmp_path / "none.jsonl")
