"""The filter language's parser, as the host's own parser tests pin it (store/src/query/mod.rs):
the same trees, the same errors at the same columns, the same limits."""

from __future__ import annotations

import random

import pytest

import hoststore
from hoststore.query import And, Compare, Holds, In, IsNull, Key, Like, Not, Or, parse_filter, parse_order


def error(text: str) -> hoststore.QueryError:
    with pytest.raises(hoststore.QueryError) as raised:
        parse_filter(text)
    return raised.value


def test_mlflow_core_syntax_parses() -> None:
    assert parse_filter("metrics.accuracy > 0.9 and params.training.learning_rate = 0.001") == And(
        Compare(Key("metric", "accuracy"), ">", 0.9), Compare(Key("param", "training.learning_rate"), "=", 0.001)
    )
    assert parse_filter("attributes.status = 'completed'") == Compare(Key("attribute", "status"), "=", "completed")
    assert parse_filter('tags.owner = "ana"') == Compare(Key("tag", "owner"), "=", "ana")


def test_and_binds_tighter_than_or_and_parentheses_override() -> None:
    a = Compare(Key("tag", "a"), "=", "1")
    b = Compare(Key("tag", "b"), "=", "2")
    c = Compare(Key("tag", "c"), "=", "3")
    assert parse_filter("tags.a = '1' or tags.b = '2' and tags.c = '3'") == Or(a, And(b, c))
    assert parse_filter("(tags.a = '1' OR tags.b = '2') AND NOT tags.c = '3'") == And(Or(a, b), Not(c))


@pytest.mark.parametrize(
    "text, key",
    [
        ("metrics.val_loss.min", Key("metric", "val_loss", aggregate="min")),
        ("metrics.loss.last", Key("metric", "loss", aggregate="last")),
        ("metrics.loss.avg", Key("metric", "loss", aggregate="mean")),
        ("metrics.accuracy@epoch=3", Key("metric", "accuracy", epoch=3)),
        ("metrics.test.accuracy", Key("metric", "test.accuracy")),
        ("metrics.`min`", Key("metric", "min")),
        ("metrics.`a b`.max", Key("metric", "a b", aggregate="max")),
        ("plugin.model", Key("plugin_class", "Model")),
        ("plugin.data_loader", Key("plugin_class", "Loader")),
        ("plugin.report_generator", Key("plugin_class", "ReportGenerator")),
        ("plugin.sha256", Key("plugin_sha256")),
        ("data.sha256", Key("data_sha256")),
        ("sha256", Key("any_sha256")),
        ("sweep", Key("attribute", "sweep")),
        ("replay_of", Key("attribute", "replay_of")),
        ("attributes.start_time", Key("attribute", "started_at")),
        ("experiment_name", Key("attribute", "experiment")),
    ],
)
def test_aggregates_epochs_and_provenance_keys_parse(text: str, key: Key) -> None:
    assert parse_filter(f"{text} is null") == IsNull(key, False)


def test_verified_is_a_condition_on_its_own() -> None:
    assert parse_filter("verified") == Holds(Key("verified"))
    assert parse_filter("not verified") == Not(Holds(Key("verified")))


def test_in_like_and_null_forms_parse() -> None:
    assert parse_filter("status not in ('failed', 'cancelled')") == In(
        Key("attribute", "status"), ("failed", "cancelled"), True
    )
    assert parse_filter("experiment like 'mnist%'") == Like(Key("attribute", "experiment"), "mnist%", False)
    assert parse_filter("tags.x is not null") == IsNull(Key("tag", "x"), True)
    assert parse_filter("params.a = 'it''s'") == Compare(Key("param", "a"), "=", "it's")
    assert parse_filter("params.a >= -1.5e-3") == Compare(Key("param", "a"), ">=", -1.5e-3)
    assert parse_filter("params.a != true") == Compare(Key("param", "a"), "<>", True)


@pytest.mark.parametrize(
    "text, column, part",
    [
        ("metrics.accuracy > ", 20, "expected a value"),
        ("metrics.accuracy > 0.9 and bogus.x = 1", 28, "unknown key `bogus.x`"),
        ("status = 'done'", 10, "'completed'"),
        ("(tags.a = 'x'", 1, "never closed"),
        ("tags.a = 'x' tags.b = 'y'", 14, "expected `and`, `or` or the end, found `tags.b`"),
        ("tags.a = x", 10, "in quotes"),
        ("metrics.loss = 'low'", 16, "is a number"),
        ("data.sha256 > 'ab'", 15, "prefix"),
        ("data.sha256 = 'xyz'", 15, "hex"),
        ("tags.a = 'x", 10, "never closed with '"),
        ("metrics.x.min@epoch=2 > 1", 15, "aggregate"),
        ("", 1, "empty"),
        ("seed = 1e999", 8, "`1e999` is not a number"),
        ("tags.a ! 'x'", 8, "`!` alone is no operator"),
        ("tags.a = 'x' and ?", 18, "unexpected character '?'"),
        ("tags.`a = 'x'", 6, "is never closed"),
        ("tags.`` = 'x'", 6, "an empty name in backquotes"),
        ("tags. = 'x'", 6, "expected a name after `.`"),
        ("metrics = 1", 1, "`metrics` needs a name after it: metrics.NAME"),
        ("attributes.sweep = 'x'", 1, "no attribute `sweep`"),
        ("plugin.kernel = 'x'", 1, "no plugin kind `kernel`"),
        ("data.path = 'x'", 1, "no key `data.path`: the data key is data.sha256"),
        ("metrics.loss@epoch=1.5 > 1", 20, "expected an epoch number"),
        ("metrics.loss@step=1 > 1", 14, "expected `epoch` after `@`"),
        ("experiment like 3", 12, "`like` takes text in quotes, not 3"),
        ("metrics.loss like 'x'", 1, "`like` matches text; metrics.loss is not text"),
        ("seed like '7'", 1, "`like` matches text; seed is a number"),
        ("verified < true", 12, "compare it with = or !="),
        ("params.a < false", 12, "cannot be ordered against true or false"),
        ("tags.a is 'x'", 11, "expected `null` after `is`"),
        ("tags.a not = 'x'", 12, "expected `in` or `like` after `not`"),
        ("status in 'x'", 14, "expected `(` and a list after `in`"),
        ("status in ('running' 'failed')", 22, "expected `,` or `)`, found the text 'failed'"),
        ("status in ('running',", 22, "expected a value after the operator"),
        ("tags.a", 7, "expected a comparison (=, !=, <, <=, >, >=, in, like, is null) after `tags.a`"),
        ("(tags.a = 'x' = 1)", 15, "expected `)`, found `=`"),
        ("tags.a != 'x' <> 'y'", 15, "found `<>`"),
        ("= 1", 1, "expected a key such as metrics.test.accuracy, found `=`"),
        ("seed = 0x10", 8, "`0x10` is not a number"),
    ],
)
def test_errors_point_at_the_column(text: str, column: int, part: str) -> None:
    raised = error(text)
    assert raised.column == column, str(raised)
    assert part in raised.message, str(raised)


