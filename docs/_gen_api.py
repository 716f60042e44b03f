"""Write ``docs/api.md``, the API reference, from the docstrings of the public names.

Run ``python docs/_gen_api.py`` after changing a public name or its docstring;
``tests/test_docs.py`` regenerates the text and fails if ``docs/api.md`` differs, so the
reference cannot drift from the code.

The public surface is what ``dir(trioclient)`` lists without a leading underscore
(classes, functions, constants), plus the ``__all__`` of the public submodules
``trioclient.sse`` and ``trioclient.testing``. Typing helpers that leak into the
namespace (``Any``, ``TYPE_CHECKING``) are not part of it.
"""

from __future__ import annotations

import enum
import importlib
import inspect
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "api.md"
SUBMODULES = ("trioclient.sse", "trioclient.testing")

HEADER = """\
# API reference

Generated from the docstrings by `python docs/_gen_api.py`; do not edit by hand
(`tests/test_docs.py` checks that this file matches the code).

"""


def _rst_to_markdown(text: str) -> str:
    """The few reStructuredText habits of our docstrings, in Markdown."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", lambda m: f"`{m.group(1).split('.')[-1]}`", text)
    text = text.replace("``", "`")
    lines: list[str] = []
    for line in text.splitlines():
        # "Example::" introduces an indented literal block; Markdown needs only the colon.
        if line.rstrip().endswith("::"):
            stripped = line.rstrip()[:-2]
            line = stripped + ":" if stripped.strip() else ""
        lines.append(line)
    return "\n".join(lines)


def _doc(obj: Any) -> str:
    doc = inspect.getdoc(obj)
    if not doc:
        return ""
    return _fenced(_rst_to_markdown(doc))


def _fenced(text: str) -> str:
    """Indented example blocks become fenced ones, so they render as code."""
    out: list[str] = []
    block: list[str] = []

    def flush() -> None:
        while block and not block[-1].strip():
            block.pop()
        if block:
            out.append("```python")
            out.extend(line[4:] if line.startswith("    ") else line for line in block)
            out.append("```")
            out.append("")
        block.clear()

    in_args = False
    for line in text.splitlines():
        section = line.strip().rstrip(":")
        if (
            line
            and not line.startswith(" ")
            and line.endswith(":")
            and section
            in (
                "Args",
                "Arguments",
                "Attributes",
                "Raises",
                "Returns",
                "Yields",
                "Example",
            )
        ):
            flush()
            in_args = section != "Example"
            out.append(f"**{section}:**")
            out.append("")
            continue
        if in_args:
            if line.startswith("    ") and not line.startswith("        "):
                out.append(f"- {line.strip()}")
                continue
            if line.startswith("        "):
                out[-1] += " " + line.strip()
                continue
            if not line.strip():
                out.append("")
                continue
            in_args = False
        if line.startswith("    ") or (block and not line.strip()):
            block.append(line)
            continue
        flush()
        out.append(line)
    flush()
    return "\n".join(out).strip()


class _Shown:
    """An annotation kept as text (``from __future__ import annotations``), shown bare."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _sorted_set(value: set[Any] | frozenset[Any]) -> str:
    items = ", ".join(repr(item) for item in sorted(value, key=repr))
    return f"{type(value).__name__}({{{items}}})" if value else f"{type(value).__name__}()"


def _signature(obj: Any, *, drop_self: bool = False, drop_return: bool = False) -> str:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return "(...)"
    params = list(sig.parameters.values())
    if drop_self and params and params[0].name in ("self", "cls"):
        params = params[1:]
    params = [
        p.replace(annotation=_Shown(p.annotation)) if isinstance(p.annotation, str) else p
        for p in params
    ]
    # A set's printed order depends on how it was built (from source or from a cached
    # .pyc): print set defaults sorted, so the file is the same on every machine.
    params = [
        p.replace(default=_Shown(_sorted_set(p.default)))
        if isinstance(p.default, set | frozenset)
        else p
        for p in params
    ]
    ret = sig.return_annotation
    if drop_return:
        ret = inspect.Signature.empty
    elif isinstance(ret, str):
        ret = _Shown(ret)
    text = str(sig.replace(parameters=params, return_annotation=ret))
    # Sentinel defaults print as "<object object at 0x...>", which changes every run.
    text = re.sub(r"<object object at 0x[0-9a-f]+>", "...", text)
    return re.sub(r" at 0x[0-9a-f]+", "", text)


