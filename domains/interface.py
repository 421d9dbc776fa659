"""`@interface`: declaring what may cross a domain boundary, checked when declared.

This is RedLeaf's IDL compiler in Python.  An interface is a class whose methods
carry full annotations; `@interface` inspects every signature when the class is
created and rejects anything that is not exchangeable, naming the interface,
method and parameter and saying what would be allowed.  The result is an
`InterfaceSpec` from which the proxy (caller side) and the dispatcher (callee side)
are built, so both ends run the same compiled checks.

Exchangeable: int, float, bool, None, str and bytes (copied, at most MAX_INLINE
bytes), tuples and Optionals of exchangeable types, fixed-layout record types
(copied by value), RRef[T] / RRefArray[T] / RRefDeque[T] / RRefVec (moved, or lent
with Borrow[...]), and other interfaces (capabilities).
"""

from __future__ import annotations

import hashlib
import inspect
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from .errors import InterfaceError

MAX_INLINE = 64 * 1024  # str/bytes are copied; anything bigger belongs in an RRef

_SPEC_ATTR = "__redleaf_interface__"
_RAISES_ATTR = "__redleaf_raises__"


class Borrow:
    """`Borrow[RRef[T]]`: the caller keeps ownership, the callee gets read-only access
    for the duration of the call."""

    def __class_getitem__(cls, item):
        return _BorrowOf(item)


@dataclass(frozen=True)
class _BorrowOf:
    inner: Any

    def __repr__(self) -> str:
        return f"Borrow[{_type_name(self.inner)}]"


def raises(*excs: type[BaseException]):
    """Declare the exceptions a method may raise; they pass through to the caller.

    Any other exception escaping the method is a fault: the callee domain is
    terminated and reclaimed, and the caller gets DomainCrashed.
    """
    for e in excs:
        if not (isinstance(e, type) and issubclass(e, Exception)):
            raise InterfaceError(f"raises(...) takes exception classes, got {e!r}")

    def mark(fn):
        setattr(fn, _RAISES_ATTR, tuple(excs))
        return fn

    return mark


# ---------------------------------------------------------------------------------
# Type descriptions.  Each annotation compiles to a TypeDesc with a `kind` that the
# marshaller switches on, and a human-readable name for messages and fingerprints.


@dataclass(frozen=True)
class TypeDesc:
    kind: str  # scalar | str | bytes | none | tuple | vartuple | optional | record | rref | iface
    name: str
    py: Any = None  # python type (scalar/record/rref class/interface class)
    args: tuple = ()
    borrowed: bool = False


def _type_name(t) -> str:
    if t is type(None) or t is None:
        return "None"
    return getattr(t, "__qualname__", None) or repr(t)


def _heap_kinds():
    """The exchange heap's handle types, imported lazily (shared_heap is optional here)."""
    from redleaf import shared_heap
    return shared_heap


def _is_record_type(t) -> bool:
    try:
        sh = _heap_kinds()
    except ImportError:
        return False
    return isinstance(t, type) and sh.is_record_type(t)


def _rref_origin(t):
    """(handle class, element type) if t is RRef[T]/RRefArray[T]/RRefDeque[T]/RRefVec."""
    try:
        sh = _heap_kinds()
    except ImportError:
        return None
    handles = (sh.RRef, sh.RRefArray, sh.RRefDeque, sh.RRefVec)
    origin = typing.get_origin(t)
    if origin in handles:
        return origin, typing.get_args(t)
    if t in handles:
        return t, ()
    return None


ALLOWED = (
    "int, float, bool, None, str, bytes, tuple[...] and Optional[...] of those, "
    "a @record type, RRef[T], RRefArray[T], RRefDeque[T], RRefVec, Borrow[RRef[...]], "
    "or another @interface"
)


