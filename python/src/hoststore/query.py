"""The run query language of ``host runs list --filter`` and ``--order-by``, parsed in Python.

A line-for-line port of the host's parser (``store/src/query/mod.rs``): the same tokens, the
same grammar, the same keys and aliases, the same checks of a value against its key, and the
same error messages at the same columns. It only parses; ``hoststore._evaluate`` decides which
runs an expression selects.

    metrics.test.accuracy > 0.9 and params.training.learning_rate = 0.001
    (tags.owner = 'ana' or tags.owner = 'ben') and not status in ('failed', 'cancelled')
    metrics.val_loss.min < 0.3 and metrics.accuracy@epoch=3 >= 0.8
    data.sha256 = '3f2a' and plugin.model = 'MNISTMLP' and verified
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal
from typing import List, Optional, Sequence, Tuple, Union

__all__ = [
    "QueryError",
    "Key",
    "Expr",
    "And",
    "Or",
    "Not",
    "Compare",
    "In",
    "Like",
    "IsNull",
    "Holds",
    "Order",
    "Literal",
    "parse_filter",
    "parse_order",
]

#: A value written in an expression: a number (always a float), text, or true/false.
Literal = Union[float, str, bool]

#: The longest expression read, in UTF-8 bytes: longer ones are refused before parsing.
MAX_TEXT = 16 * 1024
#: How deeply parentheses and ``not`` may nest.
MAX_DEPTH = 64
#: How many comparisons an expression may hold (each value of an ``in`` list counts).
MAX_COMPARISONS = 256

#: A run's own columns, each under its names (the first is the one shown), as the host has them.
ATTRIBUTES: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    ("run_id", ("run_id", "id", "run")),
    ("experiment", ("experiment", "experiment_name")),
    ("status", ("status",)),
    ("started_at", ("started_at", "start_time", "started")),
    ("finished_at", ("finished_at", "end_time", "finished")),
    ("duration", ("duration", "seconds")),
    ("seed", ("seed",)),
    ("threads", ("threads",)),
    ("config_file", ("config_file", "config")),
    ("config_sha256", ("config_sha256",)),
    ("hostname", ("hostname", "host")),
    ("host_version", ("host_version",)),
    ("git_commit", ("git_commit", "commit")),
    ("error", ("error",)),
    ("failed_stage", ("failed_stage",)),
    ("sweep", ("sweep", "sweep_id")),
    ("trial", ("trial",)),
    ("replay_of", ("replay_of",)),
)
#: The attributes whose values are numbers.
NUMERIC_ATTRIBUTES = frozenset({"seed", "threads", "trial", "duration"})
#: The attributes only written bare (``sweep``), never as ``attributes.sweep``.
BARE_ONLY_ATTRIBUTES = frozenset({"sweep", "trial", "replay_of"})

#: The plugin kinds as stored, under the names a query may use (the first is the one shown).
PLUGIN_KINDS: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    ("Model", ("model",)),
    ("Loader", ("loader", "data_loader")),
    ("ReportGenerator", ("report", "report_generator", "reportgenerator")),
)

#: A run's statuses.
STATUSES = ("running", "completed", "failed", "cancelled", "interrupted")

#: Aggregates of a metric over its epochs, by the last segment naming them.
AGGREGATES = {"min": "min", "max": "max", "first": "first", "last": "last", "mean": "mean", "avg": "mean"}

#: Comparison operators, as the host shows them (``!=`` is shown ``<>``).
OPERATORS = ("=", "<>", "<", "<=", ">", ">=")


def _ascii_lower(text: str) -> str:
    """Lowercases ASCII letters only, as Rust's ``to_ascii_lowercase``."""
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in text)


def attribute_named(name: str) -> Optional[str]:
    """The attribute a name (any of its aliases, any ASCII case) stands for."""
    name = _ascii_lower(name)
    for attribute, names in ATTRIBUTES:
        if name in names:
            return attribute
    return None


def attribute_names() -> str:
    """Every attribute under its shown name, for messages."""
    return ", ".join(names[0] for _, names in ATTRIBUTES)


def kind_name(stored: str) -> str:
    """A plugin kind as stored (``ReportGenerator``) under the name queries give it (``report``)."""
    for kind, names in PLUGIN_KINDS:
        if kind == stored:
            return names[0]
    return "?"


