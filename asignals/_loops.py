"""Compiled copies of the dispatch loop: one generator, one bounded cache.

Why compile: calling ``receiver(**payload)`` makes CPython unpack the dict into a fresh
argument array on every call, which costs about as much as the call itself. A copy of
`asignals._loop.run_in_order` compiled for the payload names ``order`` and ``user``
passes ``order=order, user=user`` as literal keywords instead, like hand-written code.

`loop_for` and `child_for` make every copy the same way (`_specialise`): they take the
syntax tree of the template in `asignals._loop` and

* bind the payload's names to locals at the top and pass them as literal keywords (or
  keep ``**payload`` for names that cannot be keywords, beyond `MAX_NAMES` names, or
  once the cache is full);
* keep only the branch a plan of one kind needs (`InlinePlan`: call; `AwaitPlan`:
  await), which saves a test per receiver;
* fix ``robust``: a plain send's copy has no ``try`` at all;
* for a *checked* copy, check the names first: a send may pick a copy by the payload's
  length alone, and a payload with other names is handed to `refit`;
* for a gather's child, inline the loop into `run_part`;
* for a plan of sync receivers run right here (`inline_for`), write a plain function,
  not a coroutine: nothing in it awaits, and creating, stepping and finishing a coroutine
  costs more than the loop's own work for one receiver;
* for many robust sends of one plan, one after another (`each_for`: a commit's model
  signals), wrap the loop in a loop over the payloads and drop the responses;
* on Python 3.12+, write a plain send over a plan of one kind as a list comprehension,
  which the compiler inlines there (PEP 709) and which appends without a method call.

The source of every copy is registered with `linecache` under one file per frame name,
so tracebacks show its lines, and its frames are named ``asignals.send`` (or
``asignals.gather`` for a gather's child task).
"""

from __future__ import annotations

import ast
import copy
import dis
import inspect
import keyword
import linecache
import sys
import textwrap
import threading
from collections.abc import Callable, Coroutine, Iterable, Sequence
from types import CodeType, FunctionType
from typing import TYPE_CHECKING, Any, Final, Literal, cast

from . import _loop
from ._plans import AwaitPlan, InlinePlan, Responses
from ._receivers import Entry

if TYPE_CHECKING:
    from ._gather import Children

Loop = Callable[[Any, Iterable[Entry], Any, dict[str, Any]], Coroutine[Any, Any, Responses]]
"""``loop(signal, plan, sender, payload)``: a compiled copy of `run_in_order`, with
``robust`` fixed."""
ChildLoop = Callable[
    [Any, Iterable[Entry], Any, dict[str, Any], "Children", int], Coroutine[Any, Any, None]
]
"""``child(signal, part, sender, payload, children, index)``: a compiled `run_part`."""
InlineLoop = Callable[[Any, Iterable[Entry], Any, dict[str, Any]], Responses]
"""``loop(signal, plan, sender, payload) -> responses``: a compiled `run_in_order` for a
plan of sync receivers, as a plain function (`inline_for`)."""
EachLoop = Callable[[Any, Iterable[Entry], Any, Sequence[dict[str, Any]]], int]
"""``each(signal, plan, sender, payloads) -> sent``: robust sends of *payloads* in turn over
a plan of sync receivers, as a plain function (`each_for`)."""

SEND_FRAME: Final = "asignals.send"
GATHER_FRAME: Final = "asignals.gather"
"""What a traceback calls the frames of the compiled loops: ``File "<asignals.send>", line
42, in asignals.send`` (a send, send_sync, and gather on trio), ``asignals.gather`` for a
gather's child task on asyncio. Short and alike, so that a reader skips them as asignals'
own; the line below still shows the call of the receiver. (A send names its coroutine
after the signal, ``order_paid.send``, so that a forgotten ``await`` names it: the frame
keeps the short name, which lives on the code.)"""

MAX_LOOPS: Final = 1024
"""Compiled copies kept; beyond, new payload shapes share the ``**payload`` copies."""
MAX_NAMES: Final = 32
"""Beyond this many payload names, the ``**payload`` copy: names may come from user input
(``send(self, **form)``), and CPython compiles a call with *n* literal keywords in time
quadratic in *n* (10,000 names: seconds, inside ``send()``)."""
_ORDER_NAMES = tuple(f"_key{index}" for index in range(MAX_NAMES))
_COMPREHENSIONS = sys.version_info >= (3, 12)

Shape = tuple[str, ...] | None
"""A payload's names in order; ``None`` for the copy that passes ``**payload``."""