def describe(t, where: str) -> TypeDesc:
    """Compile one annotation, or raise InterfaceError saying where and why."""
    if isinstance(t, _BorrowOf):
        inner = describe(t.inner, where)
        if inner.kind != "rref":
            raise InterfaceError(f"{where}: Borrow[...] applies to heap handles (RRef...), not {inner.name}")
        return TypeDesc("rref", f"Borrow[{inner.name}]", inner.py, inner.args, borrowed=True)
    if t is None or t is type(None):
        return TypeDesc("none", "None")
    if t is typing.Any:
        raise InterfaceError(f"{where}: Any is not exchangeable; allowed: {ALLOWED}")
    if t is object:
        raise InterfaceError(f"{where}: object is not exchangeable; allowed: {ALLOWED}")
    if t is bool:
        return TypeDesc("scalar", "bool", bool)
    if t is int:
        return TypeDesc("scalar", "int", int)
    if t is float:
        return TypeDesc("scalar", "float", float)
    if t is str:
        return TypeDesc("str", "str", str)
    if t is bytes:
        return TypeDesc("bytes", "bytes", bytes)
    origin = typing.get_origin(t)
    if origin is tuple:
        args = typing.get_args(t)
        if len(args) == 2 and args[1] is Ellipsis:
            inner = describe(args[0], where)
            return TypeDesc("vartuple", f"tuple[{inner.name}, ...]", tuple, (inner,))
        descs = tuple(describe(a, where) for a in args)
        return TypeDesc("tuple", f"tuple[{', '.join(d.name for d in descs)}]", tuple, descs)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(t)
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) == 1 and len(args) == 2:
            inner = describe(non_none[0], where)
            return TypeDesc("optional", f"Optional[{inner.name}]", None, (inner,))
        raise InterfaceError(
            f"{where}: unions other than Optional[T] are not exchangeable ({t!r}); allowed: {ALLOWED}"
        )
    if origin in (list, dict, set, frozenset) or t in (list, dict, set, frozenset, tuple, bytearray):
        raise InterfaceError(
            f"{where}: {_type_name(origin or t)} is a mutable or untyped container and is not "
            f"exchangeable; use tuple[T, ...] for small values or an RRefArray/RRefDeque/RRefVec in the heap"
        )
    rr = _rref_origin(t)
    if rr is not None:
        cls, args = rr
        elem = None
        if args:
            a = args[0]
            if not (_is_record_type(a) or _rref_origin(a) is not None or _is_primitive_dtype(a)):
                raise InterfaceError(
                    f"{where}: {cls.__name__}[{_type_name(a)}] holds a non-exchangeable element; "
                    f"elements must be @record types, RRef types, or numpy scalar types"
                )
            elem = a
        name = cls.__name__ + (f"[{_type_name(elem)}]" if elem is not None else "")
        return TypeDesc("rref", name, cls, (elem,) if elem is not None else ())
    if _is_record_type(t):
        return TypeDesc("record", _type_name(t), t)
    if isinstance(t, type) and hasattr(t, _SPEC_ATTR):
        return TypeDesc("iface", getattr(t, _SPEC_ATTR).name, t)
    if isinstance(t, str):
        raise InterfaceError(f"{where}: unresolved forward reference {t!r}; define the type before the interface")
    raise InterfaceError(f"{where}: {_type_name(t)} is not exchangeable; allowed: {ALLOWED}")


def _is_primitive_dtype(t) -> bool:
    try:
        import numpy as np
    except ImportError:
        return False
    return isinstance(t, type) and issubclass(t, np.generic)


# ---------------------------------------------------------------------------------


@dataclass
class MethodSpec:
    name: str
    index: int
    params: tuple[tuple[str, TypeDesc], ...]
    returns: TypeDesc
    raises: tuple[type[BaseException], ...]
    timeout_s: float | None = None

    @property
    def signature(self) -> str:
        ps = ", ".join(f"{n}: {d.name}" for n, d in self.params)
        r = f" raises {', '.join(e.__name__ for e in self.raises)}" if self.raises else ""
        return f"{self.name}({ps}) -> {self.returns.name}{r}"


@dataclass
class InterfaceSpec:
    name: str  # module-qualified
    cls: type
    methods: dict[str, MethodSpec] = field(default_factory=dict)
    by_index: list[MethodSpec] = field(default_factory=list)
    timeout_s: float = 10.0

    @property
    def fingerprint(self) -> str:
        text = self.name + "\n" + "\n".join(m.signature for m in self.by_index)
        return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def interface(cls=None, *, timeout_s: float = 10.0):
    """Class decorator: validate an interface and attach its compiled spec.

    `timeout_s` is the default call deadline of its methods.
    """

    def build(cls):
        spec = compile_interface(cls, timeout_s)
        setattr(cls, _SPEC_ATTR, spec)
        return cls

    return build if cls is None else build(cls)


