"""The demo's two tools, offered by the agent when a config file names none."""

from __future__ import annotations

from typing import Any


def get_time(timezone: str) -> str:
    """The current date and time in an IANA timezone, such as Europe/Paris."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    return datetime.now(ZoneInfo(timezone)).isoformat(timespec="minutes")


def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression with + - * / ( ) and numbers."""
    import ast
    import operator

    ops: dict[type, Any] = {ast.Add: operator.add, ast.Sub: operator.sub,
                            ast.Mult: operator.mul, ast.Div: operator.truediv,
                            ast.USub: operator.neg}  # fmt: skip

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in ops:
            return float(ops[type(node.op)](ev(node.left), ev(node.right)))
        if isinstance(node, ast.UnaryOp) and type(node.op) in ops:
            return float(ops[type(node.op)](ev(node.operand)))
        raise ValueError(f"not arithmetic: {ast.dump(node)[:60]}")

    return str(ev(ast.parse(expression, mode="eval").body))
