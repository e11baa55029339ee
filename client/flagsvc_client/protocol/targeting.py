"""Targeting (docs/targeting.md): segments, their conditions on an evaluation context, and what they mean.

Both sides import this module: the server validates segments with `segment_problems` before storing them, and
every SDK compiles them with `compile_segment` into one closure each, built once per snapshot. One statement of
the semantics, so an operator's segment cannot mean one thing to the server and another to an SDK.

A *context* is a mapping of attribute names to values: str, int, float, bool, or a list of str (what an
OpenFeature evaluation context's attributes are, minus dates and structures). A condition reads one attribute:

    {"attribute": "plan", "op": "in", "values": ["free", "pro"]}

- A missing attribute (or None) makes every condition on it false, `not_in` included: "not in the list" is only
  said of a value that is there.
- A value of another supported type than the operator works on (a number for `starts_with`, say) makes the
  condition false; nothing is coerced ("30" is not 30).
- A value of an unsupported type (a dict, a date, a list holding a non-string) raises InvalidContext: the SDK
  answers the caller's default with reason `invalid_context`. Only attributes a flag's conditions read are
  looked at, so a context may carry anything else.
- A list attribute satisfies a condition when one of its items does (`not_in`: when none of them is listed).
- A segment holds when all of its conditions hold.

Regular expressions (`matches`) are a subset chosen so that Python's backtracking engine runs in time linear in
the pattern and quadratic at worst in the subject, which is capped (`regex_problems` says why each rule is
there); the subset means the same in RE2, JavaScript, Go and Java, so other SDKs can use their own engine.
"""

from __future__ import annotations

import math
import re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    Test = Callable[[Mapping[str, object]], bool]

SEGMENT_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}\Z")
ATTRIBUTE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,63}\Z")
MAX_CONDITIONS = 20  # in one segment
MAX_VALUES = 1_000  # in one condition
MAX_VALUE_LENGTH = 256  # characters of one string value
MAX_PATTERN_LENGTH = 128
MAX_SUBJECT_LENGTH = 256  # a longer attribute value never `matches`
MAX_REPEAT = 64  # the largest count of a bounded repetition {m,n}
MAX_BRANCHES = 16  # alternatives `|` in one pattern, all groups together

MEMBERSHIP = ("in", "not_in", "starts_with", "ends_with")  # one or more string values (in, not_in: any scalar)
NUMERIC = ("lt", "lte", "gt", "gte")
SEMVER = ("semver_lt", "semver_lte", "semver_gt", "semver_gte", "semver_eq")
OPERATORS = ("equals", *MEMBERSHIP, *NUMERIC, *SEMVER, "matches")


class InvalidContext(ValueError):
    """The context is not a mapping of str to supported values, where a condition reads it."""


def as_context(context: object) -> Mapping[str, object]:
    """The context to read attributes from: None is empty; anything but a mapping is invalid."""
    if context is None:
        return _EMPTY
    if isinstance(context, dict):
        return context
    from collections.abc import Mapping

    if isinstance(context, Mapping):
        return context
    raise InvalidContext(f"a context must be a mapping of attribute names to values, not {type(context).__name__}")


_EMPTY: dict[str, object] = {}


def _checked(value: object) -> object:
    """The attribute value if it is of a supported type (None: missing); InvalidContext otherwise."""
    kind = type(value)
    if value is None or kind is str or kind is int or kind is float or kind is bool:
        return value
    if kind is list or kind is tuple:
        if all(type(item) is str for item in value):  # type: ignore[attr-defined]
            return value
        raise InvalidContext("a list attribute must hold strings only")
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return float(value)
    raise InvalidContext(f"attribute values are str, int, float, bool or a list of str, not {kind.__name__}")


# --- semantic versions ------------------------------------------------------------------------------------

_SEMVER = re.compile(
    r"(0|[1-9][0-9]{0,8})(?:\.(0|[1-9][0-9]{0,8}))?(?:\.(0|[1-9][0-9]{0,8}))?"
    r"(?:-([0-9A-Za-z-]{1,64}(?:\.[0-9A-Za-z-]{1,64}){0,15}))?(?:\+[0-9A-Za-z.-]{1,128})?\Z"
)


