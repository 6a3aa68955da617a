"""The generated-sample cache (tasks/cache.py): a second build of the same samples reads them back, anything that
decides them (options, length, seed, a data source's content) keys a new file, and a damaged file is rebuilt."""

from __future__ import annotations

from dataclasses import dataclass

from longrecipe.tasks import cache
from longrecipe.tasks.base import Sample


@dataclass(frozen=True)
class Opts:
    shots: int = 2


def test_samples_are_read_back_and_keyed_by_what_decides_them(tmp_path, monkeypatch, tiny_dir):
    from longrecipe.base.tokenization import load_tokenizer

    monkeypatch.setenv("LONGRECIPE_CACHE", str(tmp_path))
    tok = load_tokenizer(tiny_dir)
    built = []

    def build() -> list[Sample]:
        built.append(1)
        return [Sample(0, "prompt", ["a"], "Answer:", 7, "t", 1024, 12, 0.5, 3, {"question": "q?"})]

    where = cache.path("s", 1, tok, 1024, 1, 0, Opts())
    first = cache.samples(where, build)
    again = cache.samples(cache.path("s", 1, tok, 1024, 1, 0, Opts()), build)
    assert again == first and len(built) == 1 and where.parent == tmp_path / "samples" / "s"
    others = {cache.path("s", 1, tok, 2048, 1, 0, Opts()), cache.path("s", 1, tok, 1024, 1, 1, Opts()),
              cache.path("s", 1, tok, 1024, 1, 0, Opts(shots=1)), cache.path("s", 2, tok, 1024, 1, 0, Opts()),
              cache.path("s", 1, tok, 1024, 1, 0, Opts(), {"essays": "abc"})}
    assert where not in others and len(others) == 5
    where.write_text('{"index": 0, "inp')  # a torn file: rebuilt, not an error
    assert cache.samples(where, build) == first and len(built) == 2