Form = Literal["send", "checked", "child", "inline", "each"]
"""What a copy is: ``"send"`` (a coroutine), ``"checked"`` (a coroutine that checks the
names), ``"child"`` (a gather's child), ``"inline"`` (a plain function) or ``"each"`` (a
plain function over many payloads)."""

_cache: dict[tuple[Shape, type, bool, Form], Callable[..., Any]] = {}
_generic: set[CodeType] = set()  # the code of the copies that pass **payload
_lock = threading.Lock()  # compiling is rare; two threads compiling one shape is harmless


def loop_for(shape: Shape, kind: type = tuple, robust: bool = False, checked: bool = False) -> Loop:
    """The loop for payloads with the names *shape*, over plans of class *kind* (any class
    of plan will do: ``type(plan)``).

    A *checked* loop checks the names before it calls anyone and hands a payload with other
    names (the same length) to `refit`: a send can then choose it by the payload's length
    alone (`AsyncSignal.send`).
    """
    form: Form = "checked" if checked else "send"
    found = _cache.get((shape, kind, robust, form))
    if found is None:
        found = _compile(shape, kind, robust, form)
    return cast(Loop, found)


def child_for(shape: Shape, kind: type, robust: bool) -> ChildLoop:
    """The loop as the body of a gather's child task (`run_part`), for these names."""
    found = _cache.get((shape, kind, robust, "child"))
    if found is None:
        found = _compile(shape, kind, robust, "child")
    return cast(ChildLoop, found)


def inline_for(shape: Shape, robust: bool = False) -> InlineLoop:
    """The loop for payloads with the names *shape* over a plan whose receivers are all
    sync functions called inline (`asignals._plans.inline`), as a plain function: it runs
    right here, in any thread, with or without an event loop, and returns the responses."""
    found = _cache.get((shape, InlinePlan, robust, "inline"))
    if found is None:
        found = _compile(shape, InlinePlan, robust, "inline")
    return cast(InlineLoop, found)


def each_for(shape: Shape) -> EachLoop:
    """The loop that makes many robust sends of one plan of sync receivers, one payload
    with the names *shape* after another, right here, as a plain function
    ``each(signal, plan, sender, payloads)``: what `inline_for`'s loop does for each
    payload in turn, without its responses (a failure is logged and counted, as
    ``send_robust`` does).

    It stops before a payload when a send hook sees the signal's sends (a receiver started
    a test's capture): it returns how many payloads it sent, and the caller sends the rest
    through the hook.
    """
    found = _cache.get((shape, InlinePlan, True, "each"))
    if found is None:
        found = _compile(shape, InlinePlan, True, "each")
    return cast(EachLoop, found)


def takes_any_payload(loop: Callable[..., Any]) -> bool:
    """Whether *loop* is a copy that passes ``**payload`` (it checks no names)."""
    return loop.__code__ in _generic


def spellable(shape: tuple[str, ...]) -> bool:
    """Whether these payload names can be passed as literal keywords by a compiled loop."""
    # ASCII only: the compiler NFKC-normalises identifiers, so "ﬁle" would become "file".
    return len(shape) <= MAX_NAMES and all(
        name.isascii()
        and name.isidentifier()
        and not keyword.iskeyword(name)
        and name not in _RESERVED
        for name in shape
    )


def _compile(shape: Shape, kind: type, robust: bool, form: Form) -> Callable[..., Any]:
    asked = (shape, kind, robust, form)
    kind = kind if kind in (InlinePlan, AwaitPlan) else tuple  # any other tuple: a tuple
    if shape is not None and (not spellable(shape) or len(_cache) >= MAX_LOOPS):
        shape = None  # takes any payload: nothing to check
        form = "send" if form == "checked" else form
    key = (shape, kind, robust, form)
    with _lock:
        found = _cache.get(key)
        if found is None:
            found = _cache[key] = _build(shape, kind, robust, form)
        # Asked for a tuple subclass other than the two plan kinds (a plan a send hook
        # made): the same copy as for a plain tuple, kept under the class asked for too,
        # so that the next lookup finds it at once.
        if asked[0] == shape and asked != key:
            _cache[asked] = found
    return found


async def refit(
    signal: Any, plan: Iterable[Entry], sender: Any, payload: dict[str, Any], robust: bool
) -> Responses:
    """A checked loop met a payload with other names than its own: run the right loop,
    and make the signal choose again on its next send."""
    signal._forget_loops()
    kind = type(plan) if isinstance(plan, tuple) else tuple  # an iterator: any kind
    return await loop_for(tuple(payload), kind, robust)(signal, plan, sender, payload)


