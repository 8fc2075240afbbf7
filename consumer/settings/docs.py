"""README.md's table of settings, rendered from the table in `options.py`.

Each option's help is Markdown, written once: README.md shows it as it is, `--help` without the
markup (`flags.plain_text`). tests/unit/settings/test_settings.py holds README.md's table to
`readme_table()`: after changing an option, paste `python -m consumer.settings.docs` over it.
Nothing at run time imports this module.
"""

from __future__ import annotations

from consumer.settings.options import OPTIONS, Settings, render
from consumer.settings.parsers import plain

__all__ = ["readme_table"]


def readme_table() -> str:
    """README.md's table of settings, one row per option, drawn from `options.py`."""
    defaults = Settings()
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for opt in OPTIONS:
        names = f"`{opt.env}`" + (f" / `{opt.file_env}`" if opt.secret else "")
        if opt.flag:  # a flag not named after the variable
            names += f" (flag `{' '.join(filter(None, (opt.flag, opt.metavar)))}`)"
        value = getattr(defaults, opt.dest)
        shown = plain(value) if isinstance(value, float) else render(value)
        default = opt.default_doc or (f"`{shown}`" if shown else "unset")
        rows.append(f"| {names} | {default} | {opt.help} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(readme_table(), end="")