def test_an_error_shows_the_text_with_a_caret_under_the_column() -> None:
    assert str(error("tags.a == ")).endswith("\n  tags.a == \n            ^")
    shown = str(error("metrics.accuracy > 0.9 and bogus.x = 1"))
    assert shown.startswith("unknown key `bogus.x`; keys start with metrics.")
    assert shown.endswith(" at column 28\n  metrics.accuracy > 0.9 and bogus.x = 1\n                             ^")
    assert str(error("tags.a = 'x\ty' and")).split("\n")[1] == "  tags.a = 'x y' and", "control characters blanked"
    assert hoststore.QueryError("m", 3, "abc").column == 3
    with pytest.raises(ValueError):
        parse_filter("nope")


def test_columns_count_characters_not_bytes() -> None:
    assert error("tags.`é` = 'ü' and ?").column == 20


def test_deep_nesting_and_long_text_are_refused_not_overflowing() -> None:
    assert "longer than 16384 bytes" in error("(" * 10_000 + "tags.a = 'x'" + ")" * 10_000).message
    assert "nested" in error("not " * 1_000 + "verified").message
    assert "nested" in error("(" * 100 + "verified" + ")" * 100).message
    long = error(" or ".join(["seed = 1"] * 300))
    assert "more than 256 comparisons" in long.message and long.column == 256 * 12 + 1
    assert "comparisons" in error(f"seed in ({', '.join(str(n) for n in range(300))})").message
    parse_filter(" or ".join(["seed = 1"] * 256))


def test_orders_parse_with_their_directions() -> None:
    order = parse_order("metrics.test.accuracy desc, started_at")
    assert [(o.key, o.descending) for o in order] == [
        (Key("metric", "test.accuracy"), True),
        (Key("attribute", "started_at"), False),
    ]
    with pytest.raises(hoststore.QueryError, match="expected `asc`, `desc`, `,` or the end"):
        parse_order("metrics.x sideways")
    with pytest.raises(hoststore.QueryError, match="runs cannot be sorted by data.sha256: a run has several"):
        parse_order("data.sha256")


PIECES = [
    "metrics.test.accuracy", "params.a.b", "tags.owner", "status", "seed", "data.sha256", "plugin.model",
    "verified", "metrics.loss.min", "metrics.x@epoch=2", "sweep", "=", "!=", "<", ">=", "in", "not", "like",
    "is", "null", "and", "or", "(", ")", ",", "'ab'", "'x'' or 1=1 --'", "3", "-0.5e2", "true", "`a b`", "@",
    "'completed'", ".", '"q"', "1e999", "'",
]


def test_random_token_soups_parse_or_are_refused_with_a_column_in_the_text() -> None:
    """As the host's own soup test: half pieces at random, half well-formed comparisons with a
    piece spliced in now and then; never another exception, never a column outside the text."""
    numbers = random.Random(0x9E3779B97F4A7C15)
    keys = ["metrics.test.accuracy", "params.a.b", "tags.owner", "seed", "plugin.model", "metrics.loss.min"]
    values = ["'ab'", "'x'' or 1=1 --'", "3", "-0.5e2", "true"]
    parsed = 0
    for _ in range(20_000):
        if numbers.random() < 0.5:
            pieces = [numbers.choice(PIECES) for _ in range(numbers.randint(1, 9))]
            text = ("" if numbers.random() < 0.3 else " ").join(pieces)
        else:
            parts = []
            for index in range(numbers.randint(1, 4)):
                if index:
                    parts.append(numbers.choice(["and", "or", "and not"]))
                operator = numbers.choice(["=", "!=", "<", ">="])
                parts.append(f"{numbers.choice(keys)} {operator} {numbers.choice(values)}")
            if numbers.random() < 0.25:
                parts.insert(numbers.randint(0, len(parts)), numbers.choice(PIECES))
            text = " ".join(parts)
        try:
            parse_filter(text)
            parsed += 1
        except hoststore.QueryError as raised:
            assert 1 <= raised.column <= len(text) + 1, (text, raised)
    assert parsed > 500, parsed