# -- the generator --------------------------------------------------------------------------


def _template(function: Callable[..., Any]) -> ast.AsyncFunctionDef:
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    definition = tree.body[0]
    assert isinstance(definition, ast.AsyncFunctionDef)
    return definition


_RUN_IN_ORDER = _template(_loop.run_in_order)
_RUN_PART = _template(_loop.run_part)


def _build(shape: Shape, kind: type, robust: bool, form: Form, register: bool = True) -> Any:
    child = form == "child"
    loop = _specialise(shape, kind, robust, as_part=child)
    body = [*_unpack(shape, form == "checked", robust), *loop]
    template = _RUN_PART if child else _RUN_IN_ORDER
    function = copy.deepcopy(template)
    function.args = _without_robust(template.args)
    function.returns = None
    function.body = _inline_into_part(body, robust) if child else body
    if form == "each":
        function.args.args[3].arg = "payloads"
        function.body = _for_each(body)
    built = _plain(function) if form in ("inline", "each") else function
    _verify(built, kind, shape or ())
    module = ast.fix_missing_locations(ast.Module(body=[built], type_ignores=[]))
    source = ast.unparse(module) + "\n"
    name = GATHER_FRAME if child else SEND_FRAME
    filename, first_line = _register(name, source) if register else (f"<{name}>", 1)
    namespace: dict[str, Any] = {**vars(_loop), "refit": refit}
    # Compiled as lines of the one generated file of its name (see _register).
    exec(compile("\n" * (first_line - 1) + source, filename, "exec"), namespace)
    compiled: FunctionType = namespace[function.name]
    compiled.__code__ = compiled.__code__.replace(co_name=name, co_qualname=name)
    compiled.__name__ = compiled.__qualname__ = name
    if shape is None:
        _generic.add(compiled.__code__)
    return compiled


def _specialise(shape: Shape, kind: type, robust: bool, as_part: bool) -> list[ast.stmt]:
    """The statements of `run_in_order` made for these names, this kind and *robust*;
    *as_part*: to be inlined into `run_part` (leaving the responses in ``responses``)."""
    specialiser = _Specialiser(shape, kind, robust)
    body: list[ast.stmt] = specialiser.visit(
        ast.Module(body=copy.deepcopy(_RUN_IN_ORDER.body[1:]), type_ignores=[])
    ).body
    if not robust and _COMPREHENSIONS and kind is not tuple:
        body = [_comprehension(body)]
    if as_part:  # its last statement returns `responses`: inlined, they stay in that local
        # (a comprehension, which returns its list, assigns it to `responses` instead)
        last = body.pop()
        if isinstance(last, ast.Return) and isinstance(last.value, ast.ListComp):
            body.append(ast.Assign([ast.Name("responses", ast.Store())], last.value))
    return body


def _unpack(shape: Shape, checked: bool, robust: bool) -> list[ast.stmt]:
    """The loop's first lines: the payload's items as locals.

    A *checked* loop checks the names too: one name by looking it up (the lookup that
    binds it, so for nothing), two or more by reading them off the dict in order
    (receivers get the items in the order the send gave them). A payload with other names
    goes to `refit`.
    """
    if not shape:
        return []
    unpack = "\n".join(f"{name} = payload[{name!r}]" for name in shape)
    refit = f"return await refit(signal, plan, sender, payload, {robust})"
    if not checked:
        text = unpack
    elif len(shape) == 1:
        text = f"try:\n    {unpack}\nexcept KeyError:\n    {refit}"
    else:
        order = _ORDER_NAMES[: len(shape)]
        mismatch = " or ".join(f"{k} != {n!r}" for k, n in zip(order, shape, strict=True))
        text = f"{', '.join(order)} = payload\nif {mismatch}:\n    {refit}\n{unpack}"
    return ast.parse(text).body


def _plain(function: ast.AsyncFunctionDef) -> ast.FunctionDef:
    """*function* as a plain ``def`` (its body awaits nothing: `_verify` checks)."""
    plain = ast.FunctionDef(
        name=function.name,
        args=function.args,
        body=function.body,
        decorator_list=[],
        returns=None,
        type_comment=None,
    )
    if sys.version_info >= (3, 12):  # pragma: no cover - the field is new in 3.12
        plain.type_params = []
    return plain


