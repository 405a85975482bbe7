"""Math word problems: the task type and a seeded generator of problems with exact answers.

Tasks
-----
A task is a :class:`MathTask`: a plain ``dict`` (it travels as JSON through Agent Lightning's HTTP
store) with the keys ``id``, ``question``, ``answer``, ``kind`` and ``difficulty``, and optionally
``solution``. ``answer`` is always a canonical decimal string (:mod:`trainer.data.numbers`);
``solution`` is a worked reply ending with ``The answer is <answer>.`` (:mod:`trainer.data.solutions`).

Generated problems (:func:`generate_problems`)
----------------------------------------------
* Deterministic: the same ``(n, seed, difficulties)`` gives the same list, and problem ``i`` only
  depends on the draws made for problems ``0..i``, so a longer list extends a shorter one.
  Ids are ``f"gen-{seed}-{i}"``.
* Each problem draws its difficulty uniformly from ``difficulties`` (repeat a value to weight it),
  then a kind among those that exist at that difficulty, then one of several phrasings with
  varied names and objects.
* Difficulty 1: one step, small numbers (every number in the question and the answer is at most
  100) -- a 135M-parameter model must be able to solve these. Difficulty 2: one step with bigger
  numbers, or a two-step ``multi_step`` problem. Difficulty 3: bigger numbers still, or problems
  with two to three operations.
* Kinds: ``add``, ``subtract``, ``multiply``, ``divide`` (always exact), ``multi_step``
  (difficulty 2-3 only), ``percentage``, ``rate`` (speed/time/distance, work rates) and
  ``unit_price``.
* Every answer is non-negative and has at most two decimal places; problems that would break this
  are redrawn, never rounded.
* Questions are unique: a question already in the list is redrawn, so no two splits share one
  (the rule a JSONL file is held to).
* Every problem has a ``solution``: one arithmetic expression that evaluates exactly to the answer,
  then its value (``"45 + 5 - 7 = 43. The answer is 43."``). It is built from the numbers already
  drawn and draws nothing, so every seed gives the same problems it gave before solutions existed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Final

from trainer.data import DatasetError
from trainer.data import phrasings as say
from trainer.data.numbers import format_decimal
from trainer.data.solutions import expression, worked
from trainer.task import Problem

__all__ = ["DIFFICULTIES", "KINDS", "MathTask", "generate_problems"]


class MathTask(Problem):
    """One word problem; a plain JSON-serializable dict (see the module docstring)."""

    kind: str
    difficulty: int


KINDS: Final[tuple[str, ...]] = (
    "add",
    "subtract",
    "multiply",
    "divide",
    "multi_step",
    "percentage",
    "rate",
    "unit_price",
)
DIFFICULTIES: Final[tuple[int, ...]] = (1, 2, 3)

# --------------------------------------------------------------------------------------------------
# Generated problems
# --------------------------------------------------------------------------------------------------


# (question, an arithmetic expression of its answer, the answer); see trainer.data.solutions.
_Problem = tuple[str, str, Fraction]
# A kind's generator returns None when its draw cannot make a valid problem; the caller redraws.
_Generator = Callable[[random.Random, int], _Problem | None]


def _num(value: int | Fraction) -> str:
    """How a number is written in a question: thousands separators, exact decimals."""
    value = Fraction(value)
    if value.denominator == 1:
        return f"{value.numerator:,}"
    whole, _, digits = format_decimal(value).partition(".")
    return f"{int(whole):,}.{digits}"


def _money(value: int | Fraction) -> str:
    cents = Fraction(value) * 100
    dollars, rest = divmod(int(cents), 100)
    return f"${dollars:,}" if rest == 0 else f"${dollars:,}.{rest:02d}"


def _cents(rng: random.Random, low: int, high: int, step: int = 5) -> Fraction:
    """A random price between ``low`` and ``high`` cents, a multiple of ``step`` cents."""
    return Fraction(rng.randrange(low, high + 1, step), 100)


def _people(rng: random.Random) -> dict[str, str]:
    name, other = rng.sample(say.NAMES, 2)
    return {"name": name, "other": other}


def _things(rng: random.Random) -> dict[str, str]:
    return {"items": rng.choice(say.ITEMS)}


def _purchase(rng: random.Random) -> dict[str, str]:
    good, goods = rng.choice(say.GOODS)
    return {"good": good, "goods": goods}


def _fill(rng: random.Random, templates: Sequence[str], **fields: object) -> str:
    # Templates share one field vocabulary and each uses a subset; str.format ignores the rest.
    return rng.choice(templates).format(**_people(rng), **_things(rng), **_purchase(rng), **fields)


def _add(rng: random.Random, level: int) -> _Problem:
    if level == 3:
        a, b, c = (rng.randint(100, 5000) for _ in range(3))
        question = _fill(rng, say.ADD3, a=_num(a), b=_num(b), c=_num(c))
        return question, expression("{} + {} + {}", a, b, c), Fraction(a + b + c)
    low, high = (2, 15) if level == 1 else (20, 500)
    a, b = rng.randint(low, high), rng.randint(low, high)
    return _fill(rng, say.ADD, a=_num(a), b=_num(b)), expression("{} + {}", a, b), Fraction(a + b)


def _subtract(rng: random.Random, level: int) -> _Problem:
    low, high, b_low = {1: (5, 20, 2), 2: (50, 999, 10), 3: (1000, 99999, 100)}[level]
    a = rng.randint(low, high)
    # b < a - 1 keeps both b and the difference at least 2, so "{b} {items}" stays plural.
    b = rng.randint(b_low, a - 2)
    return _fill(rng, say.SUBTRACT, a=_num(a), b=_num(b)), expression("{} - {}", a, b), Fraction(a - b)


def _multiply(rng: random.Random, level: int) -> _Problem:
    (a_low, a_high), (b_low, b_high) = {
        1: ((2, 9), (2, 9)),
        2: ((11, 99), (3, 12)),
        3: ((100, 999), (12, 99)),
    }[level]
    a, b = rng.randint(a_low, a_high), rng.randint(b_low, b_high)
    return _fill(rng, say.MULTIPLY, a=_num(a), b=_num(b)), expression("{} * {}", a, b), Fraction(a * b)


def _divide(rng: random.Random, level: int) -> _Problem:
    if level >= 2 and rng.random() < 0.3:
        d = rng.randint(2, 8) if level == 2 else rng.randint(6, 24)
        share = _cents(rng, 100, 4000 if level == 2 else 20000)
        question = _fill(rng, say.DIVIDE_MONEY, total=_money(share * d), d=_num(d))
        return question, expression("{} / {}", share * d, d), share
    (q_low, q_high), (d_low, d_high) = {
        1: ((2, 9), (2, 5)),
        2: ((5, 50), (3, 12)),
        3: ((20, 500), (12, 60)),
    }[level]
    quotient, d = rng.randint(q_low, q_high), rng.randint(d_low, d_high)
    question = _fill(rng, say.DIVIDE, total=_num(quotient * d), d=_num(d))
    return question, expression("{} / {}", quotient * d, d), Fraction(quotient)


_PERCENTS: Final = (5, 10, 15, 20, 25, 30, 40, 60, 75, 80)


def _percent_base(rng: random.Random, percent: int, low: int, high: int) -> int:
    """A random base in [low, high] of which ``percent`` percent is a whole number."""
    step = 100 // math.gcd(percent, 100)
    return step * rng.randint(-(-low // step), high // step)


def _percentage(rng: random.Random, level: int) -> _Problem:
    if level == 1:
        percent, top = rng.choice(((10, 100), (50, 40), (25, 40), (20, 50)))
        base = _percent_base(rng, percent, 10, top)
        question = _fill(rng, say.PERCENT_COUNT, base=_num(base), p=percent)
        return question, expression("{} * {} / 100", base, percent), Fraction(base * percent, 100)
    percent = rng.choice(_PERCENTS)
    style = rng.choice(("count", "discount") if level == 2 else ("count", "sale", "growth"))
    if style == "count":
        high = 1000 if level == 2 else 20000
        base = _percent_base(rng, percent, 20, high)
        question = _fill(rng, say.PERCENT_COUNT, base=_num(base), p=percent)
        return question, expression("{} * {} / 100", base, percent), Fraction(base * percent, 100)
    if style == "growth":
        base = _percent_base(rng, percent, 200, 50000)
        answer = Fraction(base * (100 + percent), 100)
        question = _fill(rng, say.PERCENT_GROWTH, base=_num(base), p=percent)
        return question, expression("{} + {} * {} / 100", base, base, percent), answer
    price = rng.randint(10, 500) if level == 2 else rng.randint(20, 2000)
    if style == "discount":
        answer = Fraction(price * percent, 100)
        question = _fill(rng, say.PERCENT_DISCOUNT, price=_money(price), p=percent)
        return question, expression("{} * {} / 100", price, percent), answer
    answer = Fraction(price * (100 - percent), 100)
    question = _fill(rng, say.PERCENT_SALE, price=_money(price), p=percent)
    return question, expression("{} - {} * {} / 100", price, price, percent), answer


def _rate(rng: random.Random, level: int) -> _Problem | None:
    if level == 1:
        per_unit, units = rng.randint(2, 10), rng.randint(2, 5)
        if rng.random() < 0.5:
            question = _fill(rng, say.RATE_EASY, s=per_unit, t=units)
            return question, expression("{} * {}", per_unit, units), Fraction(per_unit * units)
        question = _fill(rng, say.RATE_SPEED, dist=_num(per_unit * units), t=units)
        return question, expression("{} / {}", per_unit * units, units), Fraction(per_unit)
    if level == 2:
        speed = rng.randrange(20, 95, 5)
        hours = Fraction(rng.randint(4, 16), 2)
        dist = speed * hours
        style = rng.choice(("speed", "distance", "time", "fill"))
        if style == "speed":
            question = _fill(rng, say.RATE_SPEED, dist=_num(dist), t=_num(hours))
            return question, expression("{} / {}", dist, hours), Fraction(speed)
        if style == "distance":
            return _fill(rng, say.RATE_DISTANCE, s=speed, t=_num(hours)), expression("{} * {}", speed, hours), dist
        if style == "time":
            return _fill(rng, say.RATE_TIME, s=speed, dist=_num(dist)), expression("{} / {}", dist, speed), hours
        per_minute, minutes = rng.randint(5, 60), rng.randint(3, 30)
        question = _fill(rng, say.RATE_FILL, r=per_minute, v=_num(per_minute * minutes))
        return question, expression("{} / {}", per_minute * minutes, per_minute), Fraction(minutes)
    style = rng.choice(("together", "meet", "legs"))
    if style == "together":
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        # Only pairs whose combined time is a short exact decimal (2 and 3 -> 1.2) are usable.
        question = _fill(rng, say.RATE_TOGETHER, a=a, b=b)
        return question, expression("{} * {} / ({} + {})", a, b, a, b), Fraction(a * b, a + b)
    if style == "meet":
        s1, s2 = rng.randrange(30, 125, 5), rng.randrange(30, 125, 5)
        hours = Fraction(rng.randint(2, 20), 4)
        question = _fill(rng, say.RATE_MEET, dist=_num((s1 + s2) * hours), s=s1, s2=s2)
        return question, expression("{} / ({} + {})", (s1 + s2) * hours, s1, s2), hours
    s1, s2 = rng.randrange(30, 125, 5), rng.randrange(30, 125, 5)
    # At least 1.5 hours each: "1 hours" reads wrong and "1 hour" would need another template.
    t1, t2 = Fraction(rng.randint(3, 12), 2), Fraction(rng.randint(3, 12), 2)
    question = _fill(rng, say.RATE_LEGS, t=_num(t1), s=s1, t2=_num(t2), s2=s2)
    return question, expression("{} * {} + {} * {}", s1, t1, s2, t2), s1 * t1 + s2 * t2


def _unit_price(rng: random.Random, level: int) -> _Problem:
    if level == 1:
        unit, count = Fraction(rng.randint(1, 9)), rng.randint(2, 5)
    elif level == 2:
        unit, count = _cents(rng, 25, 2000), rng.randint(3, 12)
    else:
        unit, count = _cents(rng, 25, 5000), rng.randint(3, 24)
        more = rng.choice([m for m in range(2, 40) if m != count])
        question = _fill(rng, say.PRICE_SCALE, n=count, total=_money(unit * count), m=more)
        return question, expression("{} / {} * {}", unit * count, count, more), unit * more
    if rng.random() < 0.5:
        question = _fill(rng, say.PRICE_TOTAL, u=_money(unit), n=count)
        return question, expression("{} * {}", unit, count), unit * count
    question = _fill(rng, say.PRICE_UNIT, total=_money(unit * count), n=count)
    return question, expression("{} / {}", unit * count, count), unit


def _multi_step(rng: random.Random, level: int) -> _Problem | None:
    if level == 2:
        style = rng.choice(("gain_loss", "packs", "share", "change", "wage"))
        if style == "gain_loss":
            a, b = rng.randint(10, 60), rng.randint(5, 40)
            c = rng.randint(2, a + b - 2)
            question = _fill(rng, say.STEPS_GAIN_LOSS, a=a, b=b, c=c)
            return question, expression("{} + {} - {}", a, b, c), Fraction(a + b - c)
        if style == "packs":
            n, k = rng.randint(2, 9), rng.randint(3, 12)
            g = rng.randint(2, n * k - 2)
            question = _fill(rng, say.STEPS_PACKS, n=n, k=k, g=g)
            return question, expression("{} * {} - {}", n, k, g), Fraction(n * k - g)
        if style == "share":
            n, k = rng.randint(2, 9), rng.randint(3, 12)
            m = rng.choice([d for d in range(2, n * k) if (n * k) % d == 0])
            question = _fill(rng, say.STEPS_SHARE, n=n, k=k, m=m)
            return question, expression("{} * {} / {}", n, k, m), Fraction(n * k, m)
        if style == "change":
            n, unit = rng.randint(2, 6), _cents(rng, 50, 1500, 25)
            bills = [bill for bill in (10, 20, 50, 100) if bill >= n * unit]
            if not bills:
                return None
            bill = rng.choice(bills)
            question = _fill(rng, say.STEPS_CHANGE, n=n, u=_money(unit), bill=_money(bill))
            return question, expression("{} - {} * {}", bill, n, unit), bill - n * unit
        wage, h1, h2 = rng.randint(8, 30), rng.randint(2, 8), rng.randint(2, 8)
        question = _fill(rng, say.STEPS_WAGE, w=_money(wage), h=h1, h2=h2)
        return question, expression("{} * ({} + {})", wage, h1, h2), Fraction(wage * (h1 + h2))
    style = rng.choice(("budget", "garden", "restock", "classes"))
    if style == "budget":
        n, unit, gift = rng.randint(2, 9), _cents(rng, 100, 1500, 25), _cents(rng, 200, 4000, 50)
        spent = n * unit + gift
        money = math.ceil(spent / 10) * 10 + 10 * rng.randint(0, 10)
        question = _fill(rng, say.STEPS_BUDGET, money=_money(money), n=n, u=_money(unit), q=_money(gift))
        return question, expression("{} - ({} * {} + {})", money, n, unit, gift), money - spent
    if style == "garden":
        a, b, d = rng.randint(5, 30), rng.randint(6, 40), rng.randint(3, 12)
        # Whatever survives must split evenly: pick the share, and the losses follow from it.
        share = rng.randint(1, (a * b - 2) // d)
        c = a * b - share * d
        question = _fill(rng, say.STEPS_GARDEN, a=a, b=b, c=_num(c), d=d)
        return question, expression("({} * {} - {}) / {}", a, b, c, d), Fraction(share)
    if style == "restock":
        a, n, k = rng.randint(50, 900), rng.randint(3, 20), rng.randint(6, 48)
        g = rng.randint(10, a + n * k - 10)
        question = _fill(rng, say.STEPS_RESTOCK, a=_num(a), n=n, k=k, g=_num(g))
        return question, expression("{} + {} * {} - {}", a, n, k, g), Fraction(a + n * k - g)
    n, k = rng.randint(4, 30), rng.choice((12, 24, 36, 48))
    m = rng.choice([d for d in range(2, 13) if (n * k) % d == 0])
    per_class = n * k // m
    g = rng.randint(1, per_class - 2)
    question = _fill(rng, say.STEPS_CLASSES, n=n, k=k, m=m, g=g)
    return question, expression("{} * {} / {} - {}", n, k, m, g), Fraction(per_class - g)


_GENERATORS: Final[dict[str, _Generator]] = {
    "add": _add,
    "subtract": _subtract,
    "multiply": _multiply,
    "divide": _divide,
    "multi_step": _multi_step,
    "percentage": _percentage,
    "rate": _rate,
    "unit_price": _unit_price,
}
_KINDS_AT: Final[dict[int, tuple[str, ...]]] = {
    1: tuple(kind for kind in KINDS if kind != "multi_step"),
    2: KINDS,
    3: KINDS,
}
# Far above what is ever needed: only work rates get rejected, and a third of their draws pass.
_MAX_DRAWS: Final = 1000


def _acceptable(answer: Fraction) -> bool:
    return answer >= 0 and (answer * 100).denominator == 1


def _draw(rng: random.Random, level: int) -> tuple[str, str, str, Fraction]:
    """A ``(kind, question, expression, answer)`` at difficulty ``level``."""
    for _ in range(_MAX_DRAWS):
        kind = rng.choice(_KINDS_AT[level])
        problem = _GENERATORS[kind](rng, level)
        if problem is not None and _acceptable(problem[2]):
            return kind, *problem
    raise RuntimeError(f"no valid difficulty-{level} problem in {_MAX_DRAWS} draws")  # pragma: no cover


def generate_problems(n: int, seed: int, difficulties: Sequence[int] = DIFFICULTIES) -> list[MathTask]:
    """``n`` deterministic word problems (rules in the module docstring).

    Raises:
        DatasetError: ``n`` is negative, ``difficulties`` is empty or holds a value outside 1-3, or
            there are not ``n`` distinct problems at those difficulties.
    """
    if n < 0:
        raise DatasetError(f"cannot generate a negative number of problems ({n})")
    if not difficulties:
        raise DatasetError("difficulties is empty: give at least one of 1, 2, 3")
    unknown = sorted({d for d in difficulties if d not in DIFFICULTIES})
    if unknown:
        raise DatasetError(f"unknown difficulties {unknown}: choose from 1, 2, 3")
    rng = random.Random(seed)
    tasks: list[MathTask] = []
    seen: set[str] = set()
    for i in range(n):
        level = rng.choice(difficulties)
        # A repeated question is redrawn (at the same difficulty): the splits must not share one.
        for _ in range(_MAX_DRAWS):
            kind, question, expr, answer = _draw(rng, level)
            if question not in seen:
                break
        else:
            raise DatasetError(
                f"cannot generate {n} distinct problems at difficulties {sorted(set(difficulties))}: "
                f"only {len(tasks)} found; lower TRAIN_SIZE / VAL_SIZE / TEST_SIZE or allow harder problems"
            )
        seen.add(question)
        tasks.append(
            MathTask(
                id=f"gen-{seed}-{i}",
                question=question,
                answer=format_decimal(answer),
                kind=kind,
                difficulty=level,
                solution=worked(expr, answer),
            )
        )
    return tasks
