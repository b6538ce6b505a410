"""Shortcuts flagged, not only refused: a static scan of answer cells and a similarity check.

Runs in the grader's process, on the answer cells' *source*, so nothing a
submission does at run time can hide from it. It never changes a score: each
finding is a :class:`Flag` listed for the instructor with its reason, who
decides. Two kinds of findings:

* :func:`scan_answer`: names the lab forbids (a library convolution, FFT,
  SciPy, course_lib's own answers) and tricks that only serve to hide or to
  tamper (``eval``/``exec``, ``__import__``/``importlib``, ``getattr`` with a
  computed name, ``torch.ops``/``torch._C``, ``ctypes``, dispatch modes,
  ``__code__``/``__globals__``, threads and processes, ``sys.modules``);
* :func:`similarity`: how much of an answer's token stream (identifiers
  renamed, comments and docstrings dropped) matches a reference text: a
  course_lib function it might be copied from, or another student's answer.
"""

from __future__ import annotations

import ast
import difflib
import fnmatch
import inspect
import io
import keyword
import textwrap
import tokenize
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Flag", "scan_answer", "similarity", "copied_from", "similar_pairs", "TRICKS"]

# Names and attributes that have no use in a lab answer except hiding a call or tampering with the grader.
TRICKS: Mapping[str, str] = {
    "eval": "runs code built at run time", "exec": "runs code built at run time", "compile": "builds code at run time",
    "__import__": "imports by a computed name", "importlib": "imports by a computed name",
    "__code__": "swaps a function's code", "__globals__": "reaches a function's globals",
    "__builtins__": "reaches the builtins", "__dict__": "reaches an object's internals",
    "_C": "calls PyTorch's C++ bindings directly", "ops": "calls ATen operators directly (torch.ops)",
    "ctypes": "calls native code", "cffi": "calls native code",
    "TorchDispatchMode": "intercepts PyTorch's dispatcher", "_python_dispatch": "intercepts PyTorch's dispatcher",
    "_disable_current_modes": "switches off PyTorch dispatch modes", "DisableTorchFunction": "switches off torch functions",
    "threading": "starts threads", "multiprocessing": "starts processes", "subprocess": "starts processes",
    "os.system": "runs a shell command", "socket": "opens network connections", "sys.modules": "tampers with imports",
    "settrace": "tampers with the interpreter", "setprofile": "tampers with the interpreter",
    "__getattribute__": "looks up an attribute by a computed name", "getattr_static": "looks up an attribute by a computed name",
    "attrgetter": "looks up an attribute by a computed name", "methodcaller": "calls a method by a computed name",
    "displayhook": "tampers with output display", "get_ipython": "tampers with the notebook kernel",
    "input_transformers_post": "rewrites later cells", "input_transformers_cleanup": "rewrites later cells",
}

# Tricks only as the builtins: the same names are ordinary methods elsewhere (model.eval(), re.compile).
_BUILTIN_ONLY = {"eval", "exec", "compile"}

# A literal (string, bytes, list, dict, ...) this long in an answer is data, not code: weights or labels pasted in.
MAX_LITERAL_CHARS = 5_000
_LITERALS = (ast.Constant, ast.List, ast.Tuple, ast.Set, ast.Dict)


@dataclass(frozen=True)
class Flag:
    """One finding in one answer cell, for the instructor."""

    cell: str
    line: int
    reason: str
    excerpt: str = ""

    def __str__(self) -> str:
        where = f"{self.cell}, line {self.line}" if self.line else self.cell
        return f"{where}: {self.reason}" + (f" ({self.excerpt})" if self.excerpt else "")


