"""Column names and allowed values of the comentarios data (no heavy imports: the CLI reads these)."""

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