def _verify(
    function: ast.AsyncFunctionDef | ast.FunctionDef, kind: type, shape: tuple[str, ...]
) -> None:
    """Fail loudly if a rewrite of `_Specialiser` no longer matched the template (it
    matches statements by their text): a copy must not read ``robust``, nor test the
    receiver's kind when its plan's class says it, nor await in a plain function."""
    names = {node.id for node in ast.walk(function) if isinstance(node, ast.Name)} - set(shape)
    awaits = any(isinstance(node, ast.Await) for node in ast.walk(function))
    if (
        "robust" in names
        or (kind is not tuple and {"SYNC", "ASYNC"} & names)
        or (awaits and isinstance(function, ast.FunctionDef))
    ):
        raise RuntimeError(
            "asignals._loops could not specialise the dispatch loop of asignals/_loop.py: "
            "a rewrite in _Specialiser no longer matches the template; update both together"
        )


class _Specialiser(ast.NodeTransformer):
    def __init__(self, shape: Shape, kind: type, robust: bool) -> None:
        self.shape = shape
        self.kind = kind
        self.robust = robust

    def visit_Call(self, node: ast.Call) -> ast.AST:
        """``receiver(..., **payload)``: the names as literal keywords."""
        self.generic_visit(node)
        if self.shape is not None:
            node.keywords = [
                keyword
                for item in node.keywords
                for keyword in (
                    [ast.keyword(arg=n, value=ast.Name(n, ast.Load())) for n in self.shape]
                    if item.arg is None
                    else [item]
                )
            ]
        return node

    def visit_Dict(self, node: ast.Dict) -> ast.AST:
        """``{"signal": signal, ..., **payload}``: the names as literal keys."""
        self.generic_visit(node)
        if self.shape is not None:
            keys: list[ast.expr | None] = []
            values: list[ast.expr] = []
            for key, value in zip(node.keys, node.values, strict=True):
                if key is None:
                    keys += [ast.Constant(n) for n in self.shape]
                    values += [ast.Name(n, ast.Load()) for n in self.shape]
                else:
                    keys.append(key)
                    values.append(value)
            node.keys, node.values = keys, values
        return node

    def visit_If(self, node: ast.If) -> Any:
        """The branch on the receiver's kind: only the one a plan of one kind needs; and
        ``if not robust: raise``: kept as a plain ``raise`` or dropped."""
        self.generic_visit(node)
        test = ast.unparse(node.test)
        if test == "call is SYNC" and self.kind is InlinePlan:
            return node.body
        if test == "call is SYNC" and self.kind is AwaitPlan:
            orelse = node.orelse[0]
            assert isinstance(orelse, ast.If)
            return orelse.body
        if test == "not robust":
            return [] if self.robust else node.body
        return node

    def visit_Try(self, node: ast.Try) -> Any:
        self.generic_visit(node)
        if (  # `except Exception: raise`: no try at all
            not self.robust and node.handlers and isinstance(node.handlers[0].body[0], ast.Raise)
        ):
            return node.body
        if not self.robust and node.finalbody:  # no exception is ever returned: no `del`
            return node.body
        return node


def _comprehension(loop: list[ast.stmt]) -> ast.stmt:
    """A plain send's loop over a plan of one kind as one list comprehension (3.12+)."""
    call = next(
        node.value
        for node in ast.walk(ast.Module(body=loop, type_ignores=[]))
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "response"
    )
    return ast.parse(
        f"return [(receiver, {ast.unparse(call)}) for ref, _ in plan "
        "if (receiver := ref()) is not None]"
    ).body[0]


def _inline_into_part(loop: list[ast.stmt], robust: bool) -> list[ast.stmt]:
    """The statements of `run_part` with its call of the loop replaced by *loop*."""

    class Inline(ast.NodeTransformer):
        def visit_Assign(self, node: ast.Assign) -> Any:
            if isinstance(node.value, ast.Await) and ast.unparse(node.targets[0]) == "responses":
                return loop
            return node

    part = _Specialiser(None, tuple, robust).visit(
        ast.Module(body=copy.deepcopy(_RUN_PART.body[1:]), type_ignores=[])
    )
    return [s for s in Inline().visit(part).body if not isinstance(s, ast.Assert)]


