"""The ``collab`` command: models, demo, generate, serve, chat."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from collab.config import CONFIG_ENV, Settings, load_settings
from collab.errors import CollabError
from collab.models import catalog

app = typer.Typer(help="Pair a local small model with a remote large one.", no_args_is_help=True)
models_app = typer.Typer(help="Models that work offline.", no_args_is_help=True)
app.add_typer(models_app, name="models")
console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(fn: F) -> F:
    """Show a CollabError as its message and hint, not a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CollabError as exc:
            err_console.print(f"[bold red]error:[/] {exc.message}")
            if exc.hint:
                err_console.print(f"[yellow]hint:[/] {exc.hint}")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


@contextmanager
def download_progress() -> Iterator[catalog.Progress]:
    """A rich progress bar usable as ``catalog.Progress``."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task("", total=None)

        def update(description: str, done: int, total: int) -> None:
            bar.update(task, description=description, completed=done, total=total)

        yield update


def resolve_with_progress(name: str) -> str:
    with download_progress() as progress:
        return str(catalog.resolve(name, progress))


ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="a TOML or YAML config file (models, LLM endpoints, policy, tools, workflows); "
        f"default: ${CONFIG_ENV}, else ./collab.toml",
        show_default=False,
    ),
]


def ready_settings(config: Path | None = None) -> Settings:
    """The settings (from ``config`` when given), with the configured SLM and stand-in LLM
    fetched, with a progress bar."""
    if config is not None:
        os.environ[CONFIG_ENV] = str(config)  # read by Settings, and named in its errors
    settings = load_settings()
    stand_in = not (settings.llm_base_url or settings.llms)
    for name in (settings.slm, settings.llm if stand_in else None):
        if name:
            resolve_with_progress(name)
    return settings


@models_app.command("list")
@friendly_errors
def models_list() -> None:
    """List the catalog models and whether they are on disk."""
    table = Table("name", "size", "status", "description / path")
    for model in catalog.CATALOG.values():
        path = catalog.local_path(model)
        status = "[green]ready[/]" if path else "not pulled"
        where = str(path) if path else model.description
        table.add_row(model.name, f"{model.size / 1e6:,.0f} MB", status, where)
    console.print(table)
    console.print("Any local .gguf path works too; `collab models pull NAME` fetches a model.")


@models_app.command("pull")
@friendly_errors
def models_pull(name: Annotated[str, typer.Argument(help="catalog name")]) -> None:
    """Fetch, verify and cache a catalog model."""
    path = resolve_with_progress(name)
    console.print(f"[green]{name}[/] is ready at {path}")


@models_app.command("rm")
@friendly_errors
def models_rm(name: Annotated[str, typer.Argument(help="catalog name")]) -> None:
    """Delete a pulled model from the cache."""
    removed = catalog.remove(name)
    console.print(f"removed {name}" if removed else f"{name} is not in the cache")


@app.command()
@friendly_errors
def demo(
    easy: Annotated[str, typer.Option(help="question for the SLM")] = "",
    hard: Annotated[str, typer.Option(help="question for the LLM")] = "",
) -> None:
    """A short offline run: the SLM answers an easy question; the LLM reads drafts of a hard
    one and writes only where it disagrees."""
    from collab.demo import EASY, HARD, drafter_of, run_demo

    settings = ready_settings()
    drafter = drafter_of(settings)
    if drafter is not None and drafter != settings.slm:
        resolve_with_progress(drafter)
    run_demo(console, easy or EASY, hard or HARD, settings)


@app.command()
@friendly_errors
def generate(
    prompt: Annotated[str, typer.Argument(help="what to ask")],
    model: Annotated[str, typer.Option(help="target model (catalog name or GGUF)")] = "",
    speculative: Annotated[bool, typer.Option(help="draft and verify")] = False,
    draft: Annotated[str, typer.Option(help="draft model; 'ngram' for prompt lookup")] = "ngram",
    gamma: Annotated[int, typer.Option(help="draft length; 0 adapts it")] = 0,
    max_tokens: Annotated[int, typer.Option()] = 256,
    temperature: Annotated[float, typer.Option()] = 0.0,
) -> None:
    """Generate with one local model, optionally speculatively; prints speed and acceptance."""
    from collab.models.llamacpp import LlamaCppChatModel
    from collab.speculative import CombinedDrafter, ModelDrafter, NgramDrafter, SpeculativeChatModel
    from collab.trace import Trace

    settings = load_settings()
    name = model or settings.llm
    resolve_with_progress(name)
    params = {"n_ctx": settings.n_ctx, "temperature": temperature, "max_tokens": max_tokens}
    target = LlamaCppChatModel(model=name, **params)
    chat: LlamaCppChatModel | SpeculativeChatModel = target
    if speculative:
        drafter: NgramDrafter | ModelDrafter | CombinedDrafter
        if draft == "ngram":
            drafter = NgramDrafter()
        else:
            resolve_with_progress(draft.removeprefix("ngram+"))
            small = ModelDrafter(LlamaCppChatModel(model=draft.removeprefix("ngram+"), **params))
            drafter = (
                CombinedDrafter(NgramDrafter(), small) if draft.startswith("ngram+") else small
            )
        chat = SpeculativeChatModel(target=target, drafter=drafter, gamma=gamma or None, **params)
    full = None
    for chunk in chat.stream(prompt):
        console.print(chunk.content, end="", markup=False, highlight=False)
        full = chunk if full is None else full + chunk
    console.print()
    if full is not None:
        trace = Trace.from_metadata(full.response_metadata)
        call = trace.calls[0]
        line = (
            f"{call.output_tokens} tokens in {call.latency_s:.1f}s ({call.tokens_per_s:.1f} tok/s)"
        )
        spec = trace.extra.get("speculative")
        if spec:
            line += (
                f"; acceptance {spec['acceptance']:.0%}, mean draft length {spec['mean_gamma']}, "
                f"predicted speedup {spec['predicted_speedup']}x, measured "
                f"{spec['measured_speedup']}x"
            )
        err_console.print(f"[dim]{line}[/]")


@app.command()
@friendly_errors
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    api_key: Annotated[
        str, typer.Option(envvar="COLLAB_API_KEY", help="require this bearer key on /v1")
    ] = "",
    max_tokens: Annotated[int, typer.Option(help="the most a request may ask for")] = 2048,
    max_queue: Annotated[int, typer.Option(help="requests that may wait for the SLM")] = 64,
    config: ConfigOption = None,
) -> None:
    """Serve the workflows over the OpenAI protocol, with a web chat at /."""
    import uvicorn

    from collab.server import Limits, create_app, default_workflows

    workflows = default_workflows(ready_settings(config), max_queue=max_queue)
    limits = Limits(max_tokens=max_tokens, max_queue=max_queue)
    server = create_app(workflows, api_key=api_key or None, limits=limits)
    console.print(
        f"collab serving {', '.join(workflows)} at http://{host}:{port}/v1 "
        f"(web chat: http://{host}:{port}/){' with an API key' if api_key else ''}"
    )
    uvicorn.run(server, host=host, port=port, log_level="warning")


@app.command()
@friendly_errors
def chat(
    model: Annotated[
        str,
        typer.Option(
            help="a workflow: collab-auto (policy), collab-slm, collab-llm, "
            "collab-agent, or one the config file names"
        ),
    ] = "collab-auto",
    max_tokens: Annotated[int, typer.Option()] = 256,
    config: ConfigOption = None,
) -> None:
    """Chat in the terminal; each answer says which model gave it and what it saved."""
    from collab.chat_cli import run_chat
    from collab.server import default_workflows

    workflows = default_workflows(ready_settings(config))
    if model not in workflows:
        raise typer.BadParameter(f"choose one of {', '.join(workflows)}", param_hint="--model")
    run_chat(console, workflows[model], max_tokens=max_tokens)


def main() -> None:  # pragma: no cover
    app()
