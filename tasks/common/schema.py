"""Column names and allowed values of the comentarios data (no heavy imports: the CLI reads these)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = (
    "id",
    "timestamp",
    "pais",
    "ciudad",
    "canal",
    "plataforma",
    "medio_contacto",
    "comentario",
    "categoria",
    "severidad",
    "sentimiento",
)
CATEGORIES = ("ecommerce", "logistica", "precios", "servicio_cliente")
SEVERITIES = ("baja", "media", "alta", "critica")


def fold_name(text: str) -> str:
    """A class name as label files are matched to it: without case, surrounding spaces or accents,
    inner spaces and hyphens as ``_`` (``Logística`` and ``logistica`` are one class)."""
    import unicodedata

    decomposed = unicodedata.normalize("NFKD", text.strip().casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c)).replace(" ", "_").replace("-", "_")


def text_key(texts: pd.Series) -> pd.Series:
    """Comments compared without case or extra spaces (a missing one as the empty key)."""
    return texts.fillna("").str.casefold().str.split().str.join(" ")
