"""Math word problems: the task type and a seeded generator of problems with exact answers.

Tasks
-----
A task is a :class:`MathTask`: a plain ``dict`` (it travels as JSON through Agent Lightning's HTTP
store) with the keys ``id``, ``question``, ``answer``, ``kind`` and ``difficulty``.
``answer`` is always a canonical decimal string (:mod:`trainer.data.numbers`).

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
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Final

from trainer.data import DatasetError
from trainer.data.numbers import format_decimal
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

_NAMES: Final = (
    "Ava", "Ben", "Chloe", "Diego", "Emma", "Farah", "Gabe", "Hana", "Ivan", "Jade", "Kofi", "Lena",
    "Mateo", "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tariq", "Uma", "Victor", "Wen", "Yuki",
    "Zoe",
)  # fmt: skip
# Things that are counted; templates only ever need their plural.
_ITEMS: Final = (
    "apples", "oranges", "marbles", "stickers", "pencils", "books", "cookies", "seashells", "balloons",
    "stamps", "crayons", "cupcakes", "toy cars", "trading cards", "buttons",
)  # fmt: skip
# (singular, plural) of things that are bought.
_GOODS: Final = (
    ("notebook", "notebooks"), ("pen", "pens"), ("sandwich", "sandwiches"), ("ticket", "tickets"),
    ("mug", "mugs"), ("bottle of juice", "bottles of juice"), ("loaf of bread", "loaves of bread"),
    ("T-shirt", "T-shirts"), ("candle", "candles"), ("plant pot", "plant pots"), ("pie", "pies"),
)  # fmt: skip

_Problem = tuple[str, Fraction]
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
    name, other = rng.sample(_NAMES, 2)
    return {"name": name, "other": other}


def _things(rng: random.Random) -> dict[str, str]:
    return {"items": rng.choice(_ITEMS)}


def _purchase(rng: random.Random) -> dict[str, str]:
    good, goods = rng.choice(_GOODS)
    return {"good": good, "goods": goods}


def _fill(rng: random.Random, templates: Sequence[str], **fields: object) -> str:
    # Templates share one field vocabulary and each uses a subset; str.format ignores the rest.
    return rng.choice(templates).format(**_people(rng), **_things(rng), **_purchase(rng), **fields)


_ADD: Final = (
    "{name} has {a} {items}. {other} gives {name} {b} more. How many {items} does {name} have now?",
    "There are {a} {items} in a basket and {b} {items} on the table. How many {items} are there altogether?",
    "{name} collected {a} {items} on Monday and {b} {items} on Tuesday. How many {items} did {name} collect in total?",
    "{name} has {a} {items} and {other} has {b} {items}. How many {items} do they have together?",
    "{name} puts {b} more {items} into a box that already holds {a}. How many {items} are in the box now?",
)
_ADD3: Final = (
    "A warehouse received {a} {items} in January, {b} in February and {c} in March. How many {items} "
    "arrived in those three months?",
    "{name} counted {a} {items} in the first room, {b} in the second room and {c} in the third room. "
    "How many {items} did {name} count in all?",
    "Three schools collected {a}, {b} and {c} {items} for a charity drive. How many {items} did they "
    "collect altogether?",
)


def _add(rng: random.Random, level: int) -> _Problem:
    if level == 3:
        a, b, c = (rng.randint(100, 5000) for _ in range(3))
        return _fill(rng, _ADD3, a=_num(a), b=_num(b), c=_num(c)), Fraction(a + b + c)
    low, high = (2, 15) if level == 1 else (20, 500)
    a, b = rng.randint(low, high), rng.randint(low, high)
    return _fill(rng, _ADD, a=_num(a), b=_num(b)), Fraction(a + b)


_SUBTRACT: Final = (
    "{name} had {a} {items} and gave {b} of them to {other}. How many {items} does {name} have left?",
    "A shop had {a} {items} in stock and sold {b}. How many {items} are left in stock?",
    "{name} has {a} {items} and {other} has {b}. How many more {items} does {name} have than {other}?",
    "There were {a} {items} in a jar. {name} took out {b}. How many {items} are still in the jar?",
    "{name} needs {a} {items} for a project and already has {b}. How many more {items} does {name} need?",
)


def _subtract(rng: random.Random, level: int) -> _Problem:
    low, high, b_low = {1: (5, 20, 2), 2: (50, 999, 10), 3: (1000, 99999, 100)}[level]
    a = rng.randint(low, high)
    # b < a - 1 keeps both b and the difference at least 2, so "{b} {items}" stays plural.
    b = rng.randint(b_low, a - 2)
    return _fill(rng, _SUBTRACT, a=_num(a), b=_num(b)), Fraction(a - b)


_MULTIPLY: Final = (
    "{name} buys {a} bags of {items}. Each bag holds {b} {items}. How many {items} does {name} buy in total?",
    "There are {a} boxes with {b} {items} in each box. How many {items} are there in all?",
    "{name} puts {b} {items} on each of {a} plates. How many {items} are on the plates altogether?",
    "A classroom has {a} rows of desks with {b} desks in each row. How many desks are in the classroom?",
    "{name} reads {b} pages every day for {a} days. How many pages does {name} read?",
)


def _multiply(rng: random.Random, level: int) -> _Problem:
    (a_low, a_high), (b_low, b_high) = {
        1: ((2, 9), (2, 9)),
        2: ((11, 99), (3, 12)),
        3: ((100, 999), (12, 99)),
    }[level]
    a, b = rng.randint(a_low, a_high), rng.randint(b_low, b_high)
    return _fill(rng, _MULTIPLY, a=_num(a), b=_num(b)), Fraction(a * b)


_DIVIDE: Final = (
    "{name} has {total} {items} and shares them equally among {d} friends. How many {items} does each friend get?",
    "{total} {items} are packed equally into {d} boxes. How many {items} go in each box?",
    "{name} wants to put {total} {items} into bags of {d}. How many bags does {name} need?",
    "A teacher splits {total} students into {d} teams of equal size. How many students are on each team?",
)
_DIVIDE_MONEY: Final = (
    "{d} friends split a restaurant bill of {total} equally. How many dollars does each friend pay?",
    "{name} shares {total} equally among {d} savings jars. How many dollars go into each jar?",
)


def _divide(rng: random.Random, level: int) -> _Problem:
    if level >= 2 and rng.random() < 0.3:
        d = rng.randint(2, 8) if level == 2 else rng.randint(6, 24)
        share = _cents(rng, 100, 4000 if level == 2 else 20000)
        return _fill(rng, _DIVIDE_MONEY, total=_money(share * d), d=_num(d)), share
    (q_low, q_high), (d_low, d_high) = {
        1: ((2, 9), (2, 5)),
        2: ((5, 50), (3, 12)),
        3: ((20, 500), (12, 60)),
    }[level]
    quotient, d = rng.randint(q_low, q_high), rng.randint(d_low, d_high)
    return _fill(rng, _DIVIDE, total=_num(quotient * d), d=_num(d)), Fraction(quotient)


_PERCENT_COUNT: Final = (
    "{name} has {base} {items} and gives away {p}% of them. How many {items} does {name} give away?",
    "In a school of {base} students, {p}% walk to school. How many students walk to school?",
    "A test has {base} questions. {name} answered {p}% of them correctly. How many questions did "
    "{name} answer correctly?",
    "What is {p}% of {base}?",
    "A farm has {base} animals, and {p}% of them are sheep. How many sheep are on the farm?",
)
_PERCENT_DISCOUNT: Final = (
    "A jacket costs {price} and is on sale for {p}% off. How many dollars does the discount save?",
    "{name} earns {price} a week and saves {p}% of it. How many dollars does {name} save each week?",
    "A new phone costs {price}. During a sale its price is cut by {p}%. By how many dollars is the price cut?",
)
_PERCENT_SALE: Final = (
    "A {good} normally costs {price}. It is on sale for {p}% off. What is the sale price in dollars?",
    "{name} buys a bike that costs {price} with a {p}% discount coupon. How many dollars does {name} pay?",
)
_PERCENT_GROWTH: Final = (
    "A town has {base} residents. Its population grows by {p}% this year. How many residents does it "
    "have at the end of the year?",
    "A library owns {base} books and increases its collection by {p}%. How many books does it own now?",
)
_PERCENTS: Final = (5, 10, 15, 20, 25, 30, 40, 60, 75, 80)


def _percent_base(rng: random.Random, percent: int, low: int, high: int) -> int:
    """A random base in [low, high] of which ``percent`` percent is a whole number."""
    step = 100 // math.gcd(percent, 100)
    return step * rng.randint(-(-low // step), high // step)


def _percentage(rng: random.Random, level: int) -> _Problem:
    if level == 1:
        percent, top = rng.choice(((10, 100), (50, 40), (25, 40), (20, 50)))
        base = _percent_base(rng, percent, 10, top)
        return _fill(rng, _PERCENT_COUNT, base=_num(base), p=percent), Fraction(base * percent, 100)
    percent = rng.choice(_PERCENTS)
    style = rng.choice(("count", "discount") if level == 2 else ("count", "sale", "growth"))
    if style == "count":
        high = 1000 if level == 2 else 20000
        base = _percent_base(rng, percent, 20, high)
        return _fill(rng, _PERCENT_COUNT, base=_num(base), p=percent), Fraction(base * percent, 100)
    if style == "growth":
        base = _percent_base(rng, percent, 200, 50000)
        answer = Fraction(base * (100 + percent), 100)
        return _fill(rng, _PERCENT_GROWTH, base=_num(base), p=percent), answer
    price = rng.randint(10, 500) if level == 2 else rng.randint(20, 2000)
    if style == "discount":
        answer = Fraction(price * percent, 100)
        return _fill(rng, _PERCENT_DISCOUNT, price=_money(price), p=percent), answer
    answer = Fraction(price * (100 - percent), 100)
    return _fill(rng, _PERCENT_SALE, price=_money(price), p=percent), answer


_RATE_EASY: Final = (
    "A turtle walks {s} meters every minute. How many meters does it walk in {t} minutes?",
    "A machine makes {s} toys every hour. How many toys does it make in {t} hours?",
    "{name} rides a bike at {s} kilometers per hour. How many kilometers does {name} ride in {t} hours?",
    "{name} reads {s} pages every hour. How many pages does {name} read in {t} hours?",
)
_RATE_SPEED: Final = (
    "A train covers {dist} kilometers in {t} hours. What is its average speed in kilometers per hour?",
    "{name} drove {dist} miles in {t} hours at a steady speed. How many miles per hour was that?",
)
_RATE_DISTANCE: Final = (
    "A car travels at {s} km/h for {t} hours. How many kilometers does it travel?",
    "A delivery van drives at {s} miles per hour. How many miles does it drive in {t} hours?",
)
_RATE_TIME: Final = (
    "How many hours does it take a motorcyclist riding at {s} km/h to travel {dist} km?",
    "A truck drives at a constant {s} miles per hour. How many hours does it need to cover {dist} miles?",
)
_RATE_FILL: Final = (
    "A pump moves {r} liters of water per minute. How many minutes does it take to fill a {v}-liter tank?",
    "{name} types {r} words per minute. How many minutes does it take {name} to type {v} words?",
)
_RATE_TOGETHER: Final = (
    "{name} can paint a fence in {a} hours, and {other} can paint the same fence in {b} hours. "
    "Working together, how many hours will it take them to paint the fence?",
    "One pipe fills a pool in {a} hours and another pipe fills it in {b} hours. If both pipes are "
    "open, how many hours does it take to fill the pool?",
)
_RATE_MEET: Final = (
    "Two cars start {dist} km apart and drive toward each other, one at {s} km/h and the other at "
    "{s2} km/h. After how many hours do they meet?",
)
_RATE_LEGS: Final = (
    "A bus drives for {t} hours at {s} km/h and then for {t2} hours at {s2} km/h. How many "
    "kilometers does it travel in total?",
)


def _rate(rng: random.Random, level: int) -> _Problem | None:
    if level == 1:
        per_unit, units = rng.randint(2, 10), rng.randint(2, 5)
        if rng.random() < 0.5:
            return _fill(rng, _RATE_EASY, s=per_unit, t=units), Fraction(per_unit * units)
        question = _fill(rng, _RATE_SPEED, dist=_num(per_unit * units), t=units)
        return question, Fraction(per_unit)
    if level == 2:
        speed = rng.randrange(20, 95, 5)
        hours = Fraction(rng.randint(4, 16), 2)
        dist = speed * hours
        style = rng.choice(("speed", "distance", "time", "fill"))
        if style == "speed":
            return _fill(rng, _RATE_SPEED, dist=_num(dist), t=_num(hours)), Fraction(speed)
        if style == "distance":
            return _fill(rng, _RATE_DISTANCE, s=speed, t=_num(hours)), dist
        if style == "time":
            return _fill(rng, _RATE_TIME, s=speed, dist=_num(dist)), hours
        per_minute, minutes = rng.randint(5, 60), rng.randint(3, 30)
        question = _fill(rng, _RATE_FILL, r=per_minute, v=_num(per_minute * minutes))
        return question, Fraction(minutes)
    style = rng.choice(("together", "meet", "legs"))
    if style == "together":
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        # Only pairs whose combined time is a short exact decimal (2 and 3 -> 1.2) are usable.
        return _fill(rng, _RATE_TOGETHER, a=a, b=b), Fraction(a * b, a + b)
    if style == "meet":
        s1, s2 = rng.randrange(30, 125, 5), rng.randrange(30, 125, 5)
        hours = Fraction(rng.randint(2, 20), 4)
        question = _fill(rng, _RATE_MEET, dist=_num((s1 + s2) * hours), s=s1, s2=s2)
        return question, hours
    s1, s2 = rng.randrange(30, 125, 5), rng.randrange(30, 125, 5)
    # At least 1.5 hours each: "1 hours" reads wrong and "1 hour" would need another template.
    t1, t2 = Fraction(rng.randint(3, 12), 2), Fraction(rng.randint(3, 12), 2)
    question = _fill(rng, _RATE_LEGS, t=_num(t1), s=s1, t2=_num(t2), s2=s2)
    return question, s1 * t1 + s2 * t2


_PRICE_TOTAL: Final = (
    "One {good} costs {u}. How many dollars do {n} {goods} cost?",
    "{name} buys {n} {goods} for {u} each. How many dollars does {name} spend?",
)
_PRICE_UNIT: Final = (
    "{name} paid {total} for {n} {goods}. Each {good} costs the same. How many dollars does one {good} cost?",
    "A pack of {n} {goods} costs {total}. What is the price of each {good} in dollars?",
)
_PRICE_SCALE: Final = (
    "If {n} {goods} cost {total}, how many dollars do {m} {goods} cost?",
    "{name} paid {total} for {n} {goods}. At the same price each, how many dollars would {m} {goods} cost?",
)


def _unit_price(rng: random.Random, level: int) -> _Problem:
    if level == 1:
        unit, count = Fraction(rng.randint(1, 9)), rng.randint(2, 5)
    elif level == 2:
        unit, count = _cents(rng, 25, 2000), rng.randint(3, 12)
    else:
        unit, count = _cents(rng, 25, 5000), rng.randint(3, 24)
        more = rng.choice([m for m in range(2, 40) if m != count])
        question = _fill(rng, _PRICE_SCALE, n=count, total=_money(unit * count), m=more)
        return question, unit * more
    if rng.random() < 0.5:
        return _fill(rng, _PRICE_TOTAL, u=_money(unit), n=count), unit * count
    return _fill(rng, _PRICE_UNIT, total=_money(unit * count), n=count), unit


_STEPS_GAIN_LOSS: Final = (
    "{name} had {a} {items}. {name} found {b} more and then gave {c} to {other}. How many {items} "
    "does {name} have now?",
    "A shop had {a} {items}. It received a delivery of {b} more and then sold {c}. How many {items} "
    "does the shop have now?",
)
_STEPS_PACKS: Final = (
    "{name} buys {n} packs of {items} with {k} {items} in each pack and gives {g} away. How many "
    "{items} does {name} have left?",
    "There are {n} boxes of {items} with {k} in each box. {name} uses {g} of them. How many {items} are left?",
)
_STEPS_SHARE: Final = (
    "A baker makes {n} trays of muffins with {k} muffins on each tray. The muffins are packed "
    "equally into {m} boxes. How many muffins go in each box?",
    "{name} has {n} bags with {k} {items} in each bag and shares all of them equally among {m} "
    "friends. How many {items} does each friend get?",
)
_STEPS_CHANGE: Final = (
    "{name} buys {n} {goods} at {u} each and pays with a {bill} bill. How many dollars of change does {name} get?",
)
_STEPS_WAGE: Final = (
    "{name} earns {w} per hour and works {h} hours on Saturday and {h2} hours on Sunday. How many "
    "dollars does {name} earn over the weekend?",
)
_STEPS_BUDGET: Final = (
    "{name} has {money}. {name} buys {n} {goods} at {u} each and a gift for {q}. How many dollars "
    "does {name} have left?",
)
_STEPS_GARDEN: Final = (
    "A farmer plants {a} rows of {b} tomato plants. {c} of the plants die, and the rest are shared "
    "equally among {d} neighbors. How many plants does each neighbor get?",
)
_STEPS_RESTOCK: Final = (
    "{name} had {a} {items}, bought {n} boxes with {k} {items} in each, and then gave away {g}. How "
    "many {items} does {name} have now?",
)
_STEPS_CLASSES: Final = (
    "A school orders {n} boxes of {k} pencils. The pencils are split equally among {m} classes, and "
    "each class then gives {g} pencils to the art room. How many pencils does each class keep?",
)


def _multi_step(rng: random.Random, level: int) -> _Problem | None:
    if level == 2:
        style = rng.choice(("gain_loss", "packs", "share", "change", "wage"))
        if style == "gain_loss":
            a, b = rng.randint(10, 60), rng.randint(5, 40)
            c = rng.randint(2, a + b - 2)
            return _fill(rng, _STEPS_GAIN_LOSS, a=a, b=b, c=c), Fraction(a + b - c)
        if style == "packs":
            n, k = rng.randint(2, 9), rng.randint(3, 12)
            g = rng.randint(2, n * k - 2)
            return _fill(rng, _STEPS_PACKS, n=n, k=k, g=g), Fraction(n * k - g)
        if style == "share":
            n, k = rng.randint(2, 9), rng.randint(3, 12)
            m = rng.choice([d for d in range(2, n * k) if (n * k) % d == 0])
            return _fill(rng, _STEPS_SHARE, n=n, k=k, m=m), Fraction(n * k, m)
        if style == "change":
            n, unit = rng.randint(2, 6), _cents(rng, 50, 1500, 25)
            bills = [bill for bill in (10, 20, 50, 100) if bill >= n * unit]
            if not bills:
                return None
            bill = rng.choice(bills)
            question = _fill(rng, _STEPS_CHANGE, n=n, u=_money(unit), bill=_money(bill))
            return question, bill - n * unit
        wage, h1, h2 = rng.randint(8, 30), rng.randint(2, 8), rng.randint(2, 8)
        return _fill(rng, _STEPS_WAGE, w=_money(wage), h=h1, h2=h2), Fraction(wage * (h1 + h2))
    style = rng.choice(("budget", "garden", "restock", "classes"))
    if style == "budget":
        n, unit, gift = rng.randint(2, 9), _cents(rng, 100, 1500, 25), _cents(rng, 200, 4000, 50)
        spent = n * unit + gift
        money = math.ceil(spent / 10) * 10 + 10 * rng.randint(0, 10)
        question = _fill(rng, _STEPS_BUDGET, money=_money(money), n=n, u=_money(unit), q=_money(gift))
        return question, money - spent
    if style == "garden":
        a, b, d = rng.randint(5, 30), rng.randint(6, 40), rng.randint(3, 12)
        # Whatever survives must split evenly: pick the share, and the losses follow from it.
        share = rng.randint(1, (a * b - 2) // d)
        c = a * b - share * d
        return _fill(rng, _STEPS_GARDEN, a=a, b=b, c=_num(c), d=d), Fraction(share)
    if style == "restock":
        a, n, k = rng.randint(50, 900), rng.randint(3, 20), rng.randint(6, 48)
        g = rng.randint(10, a + n * k - 10)
        question = _fill(rng, _STEPS_RESTOCK, a=_num(a), n=n, k=k, g=_num(g))
        return question, Fraction(a + n * k - g)
    n, k = rng.randint(4, 30), rng.choice((12, 24, 36, 48))
    m = rng.choice([d for d in range(2, 13) if (n * k) % d == 0])
    per_class = n * k // m
    g = rng.randint(1, per_class - 2)
    return _fill(rng, _STEPS_CLASSES, n=n, k=k, m=m, g=g), Fraction(per_class - g)


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


def _draw(rng: random.Random, level: int) -> tuple[str, str, Fraction]:
    for _ in range(_MAX_DRAWS):
        kind = rng.choice(_KINDS_AT[level])
        problem = _GENERATORS[kind](rng, level)
        if problem is not None and _acceptable(problem[1]):
            return kind, problem[0], problem[1]
    raise RuntimeError(f"no valid difficulty-{level} problem in {_MAX_DRAWS} draws")  # pragma: no cover


def generate_problems(n: int, seed: int, difficulties: Sequence[int] = DIFFICULTIES) -> list[MathTask]:
    """``n`` deterministic word problems (rules in the module docstring).

    Raises:
        DatasetError: ``n`` is negative, or ``difficulties`` is empty or holds a value outside 1-3.
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
    for i in range(n):
        level = rng.choice(difficulties)
        kind, question, answer = _draw(rng, level)
        tasks.append(
            MathTask(
                id=f"gen-{seed}-{i}",
                question=question,
                answer=format_decimal(answer),
                kind=kind,
                difficulty=level,
            )
        )
    return tasks
