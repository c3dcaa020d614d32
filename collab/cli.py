"""The ``collab`` command: models, demo."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


@app.command()
@friendly_errors
def demo(
    easy: Annotated[str, typer.Option(help="question for the SLM")] = "",
    hard: Annotated[str, typer.Option(help="question for the LLM")] = "",
) -> None:
    """A short offline run: the SLM answers an easy question, the LLM a hard one."""
    from collab.demo import EASY, HARD, run_demo

    run_demo(console, easy or EASY, hard or HARD, resolve=resolve_with_progress)


def main() -> None:  # pragma: no cover
    app()
