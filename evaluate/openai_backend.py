"""`--backend openai`: any OpenAI-compatible completions endpoint (`vllm serve`, SGLang, TGI), the way RULER,
HELMET and lm-eval users evaluate a served model.

Why token ids: prompts are built and fitted with the served model's own tokenizer (`--tokenizer DIR`) and sent
as token ids when the server accepts them (vLLM does), so every backend receives the same ids; a server that
refuses ids gets the text. Greedy (temperature 0), stop strings and max tokens as the other backends. Requests run
`--concurrency` at a time and are handed back as each completes, so the runner appends every finished sample at
once (out of order). Connection errors, timeouts, answers cut short, 429 and 5xx are retried with exponential
backoff (counted, and the count logged); past the retries the run stops with one line, and re-running the same
command resumes. The API key is read from the environment variable named by `--api-key-env`, never from the command
line, and is never written anywhere.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longrecipe.base.config import ConfigError, option
from longrecipe.evaluate.backends import BackendBase, Completion, Request, truncate_at_stop

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class ServerError(ValueError):
    """The endpoint cannot be used (unreachable, another model, a refused request): one line."""


@dataclass(frozen=True)
class OpenAIOptions:
    base_url: str | None = option(None, "--backend openai: the endpoint, e.g. http://127.0.0.1:8000/v1",
                                  neutral=True)
    tokenizer: str | None = option(None, "--backend openai: the served model's tokenizer directory")
    # the NAME of the environment variable holding the key, never the key
    api_key_env: str | None = option(None, "--backend openai: NAME of the environment variable that holds the API "
                                     "key (the key itself is never passed or written)", neutral=True)
    concurrency: int = option(8, "--backend openai: requests in flight", neutral=True, ge=1)
    request_timeout: float = option(600.0, "--backend openai: seconds per request", neutral=True, gt=0)
    retries: int = option(5, "--backend openai: retries (exponential backoff) on connection errors, 429 and 5xx",
                          neutral=True, ge=0)


class OpenAIBackend(BackendBase):
    name = "openai"
    Options = OpenAIOptions
    local_model = False  # a served endpoint: no local weights, no log-likelihood suites, no data-parallel engines
    streams = True  # hands back each request as it completes

    @classmethod
    def from_config(cls, cfg: Any, model_dir: Any) -> OpenAIBackend:
        from longrecipe.evaluate.config import backend_options

        o = backend_options(cfg)
        return cls(o.base_url, cfg.model, str(model_dir), o.api_key_env, o.concurrency, o.request_timeout, o.retries)

    @classmethod
    def check(cls, cfg: Any, options: OpenAIOptions) -> None:
        if not options.base_url or not options.tokenizer:
            raise ConfigError(f"--backend {cls.name} needs --base-url (e.g. http://127.0.0.1:8000/v1) and "
                              f"--tokenizer DIR (the served model's tokenizer, to build and fit prompts); --model is "
                              f"the served name")

    @classmethod
    def lm_eval_model(cls, cfg: Any, options: OpenAIOptions, model_dir: Path, window: int,
                      log: Any = print) -> tuple[str, dict[str, Any]]:
        """lm-eval's `local-completions` model on the endpoint (the served model's tokenizer, token-id requests),
        made to score what its hf model scores on the same weights: the BOS the tokenizer adds by default (hf keeps
        it, the API model drops it unless asked), and 2 tokens more than the window (the API model keeps 1 for the
        token it asks the server to generate and 1 more for rolling windows), capped at the served max_model_len.
        Our backend checks the endpoint first (unreachable, another model, an unset --api-key-env: one line) and
        reads the key, which travels as a header in memory only."""
        served = cls.from_config(cfg, model_dir)
        tok = served.tokenizer
        probe = tok("a")["input_ids"]
        bos = tok.bos_token_id is not None and bool(probe) and probe[0] == tok.bos_token_id
        wide = int(window) + 2
        args = {"base_url": options.base_url.rstrip("/") + "/completions", "model": cfg.model,
                "tokenizer": str(model_dir), "tokenizer_backend": "huggingface", "tokenized_requests": True,
                "num_concurrent": options.concurrency, "max_retries": max(1, options.retries),
                "timeout": int(options.request_timeout), "seed": cfg.seed, "trust_remote_code": False,
                "add_bos_token": bos, "max_length": min(wide, served.max_length) if served.max_length else wide}
        return "local-completions", {**args, "header": {"Authorization": f"Bearer {served._key}"}} if served._key \
            else args

    def __init__(self, base_url: str, model: str, tokenizer_dir: str, api_key_env: str | None = None,
                 concurrency: int = 8, timeout: float = 600.0, retries: int = 5, backoff: float = 1.0):
        self.base, self.model = base_url.rstrip("/"), model
        self.concurrency, self.timeout, self.retries, self.backoff = concurrency, timeout, retries, backoff
        self._key = None
        if api_key_env:
            self._key = os.environ.get(api_key_env)
            if not self._key:
                raise ServerError(f"--api-key-env {api_key_env}: that environment variable is not set")
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, trust_remote_code=False)
        self.max_length = self._check_model()
        self.send_ids = True
        self.retried, self._lock = 0, threading.Lock()  # requests sent again (an error, a timeout, a cut answer)

    def _call(self, method: str, path: str, body: dict | None = None, retries: int | None = None) -> dict:
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        data = None if body is None else json.dumps(body).encode()
        tries = self.retries if retries is None else retries
        for attempt in range(tries + 1):
            req = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as res:
                    return json.loads(res.read())
            except (http.client.HTTPException, json.JSONDecodeError) as err:  # an answer cut short, a torn body
                if attempt == tries:
                    raise ServerError(f"{self.base}{path}: broken answer ({type(err).__name__}) after {tries} "
                                      f"retries; re-run the same command to resume") from None
            except urllib.error.HTTPError as err:
                if err.code not in RETRY_STATUS or attempt == tries:
                    detail = err.read().decode(errors="replace")[:300].replace("\n", " ")
                    raise ServerError(f"{self.base}{path}: HTTP {err.code}: {detail}") from None
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as err:
                if attempt == tries:
                    reason = getattr(err, "reason", err)
                    raise ServerError(f"server {self.base} unreachable ({reason}) after {tries} retries; start it "
                                      f"(or fix --base-url) and re-run the same command to resume") from None
            with self._lock:
                self.retried += 1
            time.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable")

    def settings(self) -> dict[str, Any]:
        """What the run manifest can know of a served model: its name and the server's version where it says
        (vLLM: GET /version); dtype and attention are the server's own, unknown here (None)."""
        version = None
        try:
            req = urllib.request.Request(self.base.removesuffix("/v1") + "/version")
            with urllib.request.urlopen(req, timeout=min(self.timeout, 10)) as res:
                version = json.loads(res.read()).get("version")
        except (OSError, ValueError, http.client.HTTPException):
            pass
        return {"backend_version": f"server {version}" if version else None, "served_model": self.model,
                "dtype": None, "attn_implementation": None}

    def _check_model(self) -> int:
        served = self._call("GET", "/models", retries=min(self.retries, 2)).get("data", [])
        names = {m.get("id"): m for m in served}
        if self.model not in names:
            raise ServerError(f"server {self.base} serves {', '.join(map(str, names)) or 'no model'}, not "
                              f"{self.model!r} (--model is the served model name)")
        return int(names[self.model].get("max_model_len") or 0)

    def _complete(self, r: Request) -> Completion:
        body: dict[str, Any] = {"model": self.model, "max_tokens": r.max_new_tokens, "temperature": 0.0,
                                "top_p": 1.0, "n": 1}
        if r.stop:
            body["stop"] = list(r.stop)
        if self.send_ids:
            body["prompt"] = self.tokenizer(r.prompt)["input_ids"]
            try:
                return self._completion(self._call("POST", "/completions", body), r)
            except ServerError as err:
                if "HTTP 400" not in str(err) and "HTTP 422" not in str(err):
                    raise
                self.send_ids = False  # this server takes text prompts only
        body["prompt"] = r.prompt
        return self._completion(self._call("POST", "/completions", body), r)

    @staticmethod
    def _completion(answer: dict, r: Request) -> Completion:
        """The text cut at the stop strings, with the server's finish reason and completion token count."""
        choice = answer["choices"][0]
        tokens = (answer.get("usage") or {}).get("completion_tokens")
        return Completion(truncate_at_stop(choice["text"], r.stop), choice.get("finish_reason"),
                          None if tokens is None else int(tokens))

    def completed(self, requests: Sequence[Request]) -> Iterator[tuple[int, str]]:
        """(index, completion) of each request as soon as it finishes."""
        pool = ThreadPoolExecutor(self.concurrency)
        futures = {pool.submit(self._complete, r): i for i, r in enumerate(requests)}
        try:
            for f in as_completed(futures):
                yield futures[f], f.result()
        finally:  # stopped early (an error, an interrupt): requests not yet sent are never sent
            pool.shutdown(wait=False, cancel_futures=True)

    def generate(self, requests: Sequence[Request]) -> list[str]:
        out = [""] * len(requests)
        for i, text in self.completed(requests):
            out[i] = text
        return out

    def loglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        raise ServerError("log-likelihoods through --backend openai are not supported; use hf or vllm")
