"""Deterministic bench inputs: realistic mixed-length Chinese and English texts, no downloads.

Texts are drawn from a fixed vocabulary with a seeded ``random.Random``, so every run (and
every machine) sends exactly the same texts. They are unique, because a repeated text would be
sent once by clients that de-duplicate and the comparison would no longer be like for like.
"""

from __future__ import annotations

import random
from pathlib import Path

# About 400 of the most common Chinese characters (no downloads, no tokenizer needed).
_ZH = (
    "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也"
    "能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实"
    "加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样"
    "与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情"
    "者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级"
    "少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处队南给色"
    "光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受联什认六共权收证改清己美再"
    "采转更单风切打白教速花带安场身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信马"
    "节话米整空元况今集温传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须"
    "际商非验连断深难近矿千周委素技备半办青省列习响约支般史感劳便团往酸历市克何除消构府称太准"
)
_ZH_PUNCT = "，，，。。、；：！？"
_EN_WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at which "
    "but have an had they you were their one all we can her has there been if more when will "
    "would who so no data model search vector index query document embedding retrieval user "
    "system network server request batch cache memory latency token language text result time "
    "price order product customer review weather city river music film book school market "
    "research paper method table figure value number report news policy health energy water "
    "quickly slowly carefully often never always already still again together however because"
)
_EN = _EN_WORDS.split()


def _zh_text(rng: random.Random, chars: int) -> str:
    out: list[str] = []
    while len(out) < chars:
        run = rng.randint(4, 18)
        out.extend(rng.choice(_ZH) for _ in range(run))
        out.append(rng.choice(_ZH_PUNCT))
    out = out[:chars]
    out[-1] = "。"
    return "".join(out)


def _en_text(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(_EN) for _ in range(words))
    return text[:1].upper() + text[1:] + "."


def _one_text(rng: random.Random) -> str:
    """One text: 45 % short (a query), 40 % a few sentences, 15 % a paragraph.

    Chinese lengths are in characters, English in words; about half Chinese, 40 % English and
    10 % both in one text, as in a bilingual corpus.
    """
    size = rng.random()
    zh_range, en_range = (
        ((4, 20), (3, 12))
        if size < 0.45
        else ((20, 120), (12, 60))
        if size < 0.85
        else ((120, 500), (60, 250))
    )
    lang = rng.random()
    if lang < 0.5:
        return _zh_text(rng, rng.randint(*zh_range))
    if lang < 0.9:
        return _en_text(rng, rng.randint(*en_range))
    return (
        _zh_text(rng, rng.randint(*zh_range) // 2 + 2)
        + " "
        + _en_text(rng, rng.randint(*en_range) // 2 + 1)
    )


def mixed_texts(n: int, seed: int = 0) -> list[str]:
    """``n`` unique texts of realistic mixed length and language, the same for a given seed.

    The first ``k`` texts of ``mixed_texts(n)`` are ``mixed_texts(k)``, so smaller bench sizes
    are prefixes of larger ones.
    """
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        text = _one_text(rng)
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def short_text(rng: random.Random, i: int) -> str:
    """A short unique text (a product title, a query): the ``i`` keeps it unique."""
    if rng.random() < 0.5:
        return f"商品{i}：" + "".join(rng.choice(_ZH) for _ in range(rng.randint(4, 12)))
    return f"item {i}: " + " ".join(rng.choice(_EN) for _ in range(rng.randint(2, 7)))


def write_short_texts(path: Path, n: int, seed: int = 0) -> None:
    """Write ``n`` short unique texts to ``path``, one a line, UTF-8 (for ``embedsdk embed``)."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        chunk: list[str] = []
        for i in range(n):
            chunk.append(short_text(rng, i))
            if len(chunk) >= 10_000:  # write in chunks: one write per line is slow
                f.write("\n".join(chunk) + "\n")
                chunk = []
        if chunk:
            f.write("\n".join(chunk) + "\n")


def read_line(path: Path, index: int) -> str:
    """The text on line ``index`` (0-based) of a file written by :func:`write_short_texts`."""
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i == index:
                return line.rstrip("\n")
    raise IndexError(index)
