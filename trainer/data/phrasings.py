"""The words of the generated problems: names, things, and the phrasings of every kind of problem.

Each phrasing is a ``str.format`` template over one shared vocabulary (``name``, ``other``, ``items``,
``good``, ``goods`` and the numbers of its kind); :mod:`trainer.data.problems` picks one per problem.
"""

from __future__ import annotations

from typing import Final

NAMES: Final = (
    "Ava", "Ben", "Chloe", "Diego", "Emma", "Farah", "Gabe", "Hana", "Ivan", "Jade", "Kofi", "Lena",
    "Mateo", "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tariq", "Uma", "Victor", "Wen", "Yuki",
    "Zoe",
)  # fmt: skip


# Things that are counted; templates only ever need their plural.
ITEMS: Final = (
    "apples", "oranges", "marbles", "stickers", "pencils", "books", "cookies", "seashells", "balloons",
    "stamps", "crayons", "cupcakes", "toy cars", "trading cards", "buttons",
)  # fmt: skip


# (singular, plural) of things that are bought.
GOODS: Final = (
    ("notebook", "notebooks"), ("pen", "pens"), ("sandwich", "sandwiches"), ("ticket", "tickets"),
    ("mug", "mugs"), ("bottle of juice", "bottles of juice"), ("loaf of bread", "loaves of bread"),
    ("T-shirt", "T-shirts"), ("candle", "candles"), ("plant pot", "plant pots"), ("pie", "pies"),
)  # fmt: skip


ADD: Final = (
    "{name} has {a} {items}. {other} gives {name} {b} more. How many {items} does {name} have now?",
    "There are {a} {items} in a basket and {b} {items} on the table. How many {items} are there altogether?",
    "{name} collected {a} {items} on Monday and {b} {items} on Tuesday. How many {items} did {name} collect in total?",
    "{name} has {a} {items} and {other} has {b} {items}. How many {items} do they have together?",
    "{name} puts {b} more {items} into a box that already holds {a}. How many {items} are in the box now?",
)


ADD3: Final = (
    "A warehouse received {a} {items} in January, {b} in February and {c} in March. How many {items} "
    "arrived in those three months?",
    "{name} counted {a} {items} in the first room, {b} in the second room and {c} in the third room. "
    "How many {items} did {name} count in all?",
    "Three schools collected {a}, {b} and {c} {items} for a charity drive. How many {items} did they "
    "collect altogether?",
)


SUBTRACT: Final = (
    "{name} had {a} {items} and gave {b} of them to {other}. How many {items} does {name} have left?",
    "A shop had {a} {items} in stock and sold {b}. How many {items} are left in stock?",
    "{name} has {a} {items} and {other} has {b}. How many more {items} does {name} have than {other}?",
    "There were {a} {items} in a jar. {name} took out {b}. How many {items} are still in the jar?",
    "{name} needs {a} {items} for a project and already has {b}. How many more {items} does {name} need?",
)


MULTIPLY: Final = (
    "{name} buys {a} bags of {items}. Each bag holds {b} {items}. How many {items} does {name} buy in total?",
    "There are {a} boxes with {b} {items} in each box. How many {items} are there in all?",
    "{name} puts {b} {items} on each of {a} plates. How many {items} are on the plates altogether?",
    "A classroom has {a} rows of desks with {b} desks in each row. How many desks are in the classroom?",
    "{name} reads {b} pages every day for {a} days. How many pages does {name} read?",
)


DIVIDE: Final = (
    "{name} has {total} {items} and shares them equally among {d} friends. How many {items} does each friend get?",
    "{total} {items} are packed equally into {d} boxes. How many {items} go in each box?",
    "{name} wants to put {total} {items} into bags of {d}. How many bags does {name} need?",
    "A teacher splits {total} students into {d} teams of equal size. How many students are on each team?",
)


DIVIDE_MONEY: Final = (
    "{d} friends split a restaurant bill of {total} equally. How many dollars does each friend pay?",
    "{name} shares {total} equally among {d} savings jars. How many dollars go into each jar?",
)


PERCENT_COUNT: Final = (
    "{name} has {base} {items} and gives away {p}% of them. How many {items} does {name} give away?",
    "In a school of {base} students, {p}% walk to school. How many students walk to school?",
    "A test has {base} questions. {name} answered {p}% of them correctly. How many questions did "
    "{name} answer correctly?",
    "What is {p}% of {base}?",
    "A farm has {base} animals, and {p}% of them are sheep. How many sheep are on the farm?",
)


PERCENT_DISCOUNT: Final = (
    "A jacket costs {price} and is on sale for {p}% off. How many dollars does the discount save?",
    "{name} earns {price} a week and saves {p}% of it. How many dollars does {name} save each week?",
    "A new phone costs {price}. During a sale its price is cut by {p}%. By how many dollars is the price cut?",
)


PERCENT_SALE: Final = (
    "A {good} normally costs {price}. It is on sale for {p}% off. What is the sale price in dollars?",
    "{name} buys a bike that costs {price} with a {p}% discount coupon. How many dollars does {name} pay?",
)