def _where_fn(fn) -> str:
    """`file:line: ` of a method, compiler-style, so an editor can jump to the error."""
    code = getattr(getattr(fn, "__func__", fn), "__code__", None)
    return f"{code.co_filename}:{code.co_firstlineno}: " if code is not None else ""


def _where_class(cls) -> str:
    try:
        return f"{inspect.getsourcefile(cls)}:{inspect.getsourcelines(cls)[1]}: "
    except (OSError, TypeError):
        return ""


def compile_interface(cls: type, timeout_s: float = 10.0) -> InterfaceSpec:
    iname = f"{cls.__module__}.{cls.__qualname__}"
    spec = InterfaceSpec(iname, cls, timeout_s=timeout_s)
    localns = {"Borrow": Borrow}
    errors = []
    names = [n for n, v in cls.__dict__.items() if callable(v) and not n.startswith("_")]
    if not names:
        raise InterfaceError(f"{_where_class(cls)}interface {cls.__qualname__} declares no methods")
    for index, mname in enumerate(names):
        fn = cls.__dict__[mname]
        where_m = f"{_where_fn(fn)}interface {cls.__qualname__}, method {mname}"
        if isinstance(fn, (staticmethod, classmethod)):
            errors.append(f"{where_m}: static and class methods cannot be called across domains")
            continue
        try:
            hints = typing.get_type_hints(fn, globalns=getattr(fn, "__globals__", {}), localns=localns)
        except NameError as e:
            errors.append(f"{where_m}: cannot resolve an annotation ({e})")
            continue
        sig = inspect.signature(fn)
        params = []
        for pname, p in list(sig.parameters.items())[1:]:
            where = f"{where_m}, parameter {pname}"
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                errors.append(f"{where}: *args/**kwargs cannot be checked; list the parameters")
                continue
            if pname not in hints:
                errors.append(f"{where}: missing type annotation; annotate it with an exchangeable type ({ALLOWED})")
                continue
            try:
                params.append((pname, describe(hints[pname], where)))
            except InterfaceError as e:
                errors.append(str(e))
        if "return" not in hints:
            errors.append(f"{where_m}: missing return annotation (write `-> None` if it returns nothing)")
            continue
        try:
            ret = describe(hints["return"], f"{where_m}, return type")
            if ret.borrowed:
                raise InterfaceError(f"{where_m}, return type: a return value cannot be borrowed")
        except InterfaceError as e:
            errors.append(str(e))
            continue
        m = MethodSpec(mname, index, tuple(params), ret, getattr(fn, _RAISES_ATTR, ()))
        spec.methods[mname] = m
        spec.by_index.append(m)
    if errors:
        raise InterfaceError("\n".join(errors))
    # indexes must be dense in by_index order
    for i, m in enumerate(spec.by_index):
        m.index = i
    return spec


def spec_of(cls_or_obj) -> InterfaceSpec:
    cls = cls_or_obj if isinstance(cls_or_obj, type) else type(cls_or_obj)
    for klass in cls.__mro__:
        spec = klass.__dict__.get(_SPEC_ATTR)
        if spec is not None:
            return spec
    raise InterfaceError(f"{cls.__qualname__} is not an @interface (nor implements one)")


def interfaces_in(module) -> list[type]:
    return [v for v in vars(module).values()
            if isinstance(v, type) and _SPEC_ATTR in v.__dict__ and v.__module__ == module.__name__]


def check_module(modname: str) -> tuple[list[str], list[str]]:
    """Run the IDL check over every interface in a module, as `redleaf check` does.

    Returns (lines of the report, errors).  A module whose interfaces fail to compile
    raises at import time; we catch that and report it compiler-style.
    """
    import importlib

    try:
        mod = importlib.import_module(modname)
    except InterfaceError as e:
        return [], [str(e)]
    except Exception as e:
        return [], [f"{modname}: import failed: {type(e).__name__}: {e}"]
    lines = []
    for cls in interfaces_in(mod):
        spec = spec_of(cls)
        lines.append(f"interface {spec.name} [{spec.fingerprint}]: {len(spec.by_index)} methods OK")
        for m in spec.by_index:
            lines.append(f"  {m.signature}")
    if not lines:
        return [], [f"{modname}: no @interface classes found"]
    return lines, []