def semver_key(text: object) -> tuple[object, ...] | None:
    """A sort key with SemVer 2.0 precedence ("1.2" is "1.2.0"; build metadata ignored), or None when `text` is
    not a version. A release sorts after its pre-releases; numeric identifiers before alphanumeric ones."""
    if type(text) is not str or not text.isascii():
        return None
    match = _SEMVER.match(text)
    if match is None:
        return None
    major, minor, patch, pre = match.groups()
    core = (int(major), int(minor or 0), int(patch or 0))
    if pre is None:
        return (*core, 1, ())
    parts = []
    for part in pre.split("."):
        if part.isdigit():
            if len(part) > 1 and part[0] == "0":
                return None  # SemVer forbids leading zeros in numeric identifiers
            parts.append((0, int(part), ""))
        else:
            parts.append((1, 0, part))
    return (*core, 0, tuple(parts))


# --- regular expressions ----------------------------------------------------------------------------------


def regex_problems(pattern: object) -> list[str]:
    """Why `pattern` is not in the safe subset ([] when it is). The subset, and why each rule is there:

    - no backreferences, lookarounds or conditionals (backreferences make matching NP-hard; the others are not
      in RE2 or Go);
    - a repetition (`*`, `+`, `?`, `{m,n}`) applies to one character or character class, never to a group:
      no nested quantifiers, no alternation under a quantifier (`(a|a)*`, `(a+)+`: exponential);
    - a repetition is followed by a character it cannot match, or ends its pattern: `[0-9]+\\.`, `@x\\.com$`.
      Two repetitions that can share characters (`a*a*`, `.*foo.*`) multiply the paths to try, a factor of the
      subject's length each; a guarded one gives its characters back at most once;
    - at most MAX_BRANCHES alternatives, repetition counts up to MAX_REPEAT, MAX_PATTERN_LENGTH characters,
      and no inline flags (their spelling differs between engines).

    `matches` searches (anywhere in the value; anchor with ^ and $) and is false for a value longer than
    MAX_SUBJECT_LENGTH: with every repetition guarded, one search costs at most subject length squared steps.
    """
    if type(pattern) is not str:
        return ["must be a string"]
    if not 0 < len(pattern) <= MAX_PATTERN_LENGTH:
        return [f"must be 1 to {MAX_PATTERN_LENGTH} characters"]
    if "(?" in pattern.replace("(?:", ""):
        return ["no lookarounds, named groups, conditionals or inline flags: (?...) other than (?:...)"]
    try:
        import re._parser as parser  # type: ignore[import-not-found, unused-ignore]
    except ImportError:  # Python < 3.11
        import sre_parse as parser  # type: ignore[no-redef, unused-ignore]
    try:
        tree = parser.parse(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        return [f"not a regular expression: {exc}"]
    problems: list[str] = []
    branches = [0]
    _check_sequence(list(tree), None, problems, branches)
    if branches[0] > MAX_BRANCHES:
        problems.append(f"at most {MAX_BRANCHES} alternatives (|)")
    return sorted(set(problems))


_SINGLE = ("LITERAL", "NOT_LITERAL", "IN", "ANY")
_REPEATS = ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT")


def _check_sequence(items: list[Any], after: Any, problems: list[str], branches: list[int]) -> None:
    """`after`: the item that follows this sequence in the enclosing one (None: the end of the pattern)."""
    for index, (op, arg) in enumerate(items):
        name = str(op)
        following = items[index + 1] if index + 1 < len(items) else after
        if name in _REPEATS:
            _, high, body = arg
            body = list(body)
            if len(body) != 1 or str(body[0][0]) not in _SINGLE:
                problems.append("a repetition (*, +, ?, {m,n}) applies to one character or class, not to a group")
            elif not _guarded(body[0], following):
                problems.append("a repetition must be followed by a character it cannot match, or end the pattern "
                                "(for a search, `x.*y` is `x[^y]*y`; a leading `.*` is not needed)")
            if high is not None and str(high) != "MAXREPEAT" and int(high) > MAX_REPEAT:
                problems.append(f"repetition counts go up to {MAX_REPEAT}")
            if name == "POSSESSIVE_REPEAT":
                problems.append("no possessive quantifiers")
        elif name == "SUBPATTERN":
            _, add_flags, del_flags, body = arg
            if add_flags or del_flags:
                problems.append("no inline flags")
            _check_sequence(list(body), following, problems, branches)
        elif name == "BRANCH":
            _, alternatives = arg
            branches[0] += len(alternatives)
            for alternative in alternatives:
                _check_sequence(list(alternative), following, problems, branches)
        elif name in ("GROUPREF", "GROUPREF_EXISTS"):
            problems.append("no backreferences")
        elif name in ("ASSERT", "ASSERT_NOT", "ATOMIC_GROUP"):
            problems.append("no lookarounds or atomic groups")
        elif name not in (*_SINGLE, "AT", "CATEGORY"):
            problems.append(f"unsupported construct {name.lower()}")


def _guarded(single: Any, following: Any) -> bool:
    """Can `single` (a repetition's character) not match the one character `following` must be? True also when
    nothing follows (the end) or an end anchor does."""
    if following is None:
        return True
    op, arg = following
    if str(op) == "AT":
        return str(arg) in ("AT_END", "AT_END_STRING")
    if str(op) not in _SINGLE:
        return False
    return not any(_matches_single(single, chr(c)) for c in _chars_of(following))


def _chars_of(single: Any) -> list[int]:
    """The characters a single-character item can match, for the disjointness check: exact for a literal, and a
    representative sample (every ASCII character and the class's own range ends) for classes."""
    op, arg = single
    if str(op) == "LITERAL":
        return [int(arg)]
    sample = set(range(128))
    if str(op) == "IN":
        for item_op, item_arg in arg:
            if str(item_op) == "LITERAL":
                sample.add(int(item_arg))
            elif str(item_op) == "RANGE":
                sample.update(item_arg)
    return sorted(c for c in sample if _matches_single(single, chr(c)))


def _matches_single(single: Any, char: str) -> bool:
    op, arg = single
    name = str(op)
    if name == "ANY":
        return char != "\n"
    if name == "LITERAL":
        return ord(char) == int(arg)
    if name == "NOT_LITERAL":
        return ord(char) != int(arg)
    negate, hit = False, False
    for item_op, item_arg in arg:
        kind = str(item_op)
        if kind == "NEGATE":
            negate = True
        elif kind == "LITERAL":
            hit = hit or ord(char) == int(item_arg)
        elif kind == "RANGE":
            hit = hit or item_arg[0] <= ord(char) <= item_arg[1]
        elif kind == "CATEGORY":
            hit = hit or re.fullmatch(_CATEGORY.get(str(item_arg), "(?!)"), char) is not None
    return hit is not negate


_CATEGORY = {"CATEGORY_DIGIT": r"\d", "CATEGORY_NOT_DIGIT": r"\D", "CATEGORY_SPACE": r"\s",
             "CATEGORY_NOT_SPACE": r"\S", "CATEGORY_WORD": r"\w", "CATEGORY_NOT_WORD": r"\W"}


# --- validation ---------------------------------------------------------------------------------------------


def _is_text(value: object) -> bool:
    if type(value) is not str:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _is_number(value: object) -> bool:
    """A finite float, or an int a double holds exactly (what every JSON parser reads alike)."""
    if type(value) is int:
        return -(2**53) <= value <= 2**53
    return type(value) is float and math.isfinite(value)


def condition_problems(condition: object) -> dict[str, list[str]]:
    """{field: [problems]} for one condition document ({} when it is valid); fields are `attribute`, `op`,
    `values` or `_schema`."""
    if not isinstance(condition, dict):
        return {"_schema": ["a condition is an object: {attribute, op, values}"]}
    problems: dict[str, list[str]] = {}
    unknown = set(condition) - {"attribute", "op", "values"}
    if unknown:
        problems["_schema"] = [f"unknown field(s): {', '.join(sorted(map(str, unknown)))}"]
    attribute, op, values = condition.get("attribute"), condition.get("op"), condition.get("values")
    if not _is_text(attribute) or not ATTRIBUTE_NAME.match(attribute):  # type: ignore[arg-type]
        problems["attribute"] = ["must match ^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$"]
    if op not in OPERATORS:
        problems["op"] = [f"must be one of {', '.join(OPERATORS)}"]
        return problems
    if not isinstance(values, list) or not 1 <= len(values) <= MAX_VALUES:
        problems["values"] = [f"must be a list of 1 to {MAX_VALUES} values"]
        return problems
    single = op not in MEMBERSHIP
    if single and len(values) != 1:
        problems["values"] = [f"{op} takes exactly one value"]
    elif op in ("in", "not_in", "equals"):
        if not all((_is_text(v) and len(v) <= MAX_VALUE_LENGTH) or _is_number(v) or type(v) is bool for v in values):
            problems["values"] = [f"values are strings (at most {MAX_VALUE_LENGTH} characters), finite numbers or "
                                  "booleans"]
    elif op in ("starts_with", "ends_with"):
        if not all(_is_text(v) and 0 < len(v) <= MAX_VALUE_LENGTH for v in values):
            problems["values"] = [f"values are non-empty strings of at most {MAX_VALUE_LENGTH} characters"]
    elif op in NUMERIC:
        if not _is_number(values[0]):
            problems["values"] = [f"{op} compares with one finite number"]
    elif op in SEMVER:
        if semver_key(values[0]) is None:
            problems["values"] = [f"{op} compares with one semantic version: 1.2.3, 1.2.3-beta.1"]
    elif op == "matches" and (found := regex_problems(values[0])):
        problems["values"] = found
    return problems


def segment_problems(conditions: object) -> dict[str, list[str]]:
    """{field: [problems]} for a segment's conditions, fields dotted as `conditions.<i>.<field>`."""
    if not isinstance(conditions, list) or not 1 <= len(conditions) <= MAX_CONDITIONS:
        return {"conditions": [f"must be a list of 1 to {MAX_CONDITIONS} conditions"]}
    problems: dict[str, list[str]] = {}
    for index, condition in enumerate(conditions):
        for name, found in condition_problems(condition).items():
            problems[f"conditions.{index}" if name == "_schema" else f"conditions.{index}.{name}"] = found
    return problems


# --- compiled conditions ---------------------------------------------------------------------------------
# Each closure takes the context (a mapping) and answers whether the condition holds. The common case, a str
# (or number) attribute, is tested first with everything precomputed; lists, other types and errors go the
# general way.


def _each(value: object, test: Callable[[object], bool], none_of: bool = False) -> bool:
    """`test` over a checked attribute value: a scalar, or each item of a list (any holds; none_of: none)."""
    value = _checked(value)
    if value is None:
        return False
    if type(value) is list or type(value) is tuple:
        hit = any(test(item) for item in value)
        return not hit if none_of else hit
    return not test(value) if none_of else test(value)


def _scalar_in(strings: frozenset[str], numbers: frozenset[float],
               booleans: frozenset[bool]) -> Callable[[object], bool]:
    def test(value: object) -> bool:
        kind = type(value)
        if kind is str:
            return value in strings
        if kind is bool:
            return value in booleans
        return value in numbers  # int or float; NaN is in no set

    return test


def _membership(attribute: str, values: list[object], negate: bool) -> Test:
    strings = frozenset(v for v in values if type(v) is str)
    numbers = frozenset(float(v) for v in values if type(v) in (int, float))  # type: ignore[arg-type]
    booleans = frozenset(v for v in values if type(v) is bool)
    test = _scalar_in(strings, numbers, booleans)

    def condition(context: Mapping[str, object]) -> bool:
        value = context.get(attribute)
        if type(value) is str:
            return (value not in strings) if negate else (value in strings)
        return _each(value, test, none_of=negate)

    condition.fast = ("not_in" if negate else "in", attribute, strings)  # type: ignore[attr-defined]
    return condition


def _affix(attribute: str, values: tuple[str, ...], suffix: bool) -> Test:
    def test(value: object) -> bool:
        return type(value) is str and (value.endswith(values) if suffix else value.startswith(values))

    def condition(context: Mapping[str, object]) -> bool:
        value = context.get(attribute)
        if type(value) is str:
            return value.endswith(values) if suffix else value.startswith(values)
        return _each(value, test)

    condition.fast = ("ends_with" if suffix else "starts_with", attribute, values)  # type: ignore[attr-defined]
    return condition


def _numeric(attribute: str, op: str, bound: float) -> Test:
    compare: Callable[[float], bool] = {
        "lt": bound.__gt__, "lte": bound.__ge__, "gt": bound.__lt__, "gte": bound.__le__,
    }[op]

    def test(value: object) -> bool:
        return (type(value) is int or type(value) is float) and compare(value) is True

    def condition(context: Mapping[str, object]) -> bool:
        value = context.get(attribute)
        if type(value) is int or type(value) is float:
            return compare(value) is True  # NotImplemented for a huge int vs float: no
        return _each(value, test)

    condition.fast = (op, attribute, bound)  # type: ignore[attr-defined]
    return condition


# Parsing a version costs microseconds; the versions an application sees are few (its clients' releases), so the
# keys are kept, up to a bound (cleared whole when full: a dict's get and set are atomic, no lock needed).
_SEMVER_KEYS: dict[str, tuple[object, ...] | None] = {}
_SEMVER_KEYS_MAX = 4096


def _semver(attribute: str, op: str, version: str) -> Test:
    bound: Any = semver_key(version)
    compare: Callable[[object], bool] = {
        "semver_lt": bound.__gt__, "semver_lte": bound.__ge__, "semver_gt": bound.__lt__,
        "semver_gte": bound.__le__, "semver_eq": bound.__eq__,
    }[op]
    keys, missing = _SEMVER_KEYS, object()
    answers: dict[str, bool] = {}  # this condition's answer per version string seen: the compiled rule reads it

    def test(value: object) -> bool:
        if type(value) is not str:
            return False
        key = keys.get(value, missing)
        if key is missing:
            if len(keys) >= _SEMVER_KEYS_MAX:
                keys.clear()
            key = keys[value] = semver_key(value)
        answer = key is not None and compare(key) is True
        if len(answers) >= _SEMVER_KEYS_MAX:
            answers.clear()
        answers[value] = answer
        return answer

    def condition(context: Mapping[str, object]) -> bool:
        value = context.get(attribute)
        if type(value) is str:
            return test(value)
        return _each(value, test)

    condition.fast = ("answers", attribute, answers)  # type: ignore[attr-defined]
    return condition


def _regex(attribute: str, pattern: str) -> Test:
    search = re.compile(pattern).search
    answers: dict[str, bool] = {}  # as for versions: bounded, read by the compiled rule

    def test(value: object) -> bool:
        answer = type(value) is str and len(value) <= MAX_SUBJECT_LENGTH and search(value) is not None
        if type(value) is str:
            if len(answers) >= _SEMVER_KEYS_MAX:
                answers.clear()
            answers[value] = answer
        return answer

    def condition(context: Mapping[str, object]) -> bool:
        return _each(context.get(attribute), test)

    condition.fast = ("answers", attribute, answers)  # type: ignore[attr-defined]
    return condition


def compile_condition(condition: Mapping[str, object]) -> Test:
    """The closure of a valid condition (condition_problems is empty); ValueError for an unknown operator."""
    attribute, op, values = condition["attribute"], condition["op"], condition["values"]
    assert isinstance(attribute, str) and isinstance(values, list)
    if op in ("in", "equals"):
        return _membership(attribute, values, negate=False)
    if op == "not_in":
        return _membership(attribute, values, negate=True)
    if op in ("starts_with", "ends_with"):
        return _affix(attribute, tuple(values), suffix=op == "ends_with")
    if op in NUMERIC:
        return _numeric(attribute, str(op), float(values[0]))
    if op in SEMVER:
        return _semver(attribute, str(op), values[0])
    if op == "matches":
        return _regex(attribute, values[0])
    raise ValueError(f"unknown operator {op!r}")


def compile_segment(conditions: list[Mapping[str, object]]) -> Test:
    """One closure for a segment: all of its conditions hold (checked in order, stopping at the first false)."""
    tests = tuple(compile_condition(c) for c in conditions)

    def every(context: Mapping[str, object]) -> bool:
        return all(test(context) for test in tests)

    every.conditions = tests  # type: ignore[attr-defined]  # for the SDK's compiled rules (_rules.py)
    return every


def bucket_value(value: object) -> str | None:
    """The string a `bucket_by` attribute's value is hashed as, like a user id: a str as is, an int in decimal;
    None when the attribute is missing. Any other value raises InvalidContext."""
    if type(value) is str:
        return value
    if value is None:
        return None
    if type(value) is int:
        return int.__repr__(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return int.__repr__(value)
    raise InvalidContext(f"a bucket_by attribute is a str or an int, not {type(value).__name__}")
