"""Help output whose command lists say what each command does in full.

click cuts a command's summary in a group's ``--help`` to the terminal width with "...", which leaves
sentences such as "Open a session as `hoop connect` would; refused without..." meaning nothing. A
:class:`SummaryGroup` lists each command with the whole first sentence of its help (or its ``short_help``),
wrapped over as many lines as it needs.
"""

from __future__ import annotations

import inspect

import click


def summary(command: click.Command) -> str:
    """The command's ``short_help``, else the first sentence of its first help paragraph."""
    if command.short_help:
        return command.short_help
    paragraph = inspect.cleandoc(command.help or "").split("\n\n", 1)[0].replace("\n", " ").strip()
    end = paragraph.find(". ")
    return paragraph[: end + 1] if end >= 0 else paragraph


class SummaryGroup(click.Group):
    """A ``click.Group`` whose help lists whole summaries; groups created under it are SummaryGroups."""

    group_class = type

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, summary(command)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