def format_number(number: float) -> str:
    """A float as Rust's ``Display`` writes it: the shortest digits, never an exponent."""
    text = format(Decimal(repr(number)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def format_literal(value: Literal) -> str:
    """A value as the host shows it in messages: numbers bare, text quoted, true/false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format_number(value)
    return "'" + value.replace("'", "''") + "'"


class QueryError(ValueError):
    """An expression (or an order) that does not parse: what is wrong and where.

    ``str(error)`` shows the message, then the text with a caret under the column, as the
    host prints it.
    """

    def __init__(self, message: str, column: int, text: str) -> None:
        super().__init__(message)
        #: What is wrong.
        self.message = message
        #: Where, 1-based, in characters.
        self.column = column
        #: The expression.
        self.text = text

    def __str__(self) -> str:
        shown = "".join(" " if unicodedata.category(c) == "Cc" else c for c in self.text)
        return f"{self.message} at column {self.column}\n  {shown}\n  {' ' * max(self.column - 1, 0)}^"

    def __reduce__(self) -> Tuple[type, Tuple[str, int, str]]:
        return (QueryError, (self.message, self.column, self.text))


@dataclass(frozen=True)
class Key:
    """What a key names.

    ``kind`` is one of ``metric`` (``name``, with ``aggregate`` or ``epoch`` when the key reads
    one of those instead of the final value), ``param``, ``attribute`` (``name`` is the
    attribute's shown name), ``tag``, ``plugin_class`` (``name`` is the stored kind:
    ``Model``, ``Loader``, ``ReportGenerator``), ``plugin_sha256``, ``data_sha256``,
    ``any_sha256`` or ``verified``.
    """

    kind: str
    name: str = ""
    aggregate: Optional[str] = None
    epoch: Optional[int] = None

    @property
    def many(self) -> bool:
        """Whether a run has several values (digests): a condition holds when one meets it."""
        return self.kind in ("plugin_sha256", "data_sha256", "any_sha256")

    @property
    def numeric(self) -> bool:
        """Whether the key's values are numbers."""
        return self.kind == "metric" or (self.kind == "attribute" and self.name in NUMERIC_ATTRIBUTES)

    def canonical(self) -> str:
        """The key as written canonically (the host's column headers)."""
        if self.kind == "metric":
            if self.epoch is not None:
                return f"metrics.{self.name}@epoch={self.epoch}"
            if self.aggregate is not None:
                return f"metrics.{self.name}.{self.aggregate}"
            return f"metrics.{self.name}"
        if self.kind == "param":
            return f"params.{self.name}"
        if self.kind == "attribute":
            return self.name
        if self.kind == "tag":
            return f"tags.{self.name}"
        if self.kind == "plugin_class":
            return f"plugin.{kind_name(self.name)}"
        return {"plugin_sha256": "plugin.sha256", "data_sha256": "data.sha256", "any_sha256": "sha256"}.get(
            self.kind, "verified"
        )


@dataclass(frozen=True)
class And:
    """Both hold."""

    left: "Expr"
    right: "Expr"


@dataclass(frozen=True)
class Or:
    """Either holds."""

    left: "Expr"
    right: "Expr"


@dataclass(frozen=True)
class Not:
    """The inner condition does not hold."""

    inner: "Expr"


@dataclass(frozen=True)
class Compare:
    """``key op value``; ``op`` is one of :data:`OPERATORS`."""

    key: Key
    op: str
    value: Literal


@dataclass(frozen=True)
class In:
    """``key [not] in (values)``."""

    key: Key
    values: Tuple[Literal, ...]
    negated: bool


@dataclass(frozen=True)
class Like:
    """``key [not] like 'pattern'``."""

    key: Key
    pattern: str
    negated: bool


@dataclass(frozen=True)
class IsNull:
    """``key is [not] null``."""

    key: Key
    negated: bool


@dataclass(frozen=True)
class Holds:
    """A key that is a condition on its own (``verified``)."""

    key: Key


Expr = Union[And, Or, Not, Compare, In, Like, IsNull, Holds]


@dataclass(frozen=True)
class Order:
    """A sort key and its direction; ``column`` is where the key was written (for messages)."""

    key: Key
    descending: bool
    column: int = 1


# Tokens ----------------------------------------------------------------------------------------


@dataclass
class _Token:
    """A token: ``kind`` is ``word``, ``number``, ``text``, ``op``, ``(``, ``)``, ``,`` or ``@``."""

    kind: str
    #: The word as written, the number, the text, or the operator.
    value: Union[str, float, None]
    #: 1-based character column of its first character.
    column: int
    #: Character range in the text.
    start: int
    end: int
    #: A word's segments, backquotes removed.
    segments: Tuple[str, ...] = ()

    def describe(self) -> str:
        """The token as messages name it."""
        if self.kind == "word":
            return f"`{self.value}`"
        if self.kind == "number":
            assert isinstance(self.value, float)
            return f"the number {format_number(self.value)}"
        if self.kind == "text":
            return f"the text '{self.value}'"
        if self.kind == "op":
            return f"`{self.value}`"
        return f"`{self.kind}`"


# Rust's `char::is_whitespace`: the Unicode White_Space property.
_WHITESPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
# What Rust's `str::parse::<f64>` reads of the characters a number token can hold.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _segment_char(c: str) -> bool:
    return ("a" <= c <= "z") or ("A" <= c <= "Z") or ("0" <= c <= "9") or c in "_-"


def _ascii_alphanumeric(c: str) -> bool:
    return ("a" <= c <= "z") or ("A" <= c <= "Z") or ("0" <= c <= "9")


def _char_debug(c: str) -> str:
    """A character as Rust's ``{:?}`` writes it."""
    escapes = {"\\": "\\\\", "'": "\\'", "\t": "\\t", "\r": "\\r", "\n": "\\n", "\0": "\\0"}
    if c in escapes:
        return f"'{escapes[c]}'"
    if c.isprintable():
        return f"'{c}'"
    return "'\\u{%x}'" % ord(c)


def _lex(text: str) -> List[_Token]:
    def error(index: int, message: str) -> QueryError:
        return QueryError(message, index + 1, text)

    tokens: List[_Token] = []
    length = len(text)
    i = 0
    while i < length:
        c = text[i]
        if c in _WHITESPACE:
            i += 1
        elif c in "(),@":
            tokens.append(_Token(c, None, i + 1, i, i + 1))
            i += 1
        elif c in "=!<>":
            following = text[i + 1] if i + 1 < length else ""
            if c == "=":
                op, size = "=", 2 if following == "=" else 1
            elif c == "!" and following == "=":
                op, size = "<>", 2
            elif c == "<":
                op, size = {">": ("<>", 2), "=": ("<=", 2)}.get(following, ("<", 1))
            elif c == ">":
                op, size = (">=", 2) if following == "=" else (">", 1)
            else:
                raise error(i, "`!` alone is no operator: `!=` or `not`")
            tokens.append(_Token("op", op, i + 1, i, i + size))
            i += size
        elif c in "'\"":
            # SQL's way: the quote doubled inside is one quote.
            value = []
            j = i + 1
            while True:
                if j >= length:
                    raise error(i, f"text opened here is never closed with {c}")
                if text[j] == c and j + 1 < length and text[j + 1] == c:
                    value.append(c)
                    j += 2
                elif text[j] == c:
                    break
                else:
                    value.append(text[j])
                    j += 1
            tokens.append(_Token("text", "".join(value), i + 1, i, j + 1))
            i = j + 1
        elif ("0" <= c <= "9") or (
            c in "-.+" and i + 1 < length and (("0" <= text[i + 1] <= "9") or text[i + 1] == ".")
        ):
            j = i + 1
            while j < length:
                d = text[j]
                exponent_sign = d in "-+" and text[j - 1] in "eE"
                if _ascii_alphanumeric(d) or d == "." or exponent_sign:
                    j += 1
                else:
                    break
            written = text[i:j]
            number = float(written) if _NUMBER.fullmatch(written) else None
            if number is None or number in (float("inf"), float("-inf")):
                raise error(i, f"`{written}` is not a number")
            tokens.append(_Token("number", number, i + 1, i, j))
            i = j
        elif _segment_char(c) or c == "`":
            segments = []
            j = i
            while True:
                here = text[j] if j < length else ""
                if here == "`":
                    k = j + 1
                    while k < length and text[k] != "`":
                        k += 1
                    if k >= length:
                        raise error(j, "a name opened here with ` is never closed")
                    if k == j + 1:
                        raise error(j, "an empty name in backquotes")
                    segments.append(text[j + 1 : k])
                    j = k + 1
                elif here and _segment_char(here):
                    start = j
                    while j < length and _segment_char(text[j]):
                        j += 1
                    segments.append(text[start:j])
                else:
                    raise error(j, "expected a name after `.`")
                if j < length and text[j] == ".":
                    j += 1
                else:
                    break
            tokens.append(_Token("word", text[i:j], i + 1, i, j, tuple(segments)))
            i = j
        else:
            raise error(i, f"unexpected character {_char_debug(c)}")
    return tokens


# Checks of a value against its key --------------------------------------------------------------


def _is_hex_prefix(text: str) -> bool:
    return 0 < len(text.encode("utf-8")) <= 64 and all(c in "0123456789abcdefABCDEF" for c in text)


def _check_value(key: Key, value: Literal, op: str) -> Optional[str]:
    """Why ``value`` cannot be compared with ``key`` by ``op``; None when it can."""
    ordered = op in ("<", "<=", ">", ">=")
    shown = format_literal(value)
    is_number = isinstance(value, float) and not isinstance(value, bool)
    if key.numeric:
        return None if is_number else f"{key.canonical()} is a number; compare it with a number, not {shown}"
    if key.kind == "attribute" and key.name == "status":
        if isinstance(value, str) and value in STATUSES:
            return None
        return (
            f"no status {shown}; a run's status is one of 'running', 'completed', 'failed', 'cancelled', "
            "'interrupted'"
        )
    if key.kind in ("attribute", "tag", "plugin_class"):
        return None if isinstance(value, str) else f"{key.canonical()} is text; write the value in quotes, not {shown}"
    if key.many:
        if ordered:
            return f"{key.canonical()} is matched by prefix with = or !=, not ordered"
        if isinstance(value, str) and _is_hex_prefix(value):
            return None
        return f"{key.canonical()} is matched by a SHA-256 prefix in quotes (hex digits), not {shown}"
    if key.kind == "verified":
        if ordered:
            return "verified is true or false: compare it with = or !="
        return None if isinstance(value, bool) else f"verified is true or false, not {shown}"
    # A parameter takes any value; true and false only with = and !=.
    if isinstance(value, bool) and ordered:
        return f"{key.canonical()} cannot be ordered against true or false"
    return None


def _check_like(key: Key) -> Optional[str]:
    """Why ``like`` cannot match ``key``; None when it can."""
    if key.kind in ("metric", "verified") or key.many:
        return f"`like` matches text; {key.canonical()} is not text"
    if key.numeric:
        return f"`like` matches text; {key.canonical()} is a number"
    return None


# The parser ------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        if len(text.encode("utf-8")) > MAX_TEXT:
            raise QueryError(f"the expression is longer than {MAX_TEXT} bytes", 1, text[:80])
        self.text = text
        self.tokens = _lex(text)
        if not self.tokens:
            raise QueryError("the expression is empty", 1, text)
        self.at = 0
        self.comparisons = 0

    def peek(self) -> Optional[_Token]:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def advance(self) -> None:
        self.at += 1

    def next(self) -> Optional[_Token]:
        token = self.peek()
        self.at += 1
        return token

    def error_at(self, column: int, message: str) -> QueryError:
        return QueryError(message, column, self.text)

    def error_here(self, message: str) -> QueryError:
        """An error at the next token, or just past the end."""
        token = self.peek()
        return self.error_at(token.column if token else len(self.text) + 1, message)

    def keyword(self, word: str) -> bool:
        """Whether the next token is the keyword ``word``; consumes it if so."""
        token = self.peek()
        found = (
            token is not None
            and token.kind == "word"
            and len(token.segments) == 1
            and _ascii_lower(str(token.value)) == word
        )
        if found:
            self.advance()
        return found

    def or_(self, depth: int) -> Expr:
        left = self.and_(depth)
        while self.keyword("or"):
            left = Or(left, self.and_(depth))
        return left

    def and_(self, depth: int) -> Expr:
        left = self.unary(depth)
        while self.keyword("and"):
            left = And(left, self.unary(depth))
        return left

    def unary(self, depth: int) -> Expr:
        if depth > MAX_DEPTH:
            raise self.error_here(f"nested more than {MAX_DEPTH} deep")
        if self.keyword("not"):
            return Not(self.unary(depth + 1))
        token = self.peek()
        if token is not None and token.kind == "(":
            self.advance()
            inner = self.or_(depth + 1)
            closing = self.next()
            if closing is None:
                raise self.error_at(token.column, "this `(` is never closed")
            if closing.kind != ")":
                raise self.error_at(closing.column, f"expected `)`, found {closing.describe()}")
            return inner
        return self.predicate()

    def count(self, column: int) -> None:
        """Counts one more comparison (at ``column``), refusing one past the limit."""
        self.comparisons += 1
        if self.comparisons > MAX_COMPARISONS:
            raise self.error_at(
                column, f"more than {MAX_COMPARISONS} comparisons (each value of an `in` list counts)"
            )

    def predicate(self) -> Expr:
        first = self.peek()
        column = first.column if first else 0
        self.count(column)
        key = self.key()

        def bare() -> Expr:
            if key.kind == "verified":
                return Holds(key)
            raise self.error_here(
                f"expected a comparison (=, !=, <, <=, >, >=, in, like, is null) after `{key.canonical()}`"
            )

        token = self.peek()
        if token is None:
            return bare()
        if token.kind == "op":
            op = str(token.value)
            self.advance()
            # A value of the wrong kind is marked where the value is.
            at_value = self.peek()
            value_column = at_value.column if at_value else column
            value = self.literal()
            problem = _check_value(key, value, op)
            if problem:
                raise self.error_at(value_column, problem)
            return Compare(key, op, value)
        if token.kind == "word":
            negated = self.keyword("not")
            if self.keyword("in"):
                values = self.list()
                for value in values:
                    problem = _check_value(key, value, "=")
                    if problem:
                        raise self.error_at(column, problem)
                return In(key, tuple(values), negated)
            if self.keyword("like"):
                pattern = self.literal()
                if not isinstance(pattern, str):
                    raise self.error_at(token.column, f"`like` takes text in quotes, not {format_literal(pattern)}")
                problem = _check_like(key)
                if problem:
                    raise self.error_at(column, problem)
                return Like(key, pattern, negated)
            if not negated and self.keyword("is"):
                negated = self.keyword("not")
                if not self.keyword("null"):
                    raise self.error_here("expected `null` after `is`")
                return IsNull(key, negated)
            if negated:
                raise self.error_here("expected `in` or `like` after `not`")
        return bare()

    def list(self) -> List[Literal]:
        opening = self.next()
        if opening is None or opening.kind != "(":
            raise self.error_here("expected `(` and a list after `in`")
        values: List[Literal] = []
        while True:
            if values:
                token = self.peek()
                self.count(token.column if token else 0)
            values.append(self.literal())
            token = self.next()
            if token is None:
                raise self.error_here("the list is never closed with `)`")
            if token.kind == ")":
                return values
            if token.kind != ",":
                raise self.error_at(token.column, f"expected `,` or `)`, found {token.describe()}")

    def literal(self) -> Literal:
        token = self.next()
        if token is None:
            self.at = len(self.tokens)
            raise self.error_here("expected a value after the operator")
        if token.kind == "number":
            assert isinstance(token.value, float)
            return token.value
        if token.kind == "text":
            return str(token.value)
        if token.kind == "word":
            word = str(token.value)
            if len(token.segments) == 1 and _ascii_lower(word) in ("true", "false"):
                return _ascii_lower(word) == "true"
            raise self.error_at(token.column, f"expected a value, found `{word}` (text goes in quotes: '{word}')")
        raise self.error_at(token.column, f"expected a value, found {token.describe()}")

    def key(self) -> Key:
        token = self.next()
        if token is None:
            raise self.error_here("expected a key such as metrics.test.accuracy")
        if token.kind != "word":
            raise self.error_at(token.column, f"expected a key such as metrics.test.accuracy, found {token.describe()}")

        def error(message: str) -> QueryError:
            return QueryError(message, token.column, self.text)

        segments = token.segments
        rest = ".".join(segments[1:])
        first = _ascii_lower(segments[0])

        def needs_rest(what: str) -> None:
            if len(segments) < 2:
                raise error(f"`{first}` needs a name after it: {first}.{what}")

        if first in ("metrics", "metric"):
            needs_rest("NAME")
            return self.metric(list(segments[1:]))
        if first in ("params", "param", "parameters"):
            needs_rest("KEY")
            return Key("param", rest)
        if first in ("tags", "tag"):
            needs_rest("KEY")
            return Key("tag", rest)
        if first in ("attributes", "attribute", "attr"):
            needs_rest("status")
            attribute = attribute_named(rest)
            if attribute is None or attribute in BARE_ONLY_ATTRIBUTES:
                raise error(f"no attribute `{rest}`; the attributes: {attribute_names()}")
            return Key("attribute", attribute)
        if first == "data":
            if _ascii_lower(rest) == "sha256":
                return Key("data_sha256")
            raise error(f"no key `{token.value}`: the data key is data.sha256")
        if first in ("plugin", "plugins"):
            needs_rest("model")
            name = _ascii_lower(rest)
            if name == "sha256":
                return Key("plugin_sha256")
            for kind, names in PLUGIN_KINDS:
                if name in names:
                    return Key("plugin_class", kind)
            raise error(
                f"no plugin kind `{name}`; the keys: plugin.model, plugin.loader, plugin.report, plugin.sha256"
            )
        if first == "sha256" and len(segments) == 1:
            return Key("any_sha256")
        if first == "verified" and len(segments) == 1:
            return Key("verified")
        attribute = attribute_named(first) if len(segments) == 1 else None
        if attribute is None:
            raise error(
                f"unknown key `{token.value}`; keys start with metrics., params., attributes., tags., data., plugin. "
                f"or are one of {attribute_names()}, sha256, verified"
            )
        return Key("attribute", attribute)

    def metric(self, names: List[str]) -> Key:
        """A metric key from the segments after ``metrics.``, then any ``@epoch=N``."""
        aggregate = None
        if len(names) > 1 and _ascii_lower(names[-1]) in AGGREGATES:
            aggregate = AGGREGATES[_ascii_lower(names.pop())]
        epoch = None
        token = self.peek()
        if token is not None and token.kind == "@":
            self.advance()
            if aggregate is not None:
                raise self.error_here("`@epoch=` takes one epoch's value, not an aggregate's")
            if not self.keyword("epoch"):
                raise self.error_here("expected `epoch` after `@`")
            equals = self.next()
            if equals is None or equals.kind != "op" or equals.value != "=":
                self.at -= 1
                raise self.error_here("expected `=` after `@epoch`")
            number = self.next()
            if (
                number is None
                or number.kind != "number"
                or not isinstance(number.value, float)
                or not number.value.is_integer()
                or not 0.0 <= number.value < 1e15
            ):
                self.at -= 1
                raise self.error_here("expected an epoch number after `@epoch=`")
            epoch = int(number.value)
        return Key("metric", ".".join(names), aggregate, epoch)


def parse_filter(text: str) -> Expr:
    """Parses a filter expression (``host runs list --filter``); raises :class:`QueryError`."""
    parser = _Parser(text)
    expr = parser.or_(0)
    token = parser.peek()
    if token is not None:
        raise parser.error_at(token.column, f"expected `and`, `or` or the end, found {token.describe()}")
    return expr


def parse_order(text: str) -> List[Order]:
    """Parses an order (``host runs list --order-by``): keys each followed by ``asc`` or
    ``desc`` (default ``asc``), by commas. Raises :class:`QueryError`, also for a key a run has
    several values of (a digest), which cannot sort runs."""
    parser = _Parser(text)
    order = []
    while True:
        start = parser.peek()
        key = parser.key()
        column = start.column if start else 1
        if key.many:
            raise parser.error_at(column, f"runs cannot be sorted by {key.canonical()}: a run has several")
        descending = False
        token = parser.peek()
        if token is not None and token.kind == "word":
            word = _ascii_lower(str(token.value))
            if word in ("asc", "desc"):
                descending = word == "desc"
                parser.advance()
        order.append(Order(key, descending, column))
        token = parser.next()
        if token is None:
            return order
        if token.kind != ",":
            raise parser.error_at(token.column, f"expected `asc`, `desc`, `,` or the end, found {token.describe()}")


def parse_orders(order_by: Union[str, Sequence[str], None]) -> List[Order]:
    """An order given as one string or as a list of them (as MLflow takes ``order_by``)."""
    if order_by is None:
        return []
    if isinstance(order_by, str):
        return parse_order(order_by)
    orders: List[Order] = []
    for text in order_by:
        orders.extend(parse_order(text))
    return orders