def _for_each(loop: list[ast.stmt]) -> list[ast.stmt]:
    """A robust loop's statements (the payload's names unpacked first) as the body of a
    loop over ``payloads`` that keeps no responses and counts the payloads it sent,
    stopping before a payload once a send hook sees the signal's sends."""

    class Drop(ast.NodeTransformer):
        def visit_AnnAssign(self, node: ast.AnnAssign) -> Any:  # responses = []
            return None if ast.unparse(node.target) == "responses" else node

        def visit_Try(self, node: ast.Try) -> Any:  # try: return responses / finally: del
            self.generic_visit(node)
            return None if isinstance(node.body[0], ast.Return) else node

        def visit_Assign(self, node: ast.Assign) -> Any:  # response = receiver(...)
            return ast.Expr(node.value) if ast.unparse(node.targets[0]) == "response" else node

        def visit_Expr(self, node: ast.Expr) -> Any:  # responses.append((receiver, ...))
            call = node.value
            if isinstance(call, ast.Call) and ast.unparse(call.func) == "responses.append":
                pair = call.args[0]
                assert isinstance(pair, ast.Tuple)
                kept = pair.elts[1]  # log_failure(...) is kept; a plain response is not
                return ast.Expr(kept) if isinstance(kept, ast.Call) else None
            return node

    kept = Drop().visit(ast.Module(body=copy.deepcopy(loop), type_ignores=[])).body
    outer = ast.parse(
        "sent = 0\n"
        "for payload in payloads:\n"
        "    if signal._hook is not None:\n"
        "        return sent\n"
        "    sent += 1\n"
        "return sent\n"
    ).body
    each = outer[1]
    assert isinstance(each, ast.For)
    each.body[1:1] = kept
    return outer


def _without_robust(args: ast.arguments) -> ast.arguments:
    """The template's parameters without ``robust`` (fixed in a copy) and annotations."""
    kept = [ast.arg(a.arg) for a in args.args if a.arg != "robust"]
    return ast.arguments(
        posonlyargs=[],
        args=kept,
        vararg=None,
        kwonlyargs=[],
        kw_defaults=[],
        kwarg=None,
        defaults=[],
    )


def _names_in(functions: Iterable[Callable[..., Any]]) -> frozenset[str]:
    """Every name a payload item would shadow in a compiled loop: the templates' locals,
    and the globals and builtins they read (not attribute names)."""
    names: set[str] = set()
    for function in functions:
        code: CodeType = function.__code__
        names.update(code.co_varnames)
        names.update(op.argval for op in dis.get_instructions(code) if op.opname == "LOAD_GLOBAL")
    return frozenset(names)


_RESERVED: frozenset[str] = frozenset()  # filled below, from the copies themselves


def _names_of_copies() -> frozenset[str]:
    """Every name a compiled copy reads or writes besides the payload's own: the names a
    payload item may not have (it would be shadowed, or shadow one: a payload named
    ``KeyError`` would break the check of a one-name copy). Read off copies of every form,
    compiled for stand-in names, so that a change of the template or of the generator
    cannot leave a name out."""
    stand_ins = tuple(f"zz_stand_in_{index}" for index in range(2))
    coroutines: tuple[Form, ...] = ("send", "checked", "child")
    forms: list[tuple[type, bool, Form]] = [
        (kind, robust, form)
        for kind in (tuple, InlinePlan, AwaitPlan)
        for robust in (False, True)
        for form in coroutines
    ]
    forms.extend([(InlinePlan, False, "inline"), (InlinePlan, True, "inline")])
    forms.append((InlinePlan, True, "each"))
    names = _names_in(
        _build(shape, kind, robust, form, register=False)
        for shape in (stand_ins[:1], stand_ins)
        for kind, robust, form in forms
    )
    return (names - set(stand_ins)) | set(_ORDER_NAMES) | {"__debug__"}


_generated: dict[str, list[str]] = {}
_generated_lock = threading.Lock()


def _register(name: str, source: str) -> tuple[str, int]:
    """Add *source* to the lines of the generated file ``<name>`` that linecache serves, so
    that tracebacks show its lines; return the file name and the line *source* starts at.

    Every loop compiled under one name shares one file: each shape has its own source,
    and linecache keeps one text per file name, so the loops take turns in it, one after
    another (a loop's line numbers run on from the previous one's). Bounded, as the
    compiled loops are. Registered again each time, in case linecache was cleared.
    """
    filename = f"<{name}>"
    with _generated_lock:
        lines = _generated.setdefault(filename, [])
        first_line = len(lines) + 1
        lines.extend(source.splitlines(True))
        size = sum(map(len, lines))
        linecache.cache[filename] = (size, None, lines, filename)
    return filename, first_line


_RESERVED = _names_of_copies()
