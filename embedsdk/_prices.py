"""What an embedding costs: the providers' published prices per million input tokens.

Prices change more often than anything else a profile says, so they sit in one table, each
with the date it was read and where; a caller's own price (``price=``, ``--price``) always
wins. Only prices read from the provider's own pages are listed:

- OpenAI: https://openai.com/api/pricing (read 2025): 3-small $0.02, 3-large $0.13,
  ada-002 $0.10.
- DashScope (Alibaba Cloud Model Studio, mainland China): the text-embedding pages of
  help.aliyun.com (read 2026-12): v3 and v4 ¥0.0005 per 1,000 tokens, v1 and v2 ¥0.0007.
- Zhipu: its model guide for Embedding-2 (read 2026-12): ¥0.5 per million tokens.

Not listed, because no page of the provider's could be read from here: SiliconFlow (its
price list is an application page), Zhipu's Embedding-3. For those the summary shows tokens
and no money until a price is given.

>>> price_for("openai", "text-embedding-3-small")
Price(per_million=0.02, currency='USD', read='2025', source='openai.com/api/pricing')
>>> price_for("openai", "text-embedding-3-small").of(1_500_000)
'$0.03'
>>> parse_price("0.5 CNY").of(2_000_000)
'¥1.00'
"""

from __future__ import annotations

import dataclasses
import math
import re

from ._exceptions import ConfigurationError

#: Currency signs for the amounts shown; any other currency is written after the amount.
SIGNS = {"USD": "$", "CNY": "¥"}


@dataclasses.dataclass(frozen=True)
class Price:
    """A price per million input tokens, in ``currency`` (ISO 4217: ``"USD"``, ``"CNY"``),
    read on ``read`` (a date, ``"given"`` for the caller's own) from ``source``."""

    per_million: float
    currency: str = "USD"
    read: str = "given"
    source: str = ""

    def __post_init__(self) -> None:
        value = self.per_million
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"a price must be a number, got {value!r}")
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"a price must be a finite number >= 0, got {value!r}")
        if not re.fullmatch(r"[A-Z]{3}", self.currency):
            raise ValueError(f"currency must be a code such as USD or CNY, got {self.currency!r}")

    def cost(self, tokens: float) -> float:
        """What ``tokens`` input tokens cost, in :attr:`currency`."""
        return tokens / 1e6 * self.per_million

    def of(self, tokens: float) -> str:
        """:meth:`cost` written with its currency: ``$0.0284``, ``¥1.00``."""
        return self.money(self.cost(tokens))

    def money(self, amount: float) -> str:
        """``amount`` of this currency as text, with two significant decimals at least."""
        digits = (
            2 if amount == 0 or abs(amount) >= 0.01 else 2 - math.floor(math.log10(abs(amount)))
        )
        text = f"{amount:,.{min(digits, 8)}f}"
        sign = SIGNS.get(self.currency)
        return f"{sign}{text}" if sign else f"{text} {self.currency}"

    def __str__(self) -> str:
        per = f"{self.per_million:g}"
        sign = SIGNS.get(self.currency)
        amount = f"{sign}{per}" if sign else f"{per} {self.currency}"
        when = "your price" if self.read == "given" else f"published, read {self.read}"
        return f"{amount}/M tokens ({when})"


_OPENAI = ("USD", "2025", "openai.com/api/pricing")
_DASHSCOPE = ("CNY", "2026-12", "help.aliyun.com/zh/model-studio/text-embedding-synchronous-api")
_ZHIPU = ("CNY", "2026-12", "docs.bigmodel.cn (Embedding-2 model guide)")

#: ``(profile name, model regex, price per million tokens, (currency, read, source))``, the
#: first match wins. Standard ``/embeddings`` prices; the Batch API's discount is applied
#: by :mod:`embedsdk.batchapi`.
PRICES: tuple[tuple[str, str, float, tuple[str, str, str]], ...] = (
    ("openai", r"text-embedding-3-small", 0.02, _OPENAI),
    ("openai", r"text-embedding-3-large", 0.13, _OPENAI),
    ("openai", r"text-embedding-ada-002", 0.10, _OPENAI),
    ("dashscope", r"text-embedding-v[34]\b", 0.5, _DASHSCOPE),
    ("dashscope", r"text-embedding-v[12]\b", 0.7, _DASHSCOPE),
    ("zhipu", r"^embedding-2$", 0.5, _ZHIPU),
)


def price_for(provider: str, model: str) -> Price | None:
    """The published ``/embeddings`` price of ``model`` on the ``provider`` profile, or
    ``None`` when none is listed (see the module's docstring for what is and why)."""
    for name, pattern, per_million, (currency, read, source) in PRICES:
        if name == provider and re.search(pattern, model, re.I):
            return Price(per_million, currency, read, source)
    return None


_GIVEN = re.compile(r"\s*([$¥])?\s*([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)\s*([A-Za-z]{3})?\s*", re.I)


def parse_price(text: str) -> Price:
    """A price as a person writes it: ``0.02`` (USD), ``$0.02``, ``0.5 CNY``, ``¥0.5``.

    Raises :class:`ConfigurationError` (a ``ValueError``) saying what is expected.
    """
    match = _GIVEN.fullmatch(text)
    if not match:
        raise ConfigurationError(
            f"price {text!r} is not a number per million tokens: write it as 0.02, $0.02, "
            "0.5 CNY or ¥0.5"
        )
    sign, amount, code = match.groups()
    currency = code.upper() if code else {"¥": "CNY"}.get(sign or "", "USD")
    if sign and code and SIGNS.get(currency) != sign:
        raise ConfigurationError(f"price {text!r} names two currencies")
    try:
        return Price(float(amount), currency)
    except ValueError as exc:
        raise ConfigurationError(f"price {text!r}: {exc}") from None


def as_price(value: object, provider: str, model: str) -> Price | None:
    """The ``price=`` option: a :class:`Price`, a number (USD per million tokens), a string
    for :func:`parse_price`, or ``None`` for the published one."""
    if value is None:
        return price_for(provider, model)
    if isinstance(value, Price):
        return value
    if isinstance(value, str):
        return parse_price(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return Price(float(value))
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
    raise ConfigurationError(
        f"price must be a number (USD per million tokens), a string such as '0.5 CNY' or a "
        f"Price, not {value!r}"
    )