def _dotted(node: ast.AST) -> str:
    """``F.unfold`` for an Attribute chain, the name for a Name, "" otherwise."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ".".join(reversed(parts)) if parts else ""


def scan_answer(cell: str, source: str, forbidden: Mapping[str, str], protected: Collection[str] = ()) -> list[Flag]:
    """Flags for one answer cell: forbidden names of the lab, and tricks (see :data:`TRICKS`).

    ``forbidden`` maps a name, an attribute or a dotted path (``"F.unfold"``,
    ``"course_lib.layers"``) to why the lab forbids it. A key with a wildcard
    (``"*conv*"``, matched without regard to case) is a pattern for the names of
    what the answer reaches *in something else*: attributes (``torch.nn.LazyConv2d``),
    imported names, names looked up with getattr; never the answer's own names
    (its function ``conv2d_loops`` is not a library convolution).

    ``protected`` are names the lab's trusted setup defines for the grader (its
    preamble's helpers): using them is fine, defining or assigning them is flagged,
    since it changes what the sandbox tells the grader.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        return [Flag(cell, error.lineno or 0, f"does not parse: {error.msg}")]
    lines = source.splitlines()
    patterns = {k: v for k, v in forbidden.items() if any(c in k for c in "*?[")}
    rules = {**{k: f"uses {k}: {v}" for k, v in TRICKS.items()},
             **{k: f"uses {k}: {v}" for k, v in forbidden.items() if k not in patterns}}
    flags: dict[tuple[int, str], Flag] = {}

    def flag(node: ast.AST, reason: str) -> None:
        line = getattr(node, "lineno", 0)
        excerpt = lines[line - 1].strip()[:80] if 0 < line <= len(lines) else ""
        flags.setdefault((line, reason), Flag(cell, line, reason, excerpt))

    def check_path(node: ast.AST, path: str, reached: int = 1) -> None:
        """``path``'s pieces from ``reached`` on are names reached in something else (0: all of them)."""
        pieces = path.split(".")
        for size in range(len(pieces), 0, -1):  # "torch.nn.functional.conv2d" matches "conv2d" and "functional.conv2d"
            for start in range(len(pieces) - size + 1):
                key = ".".join(pieces[start:start + size])
                if key in _BUILTIN_ONLY and start > 0 and pieces[start - 1] not in ("builtins", "__builtins__"):
                    continue
                if key in rules:
                    flag(node, rules[key])
        for piece in pieces[reached:]:
            for pattern, why in patterns.items():
                if fnmatch.fnmatchcase(piece.lower(), pattern.lower()):
                    flag(node, f"uses {piece}: {why}")

    for node in ast.walk(tree):
        if isinstance(node, (ast.Name, ast.Attribute)):
            path = _dotted(node)
            if path:
                check_path(node, path)
            elif isinstance(node, ast.Attribute):
                check_path(node, node.attr)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                check_path(node, alias.name, reached=0)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            check_path(node, module)
            for alias in node.names:
                check_path(node, f"{module}.{alias.name}" if module else alias.name, reached=0)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in {"getattr", "setattr", "delattr"}:
            if len(node.args) >= 2:
                name = node.args[1]
                if isinstance(name, ast.Constant) and isinstance(name.value, str):
                    check_path(node, name.value, reached=0)
                else:
                    flag(node, f"uses {node.func.id} with a computed name: hides what it reaches")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            # A string that *is* a forbidden name ("conv2d", "torch.nn.functional.conv2d") is a name to look up.
            text = node.value.strip()
            for key in forbidden:
                if text == key or text.endswith("." + key):
                    flag(node, f"names {key} in a string: {forbidden[key]}")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name in forbidden:
            # A definition under a forbidden name replaces what the grader calls by it (a preamble helper, say).
            flag(node, f"defines {node.name}: {forbidden[node.name]}")
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name):
            if node.value.func.id in {"globals", "vars", "locals"}:
                flag(node, f"uses {node.value.func.id}()[...]: reaches names indirectly")
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined = node.name
        elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            defined = node.id
        elif isinstance(node, ast.alias):
            defined = node.asname or node.name.split(".")[0]
        else:
            continue
        if defined in protected:
            flag(node, f"redefines {defined}: a helper of the lab's setup cell, which the grader calls")
    for node, size in _large_literals(tree, lines):
        flag(node, f"holds a literal of {size:,} characters: data pasted into the answer (weights, labels)?")
    return sorted(flags.values(), key=lambda f: (f.line, f.reason))


def _large_literals(tree: ast.AST, lines: list[str]) -> list[tuple[ast.AST, int]]:
    """The outermost literals of more than :data:`MAX_LITERAL_CHARS` characters of source, with their sizes."""
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line) + 1)

    def offset(line: int, column: int) -> int:
        return starts[min(line, len(lines)) - 1] + column

    found = []
    for node in ast.walk(tree):
        if isinstance(node, _LITERALS) and getattr(node, "end_lineno", None) is not None:
            begin, end = offset(node.lineno, node.col_offset), offset(node.end_lineno, node.end_col_offset)
            if end - begin > MAX_LITERAL_CHARS:
                found.append((begin, end, node))
    found.sort(key=lambda item: (item[0], -item[1]))
    outermost, reach = [], -1
    for begin, end, node in found:
        if end > reach:  # not inside the literal kept before it
            outermost.append((node, end - begin))
            reach = end
    return outermost


def _tokens(source: str) -> list[str]:
    """The source as tokens, with identifiers renamed (``ID``) and comments, docstrings and layout dropped.

    Keywords, builtins used as names, operators and attribute names after a dot
    stay (``.einsum`` says more than ``x``); numbers and strings are kept as is.
    """
    source = textwrap.dedent(source)
    out: list[str] = []
    previous = ""
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            kind, text = token.type, token.string
            if kind in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
                continue
            if kind == tokenize.STRING and previous in ("", ":", "NEWLINE"):
                continue  # docstrings
            if kind == tokenize.NAME and not keyword.iskeyword(text) and previous != ".":
                text = "ID"
            out.append(text)
            previous = text
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return source.split()
    return out


def similarity(answer: str, reference: str) -> float:
    """Share (0..1) of the two token streams that match, identifiers renamed (:func:`_tokens`)."""
    a, b = _tokens(answer), _tokens(reference)
    if not a or not b:
        return 0.0
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


MIN_TOKENS = 40  # shorter answers (a one-line formula) look alike whoever writes them


def copied_from(cell: str, source: str, originals: Sequence[Callable], threshold: float = 0.9) -> list[Flag]:
    """Flags for an answer whose code matches a course_lib function (``originals``) at ``threshold`` or more."""
    if len(_tokens(source)) < MIN_TOKENS:
        return []
    flags = []
    for original in originals:
        ratio = similarity(source, inspect.getsource(original))
        if ratio >= threshold:
            name = f"{original.__module__}.{original.__qualname__}"
            flags.append(Flag(cell, 0, f"{ratio:.0%} like {name} (identifiers renamed): copied from course_lib?"))
    return flags


def similar_pairs(answers: Mapping[str, str], threshold: float = 0.95) -> list[tuple[str, str, float]]:
    """Pairs of students (of one answer cell) whose answers match at ``threshold`` or more: (a, b, ratio)."""
    tokens = {student: _tokens(source) for student, source in answers.items()}
    students = sorted(s for s, t in tokens.items() if len(t) >= MIN_TOKENS)
    pairs = []
    for i, a in enumerate(students):
        for b in students[i + 1:]:
            ratio = difflib.SequenceMatcher(None, tokens[a], tokens[b], autojunk=False).ratio()
            if ratio >= threshold:
                pairs.append((a, b, ratio))
    return pairs
