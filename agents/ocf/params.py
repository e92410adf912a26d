"""Parameters, declared once as typed objects.

Meta-data, coercion of ``OCF_RESKEY_*`` values, ``validate-all``, the README
tables and crmtool's checks of a cluster description all read these
declarations; nothing else lists an agent's parameters.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import TypeVar

    T = TypeVar("T")

TRUE_WORDS = frozenset(("1", "yes", "true", "on", "y"))
FALSE_WORDS = frozenset(("0", "no", "false", "off", "n"))
KINDS = ("string", "integer", "boolean", "select")
TEXT_KINDS = ("string", "select")  # read with Config.text
MAX_VALUE_LENGTH = 4096


class Param:
    """One instance attribute of a resource agent."""

    __slots__ = (
        "check",
        "choices",
        "default",
        "deprecated_for",
        "kind",
        "longdesc",
        "maximum",
        "minimum",
        "name",
        "reloadable",
        "required",
        "secret",
        "shortdesc",
        "unique",
        "unique_group",
    )

    def __init__(
        self,
        name: str,
        kind: str = "string",
        *,
        shortdesc: str,
        longdesc: str = "",
        default: str | int | bool | None = None,
        required: bool = False,
        unique: bool = False,
        unique_group: str | None = None,
        reloadable: bool = False,
        secret: bool = False,
        choices: tuple[str, ...] = (),
        minimum: int | None = None,
        maximum: int | None = None,
        check: Callable[[object], None] | None = None,
        deprecated_for: str | None = None,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"parameter {name}: unknown kind {kind!r}")
        if kind == "select" and not choices:
            raise ValueError(f"parameter {name}: a select needs choices")
        self.name = name
        self.kind = kind
        self.shortdesc = shortdesc
        self.longdesc = longdesc or shortdesc
        self.default = default
        self.required = required
        self.unique = unique
        self.unique_group = unique_group
        self.reloadable = reloadable
        self.secret = secret
        self.choices = choices
        self.minimum = minimum
        self.maximum = maximum
        self.check = check
        self.deprecated_for = deprecated_for

    @property
    def env_name(self) -> str:
        return "OCF_RESKEY_" + self.name

    def default_text(self) -> str | None:
        """The default as it is written in meta-data and in the CIB."""
        if self.default is None:
            return None
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        return str(self.default)

    def coerce(self, raw: str) -> object:
        """Turn the string Pacemaker passes into a typed value, or raise ValueError."""
        if len(raw) > MAX_VALUE_LENGTH:
            raise ValueError(f"is longer than {MAX_VALUE_LENGTH} characters")
        if "\x00" in raw:
            raise ValueError("contains a NUL character")
        value = _COERCERS[self.kind](self, raw)
        if self.check is not None:
            self.check(value)
        return value


def _coerce_string(param: Param, raw: str) -> object:
    return raw


def _coerce_integer(param: Param, raw: str) -> object:
    text = raw.strip()
    if not (text.isascii() and text.lstrip("+-").isdigit()):
        raise ValueError(f"must be an integer, not {raw!r}")
    value = int(text)
    if param.minimum is not None and value < param.minimum:
        raise ValueError(f"must be at least {param.minimum}, not {value}")
    if param.maximum is not None and value > param.maximum:
        raise ValueError(f"must be at most {param.maximum}, not {value}")
    return value


def _coerce_boolean(param: Param, raw: str) -> object:
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"must be a boolean (true/false, yes/no, 1/0), not {raw!r}")


def _coerce_select(param: Param, raw: str) -> object:
    if raw not in param.choices:
        raise ValueError(f"must be one of {', '.join(param.choices)}, not {raw!r}")
    return raw


_COERCERS: dict[str, Callable[[Param, str], object]] = {
    "string": _coerce_string,
    "integer": _coerce_integer,
    "boolean": _coerce_boolean,
    "select": _coerce_select,
}


class Config:
    """The coerced values of one resource instance, handed out by declared kind.

    Each accessor reads only parameters declared with its kind: reading one
    with another is a programming error (``TypeError``), as is a name that is
    not declared (``KeyError``).
    """

    def __init__(self, declared: Iterable[Param], values: dict[str, object], given: frozenset[str]) -> None:
        self._params = {param.name: param for param in declared}
        self._values = values
        self.given = given

    def text(self, name: str) -> str:
        """A string or select parameter; "" when it is unset and has no default."""
        value = self._read(name, "text", TEXT_KINDS)
        return "" if value is None else _typed(name, value, str)

    def integer(self, name: str) -> int:
        """An integer parameter that has a default (so it always has a value)."""
        param = self._declared(name)
        if param.kind == "integer" and param.default is None:
            raise TypeError(f"integer parameter {name} has no default: read it with optional_integer()")
        return _typed(name, self._read(name, "integer", ("integer",)), int)

    def optional_integer(self, name: str) -> int | None:
        """An integer parameter; None when it is unset and has no default."""
        value = self._read(name, "optional_integer", ("integer",))
        return None if value is None else _typed(name, value, int)

    def boolean(self, name: str) -> bool:
        """A boolean parameter; False when it is unset and has no default."""
        value = self._read(name, "boolean", ("boolean",))
        return False if value is None else _typed(name, value, bool)

    def _declared(self, name: str) -> Param:
        try:
            return self._params[name]
        except KeyError:
            raise KeyError(f"{name} is not a declared parameter") from None

    def _read(self, name: str, accessor: str, kinds: tuple[str, ...]) -> object:
        kind = self._declared(name).kind
        if kind not in kinds:
            raise TypeError(f"parameter {name} is declared {kind}; {accessor}() reads "
                            f"{' or '.join(kinds)} parameters")
        return self._values.get(name)


def _typed(name: str, value: object, expected: type[T]) -> T:
    if not isinstance(value, expected):  # coercion by kind makes this unreachable
        raise TypeError(f"parameter {name} holds {type(value).__name__}, not {expected.__name__}")
    return value


def parse(params: Iterable[Param], env: Mapping[str, str]) -> tuple[Config, list[str]]:
    """Coerce every declared parameter from ``env``; collect all problems at once.

    A deprecated alias carries its value to the parameter that replaced it
    when that one is not set itself.
    """
    declared = list(params)
    values: dict[str, object] = {}
    given: set[str] = set()
    errors: list[str] = []
    for param in declared:
        raw = env.get(param.env_name)
        if raw is None or raw == "":
            values[param.name] = _coerce_default(param)
            if param.required:
                errors.append(f"required parameter {param.name} is not set")
            continue
        try:
            values[param.name] = param.coerce(raw)
            given.add(param.name)
        except ValueError as exc:
            errors.append(f"parameter {param.name} {exc}")
            values[param.name] = _coerce_default(param)
    for param in declared:
        target = param.deprecated_for
        if target and param.name in given and target not in given:
            values[target] = values[param.name]
            given.add(target)
            errors[:] = [e for e in errors if e != f"required parameter {target} is not set"]
    return Config(declared, values, frozenset(given)), errors


def _coerce_default(param: Param) -> object:
    text = param.default_text()
    if text is None:
        return None
    return _COERCERS[param.kind](param, text)