PERCENT_GROWTH: Final = (
    "A town has {base} residents. Its population grows by {p}% this year. How many residents does it "
    "have at the end of the year?",
    "A library owns {base} books and increases its collection by {p}%. How many books does it own now?",
)


RATE_EASY: Final = (
    "A turtle walks {s} meters every minute. How many meters does it walk in {t} minutes?",
    "A machine makes {s} toys every hour. How many toys does it make in {t} hours?",
    "{name} rides a bike at {s} kilometers per hour. How many kilometers does {name} ride in {t} hours?",
    "{name} reads {s} pages every hour. How many pages does {name} read in {t} hours?",
)


RATE_SPEED: Final = (
    "A train covers {dist} kilometers in {t} hours. What is its average speed in kilometers per hour?",
    "{name} drove {dist} miles in {t} hours at a steady speed. How many miles per hour was that?",
)


RATE_DISTANCE: Final = (
    "A car travels at {s} km/h for {t} hours. How many kilometers does it travel?",
    "A delivery van drives at {s} miles per hour. How many miles does it drive in {t} hours?",
)


RATE_TIME: Final = (
    "How many hours does it take a motorcyclist riding at {s} km/h to travel {dist} km?",
    "A truck drives at a constant {s} miles per hour. How many hours does it need to cover {dist} miles?",
)


RATE_FILL: Final = (
    "A pump moves {r} liters of water per minute. How many minutes does it take to fill a {v}-liter tank?",
    "{name} types {r} words per minute. How many minutes does it take {name} to type {v} words?",
)


RATE_TOGETHER: Final = (
    "{name} can paint a fence in {a} hours, and {other} can paint the same fence in {b} hours. "
    "Working together, how many hours will it take them to paint the fence?",
    "One pipe fills a pool in {a} hours and another pipe fills it in {b} hours. If both pipes are "
    "open, how many hours does it take to fill the pool?",
)


RATE_MEET: Final = (
    "Two cars start {dist} km apart and drive toward each other, one at {s} km/h and the other at "
    "{s2} km/h. After how many hours do they meet?",
)


RATE_LEGS: Final = (
    "A bus drives for {t} hours at {s} km/h and then for {t2} hours at {s2} km/h. How many "
    "kilometers does it travel in total?",
)


PRICE_TOTAL: Final = (
    "One {good} costs {u}. How many dollars do {n} {goods} cost?",
    "{name} buys {n} {goods} for {u} each. How many dollars does {name} spend?",
)


PRICE_UNIT: Final = (
    "{name} paid {total} for {n} {goods}. Each {good} costs the same. How many dollars does one {good} cost?",
    "A pack of {n} {goods} costs {total}. What is the price of each {good} in dollars?",
)


PRICE_SCALE: Final = (
    "If {n} {goods} cost {total}, how many dollars do {m} {goods} cost?",
    "{name} paid {total} for {n} {goods}. At the same price each, how many dollars would {m} {goods} cost?",
)


STEPS_GAIN_LOSS: Final = (
    "{name} had {a} {items}. {name} found {b} more and then gave {c} to {other}. How many {items} "
    "does {name} have now?",
    "A shop had {a} {items}. It received a delivery of {b} more and then sold {c}. How many {items} "
    "does the shop have now?",
)


STEPS_PACKS: Final = (
    "{name} buys {n} packs of {items} with {k} {items} in each pack and gives {g} away. How many "
    "{items} does {name} have left?",
    "There are {n} boxes of {items} with {k} in each box. {name} uses {g} of them. How many {items} are left?",
)


STEPS_SHARE: Final = (
    "A baker makes {n} trays of muffins with {k} muffins on each tray. The muffins are packed "
    "equally into {m} boxes. How many muffins go in each box?",
    "{name} has {n} bags with {k} {items} in each bag and shares all of them equally among {m} "
    "friends. How many {items} does each friend get?",
)


STEPS_CHANGE: Final = (
    "{name} buys {n} {goods} at {u} each and pays with a {bill} bill. How many dollars of change does {name} get?",
)


STEPS_WAGE: Final = (
    "{name} earns {w} per hour and works {h} hours on Saturday and {h2} hours on Sunday. How many "
    "dollars does {name} earn over the weekend?",
)


STEPS_BUDGET: Final = (
    "{name} has {money}. {name} buys {n} {goods} at {u} each and a gift for {q}. How many dollars "
    "does {name} have left?",
)


STEPS_GARDEN: Final = (
    "A farmer plants {a} rows of {b} tomato plants. {c} of the plants die, and the rest are shared "
    "equally among {d} neighbors. How many plants does each neighbor get?",
)


STEPS_RESTOCK: Final = (
    "{name} had {a} {items}, bought {n} boxes with {k} {items} in each, and then gave away {g}. How "
    "many {items} does {name} have now?",
)


STEPS_CLASSES: Final = (
    "A school orders {n} boxes of {k} pencils. The pencils are split equally among {m} classes, and "
    "each class then gives {g} pencils to the art room. How many pencils does each class keep?",
)
