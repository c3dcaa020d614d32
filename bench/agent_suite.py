"""A development suite of multi-step agent tasks with real tools (``bench/agents.py``).

Thirty tasks over six tools with fixed data: the weather in a city, a stock's
price, currency conversion, order status, arithmetic and word counts. Half need
one call; the others need two or three calls whose results feed each other
("what do 3 MSFT shares cost in euros?"). A task succeeds when its last answer
states the expected value (numbers within 1%).
"""

from __future__ import annotations

import ast
import itertools
import operator
import re
from dataclasses import dataclass, field

from langchain_core.tools import BaseTool, tool

WEATHER = {
    "Paris": (18, "sunny"), "Tokyo": (24, "cloudy"), "Madrid": (31, "sunny"),
    "Oslo": (7, "rainy"), "Cairo": (35, "clear"), "Lima": (16, "foggy"),
}  # fmt: skip
PRICES = {"AAPL": 187.5, "MSFT": 410.0, "NVDA": 122.0, "TSLA": 250.0, "GOOG": 165.0}
RATES = {"USD": 1.0, "EUR": 0.92, "GBP": 0.79, "JPY": 151.0}  # per US dollar
ORDERS = {
    "A-1001": ("shipped", "2026-12-03"), "A-1002": ("processing", "2026-12-09"),
    "A-1003": ("delivered", "2026-11-20"), "A-1004": ("cancelled", "none"),
    "A-1005": ("shipped", "2026-12-05"), "A-1006": ("delayed", "2026-12-15"),
}  # fmt: skip


@tool
def get_weather(city: str) -> str:
    """The weather now in a city: temperature in degrees Celsius and the sky."""
    name = city.strip().title()
    if name not in WEATHER:
        return f"no weather data for {city!r}; known cities: {', '.join(WEATHER)}"
    degrees, sky = WEATHER[name]
    return f"{name}: {degrees} degrees Celsius, {sky}"


@tool
def stock_price(ticker: str) -> str:
    """The latest price of one share of a stock in US dollars, by its ticker symbol."""
    symbol = ticker.strip().upper()
    if symbol not in PRICES:
        return f"unknown ticker {ticker!r}; known: {', '.join(PRICES)}"
    return f"{symbol}: {PRICES[symbol]} USD per share"


@tool
def convert_currency(amount: float, from_currency: str, to_currency: str) -> str:
    """Convert an amount of money from one currency to another (USD, EUR, GBP, JPY)."""
    src, dst = from_currency.strip().upper(), to_currency.strip().upper()
    if src not in RATES or dst not in RATES:
        return f"unknown currency; known: {', '.join(RATES)}"
    return f"{amount} {src} = {round(amount / RATES[src] * RATES[dst], 2)} {dst}"


@tool
def order_status(order_id: str) -> str:
    """The status of a customer's order and its (expected) delivery date."""
    key = order_id.strip().upper()
    if key not in ORDERS:
        return f"no order {order_id!r}"
    status, date = ORDERS[key]
    return f"order {key}: {status}, delivery date {date}"


_OPS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.USub: operator.neg,
}  # fmt: skip


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return float(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return float(_OPS[type(node.op)](_evaluate(node.left), _evaluate(node.right)))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
        return float(_OPS[type(node.op)](_evaluate(node.operand)))
    raise ValueError("only numbers and + - * / are allowed")


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression with + - * / and parentheses."""
    try:
        return str(round(_evaluate(ast.parse(expression, mode="eval").body), 4))
    except (SyntaxError, ValueError, ZeroDivisionError) as exc:
        return f"error: {exc}; write numbers and + - * / only, such as 3 * 410"


TOOLS: list[BaseTool] = [
    get_weather, stock_price, convert_currency, order_status, calculator,
]  # fmt: skip


@dataclass
class Task:
    turns: list[str]
    expected: str  # a number (within 1%) or a word the last answer must contain
    calls: int  # tool calls the task needs at least
    kind: str = field(default="")


def tasks() -> list[Task]:
    """The 30 tasks, five of each kind."""
    out: list[Task] = []
    cities = list(WEATHER)
    for city in cities[:5]:
        out.append(Task([f"What's the weather in {city}?"], str(WEATHER[city][0]), 1, "weather"))
    for a, b in itertools.pairwise(cities):
        diff = abs(WEATHER[a][0] - WEATHER[b][0])
        out.append(Task(
            [f"How many degrees warmer is the warmer of {a} and {b} right now?"],
            str(diff), 2, "two cities",
        ))  # fmt: skip
    for (ticker, price), n in zip(PRICES.items(), (3, 2, 10, 4, 5), strict=True):
        out.append(Task([f"What do {n} shares of {ticker} cost in dollars?"],
                        f"{price * n:g}", 1, "shares"))  # fmt: skip
    for (ticker, price), cur in zip(PRICES.items(), ("EUR", "GBP", "JPY", "EUR", "GBP"),
                                    strict=True):  # fmt: skip
        out.append(Task([f"What is one share of {ticker} worth in {cur}?"],
                        f"{price * RATES[cur]:.2f}", 2, "share in currency"))  # fmt: skip
    for order in list(ORDERS)[:5]:
        out.append(Task([f"What is the status of my order {order}?"], ORDERS[order][0], 1,
                        "order"))  # fmt: skip
    for order, (amount, cur) in zip(list(ORDERS)[1:6],
                                    ((120, "EUR"), (80, "GBP"), (50, "EUR"), (200, "JPY"),
                                     (75, "GBP")), strict=True):  # fmt: skip
        out.append(Task(
            [f"Check order {order}.", f"Now convert {amount} USD to {cur} for its refund."],
            f"{amount * RATES[cur]:.2f}", 2, "two turns",
        ))  # fmt: skip
    return out


def succeeded(task: Task, answer: str) -> bool:
    """Whether ``answer`` states the expected value: a number within 1%, or the word."""
    try:
        want = float(task.expected)
    except ValueError:
        return task.expected.lower() in answer.lower()
    numbers = [float(n.replace(",", "")) for n in re.findall(r"-?\d[\d,]*(?:\.\d+)?", answer)]
    return any(abs(n - want) <= max(0.01 * abs(want), 0.01) for n in numbers)
