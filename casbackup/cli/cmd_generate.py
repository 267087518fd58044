"""``casbackup generate``: shell completion scripts and man pages, from the CLI itself."""

from __future__ import annotations

from typing import Annotated

import typer
from typer import echo  # common.echo is this; common would import the store layer

from ..errors import UsageError

COMPLETE_VAR = "_CASBACKUP_COMPLETE"


def completion_script(shell: str) -> str:
    from typer._completion_shared import get_completion_script

    return get_completion_script(prog_name="casbackup", complete_var=COMPLETE_VAR,
                                 shell=shell) + "\n"


def _write(path: str, text: str) -> None:
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror}") from e


def generate_cmd(
    bash: Annotated[str | None, typer.Option(
        "--bash-completion", metavar="FILE", help="Write the bash completion script to FILE.")
    ] = None,
    zsh: Annotated[str | None, typer.Option(
        "--zsh-completion", metavar="FILE", help="Write the zsh completion script to FILE.")
    ] = None,
    fish: Annotated[str | None, typer.Option(
        "--fish-completion", metavar="FILE", help="Write the fish completion script to FILE.")
    ] = None,
    man: Annotated[str | None, typer.Option(
        "--man", metavar="DIR", help="Write a man page per command into DIR.")] = None,
) -> None:
    """Generate shell completion scripts and man pages."""
    if not any((bash, zsh, fish, man)):
        raise UsageError("nothing to generate: give --bash-completion FILE, "
                         "--zsh-completion FILE, --fish-completion FILE or --man DIR")
    for path, shell in ((bash, "bash"), (zsh, "zsh"), (fish, "fish")):
        if path is not None:
            _write(path, completion_script(shell))
            echo(f"wrote {shell} completion to {path}")
    if man is not None:
        from .app import build_command
        from .manpage import write_man_pages

        try:
            pages = write_man_pages(build_command(all_commands=True), man)
        except OSError as e:
            raise UsageError(f"cannot write man pages to {man}: {e.strerror}") from e
        echo(f"wrote {len(pages)} man pages to {man}")


def register(app: typer.Typer) -> None:
    app.command("generate")(generate_cmd)