def _own_members(cls: type) -> list[tuple[str, Any]]:
    members = []
    for name, value in vars(cls).items():
        if name.startswith("_") or name in ("from_dict",):
            continue
        if isinstance(value, property | staticmethod | classmethod) or inspect.isfunction(value):
            members.append((name, value))
    return members


def _member(name: str, value: Any) -> str:
    if isinstance(value, property):
        head = f"#### `.{name}` (property)"
        doc = _doc(value.fget)
    else:
        func = value.__func__ if isinstance(value, staticmethod | classmethod) else value
        prefix = "async " if inspect.iscoroutinefunction(func) else ""
        drop = not isinstance(value, staticmethod)
        head = f"#### `{prefix}.{name}{_signature(func, drop_self=drop)}`"
        doc = _doc(func)
    return head + ("\n\n" + doc if doc else "")


def _entry(qualname: str, obj: Any) -> str:
    if inspect.isclass(obj):
        kind = "exception" if issubclass(obj, BaseException) else "class"
        if issubclass(obj, enum.Enum):
            kind = "enum"
        parts = [f"### {kind} `{qualname}{_signature(obj, drop_return=True)}`"]
        bases = [b.__name__ for b in obj.__bases__ if b is not object]
        if bases:
            parts.append(f"Bases: {', '.join(f'`{b}`' for b in bases)}")
        doc = _doc(obj)
        if doc:
            parts.append(doc)
        parts.extend(_member(name, value) for name, value in _own_members(obj))
        return "\n\n".join(parts)
    if callable(obj):
        prefix = "async " if inspect.iscoroutinefunction(obj) else ""
        parts = [f"### {prefix}function `{qualname}{_signature(obj)}`"]
        doc = _doc(obj)
        if doc:
            parts.append(doc)
        return "\n\n".join(parts)
    return f"### `{qualname}`\n\n`{qualname} = {obj!r}`"


def _public(module: ModuleType, names: list[str]) -> list[tuple[str, Any]]:
    out = []
    for name in names:
        if name.startswith("_"):
            continue
        value = getattr(module, name)
        if inspect.ismodule(value):
            continue
        if inspect.isclass(value) or inspect.isfunction(value):
            if not getattr(value, "__module__", "").startswith("trioclient"):
                continue  # a typing helper, not ours
        elif not (name.isupper() and isinstance(value, str | int | float | tuple | bytes)):
            continue
        if name == "TYPE_CHECKING":
            continue
        out.append((name, value))
    return out


#: The names a reader meets first, in the order of the guide; the rest follow A to Z.
FIRST = (
    "Client",
    "Timeout",
    "RetryPolicy",
    "ClientStatistics",
    "ChatCompletion",
    "Choice",
    "ChatCompletionMessage",
    "Usage",
    "ChatCompletionStream",
    "ChatCompletionChunk",
    "Chat",
    "Response",
    "user",
    "system",
    "assistant",
    "tool_result",
    "BatchResults",
    "BatchResult",
    "BatchProgress",
    "run_batch_file",
    "BatchFileRunner",
    "BatchFileSummary",
)


def _reading_order(name: str) -> tuple[int, str]:
    return (FIRST.index(name), "") if name in FIRST else (len(FIRST), name.lower())


def render() -> str:
    """The whole text of ``docs/api.md``."""
    import trioclient

    sections = [HEADER.rstrip()]
    top = _public(trioclient, sorted(dir(trioclient), key=_reading_order))
    errors = [(n, v) for n, v in top if inspect.isclass(v) and issubclass(v, BaseException)]
    others = [(n, v) for n, v in top if (n, v) not in errors]
    sections.append("## `trioclient`")
    sections.extend(_entry(f"trioclient.{n}", v) for n, v in others)
    sections.append("## Exceptions")
    exceptions_doc = _doc(importlib.import_module("trioclient._exceptions"))
    if exceptions_doc:
        sections.append(exceptions_doc)
    sections.extend(_entry(f"trioclient.{n}", v) for n, v in errors)
    for module_name in SUBMODULES:
        module = importlib.import_module(module_name)
        sections.append(f"## `{module_name}`")
        doc = _doc(module)
        if doc:
            sections.append(doc)
        names = list(getattr(module, "__all__", sorted(dir(module))))
        sections.extend(_entry(f"{module_name}.{n}", v) for n, v in _public(module, names))
    text = "\n\n".join(sections) + "\n"
    return re.sub(r"\n{3,}", "\n\n", text)


def main() -> int:
    OUTPUT.write_text(render())
    print(f"wrote {OUTPUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    sys.exit(main())
