"""Training texts that teach the LSTM to read beyond the source's four templates.

The source is four sentence templates; the domain phrases name each class's subject in a few words.
An LSTM trained on those alone learns the templates' word order and the phrases as whole texts, and
meets real comments (tweets, chats without accents, e-mails with order numbers, call-centre
transcripts) as something it never saw. So each phrase is also placed in class-neutral *carrier*
sentences of those registers and passed through the noise customers add (no accents, lower or upper
case, abbreviations such as q / xq / x favor, typos, fillers, emoji), seeded so that the same data
gives the same texts. The carriers mention orders, purchases and the shop in every class alike, so
words like "pedido" stop pointing at one class.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from lstm_model.token_form import strip_accents

# "{}" is the phrase. None of them names a class's subject.
CARRIERS: tuple[str, ...] = (
    "{}",
    "{}.",
    "hola, {}",
    "buenas tardes, {}",
    "buenos días, les escribo porque {}",
    "{}. ¿alguien me puede ayudar?",
    "{} y nadie me da una solución",
    "otra vez {}, no puede ser",
    "no puede ser que {}",
    "{}!!!",
    "ayer hice una compra y {}",
    "hice un pedido la semana pasada y {}",
    "me pasó que {}",
    "una vez más {}, qué desastre",
    "{}, espero una respuesta pronto",
    "@tienda {} #pésimo",
    "@soporte {} #ayuda",
    "1 estrella: {}",
    "no lo recomiendo, {}",
    "eh bueno este {} o sea",
    "sí mire este {} y bueno eso",
    "x favor {}",
    "q onda, {}",
    "{} 😡",
    "{} 🙄🙄",
    "{} pls fix",
    "Estimados: les escribo por la compra N.º 48213. {}. Quedo atenta a su respuesta.",
    "Buenas tardes, con respecto a la orden 99127: {}. Saludos cordiales.",
    "Reclamo formal: {}. Solicito una solución.",
    "la verdad {}",
    "es la segunda vez que {}",
    "desde el lunes {}",
    "compré para un regalo y {}",
    "che, {}",
    "tío, {}",
    "{}, un horror",
    "{} y ya me cansé",
    "quería comentarles que {}",
    "mi mamá compró por la app y {}",
    "{}, gracias",
)

# Spelling customers use in chats: whole words, after lower-casing.
_ABBREVIATIONS: dict[str, tuple[str, ...]] = {
    "que": ("q", "k"),
    "porque": ("xq", "pq", "porq"),
    "por": ("x",),
    "para": ("pa", "p"),
    "también": ("tmb", "tb"),
    "mensaje": ("msj",),
    "favor": ("fa", "fav"),
    "de": ("d",),
    "está": ("ta", "sta"),
    "estoy": ("toy",),
    "nada": ("nd",),
    "gracias": ("grax", "grs"),
    "quiero": ("kiero",),
    "todo": ("to",),
}
_FILLERS = ("eh", "este", "o sea", "bueno", "mmm")
_EMOJI = ("😡", "🙄", "😤", "📦", "💸", "😢", "🤬", "👎")
_WORD = re.compile(r"\w+", re.UNICODE)


# How a second problem of the same class joins the first: real comments often name two or three.
_JOINERS = (", y además ", ". También ", " y encima ", ", ", ". Y ", " y ")


def augmented_texts(
    texts: Sequence[str],
    labels: Sequence[str],
    per_text: int,
    *,
    seed: int,
    compose: float = 0.5,
) -> tuple[list[str], list[str]]:
    """``per_text`` variants of each text (a phrase), each in a carrier sentence with noise; the
    variants keep their text's label. With probability ``compose`` a variant also names one or two
    other phrases of the same class (longer comments that name several problems)."""
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[str]] = {}
    for text, label in zip(texts, labels, strict=True):
        by_label.setdefault(label, []).append(text.strip().rstrip("."))
    out_texts: list[str] = []
    out_labels: list[str] = []
    for text, label in zip(texts, labels, strict=True):
        same = by_label[label]
        for carrier in rng.choice(len(CARRIERS), size=per_text):
            body = text.strip().rstrip(".")
            if rng.random() < compose:
                for other in rng.choice(len(same), size=int(rng.integers(1, 3))):
                    body += str(rng.choice(_JOINERS)) + same[other]
            out_texts.append(noisy(CARRIERS[carrier].format(body), rng))
            out_labels.append(label)
    return out_texts, out_labels


def noisy(text: str, rng: np.random.Generator) -> str:
    """The text as a hurried customer might type it: each kind of noise drawn on its own."""
    if rng.random() < 0.5:
        text = text.lower()
    if rng.random() < 0.5:
        text = strip_accents(text)
    if rng.random() < 0.35:
        text = _WORD.sub(lambda m: _abbreviate(m.group(0), rng), text)
    if rng.random() < 0.5:
        text = _WORD.sub(lambda m: _typo(m.group(0), rng), text)
    if rng.random() < 0.3:
        text = re.sub(r"[^\w\s]", "", text)
    if rng.random() < 0.1:
        words = text.split()
        words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(_FILLERS)))
        text = " ".join(words)
    if rng.random() < 0.1:
        text = f"{text} {rng.choice(_EMOJI)}"
    if rng.random() < 0.05:
        text = text.upper()
    return text


def _abbreviate(word: str, rng: np.random.Generator) -> str:
    forms = _ABBREVIATIONS.get(word.lower())
    return str(rng.choice(forms)) if forms and rng.random() < 0.7 else word


def _typo(word: str, rng: np.random.Generator) -> str:
    """One slip in about one word of eight of four letters or more: a swap, a drop, a double."""
    if len(word) < 4 or rng.random() >= 0.12:
        return word
    i = int(rng.integers(1, len(word) - 1))
    kind = rng.integers(0, 3)
    if kind == 0:
        return word[: i - 1] + word[i] + word[i - 1] + word[i + 1 :]
    if kind == 1:
        return word[:i] + word[i + 1 :]
    return word[:i] + word[i] + word[i:]
