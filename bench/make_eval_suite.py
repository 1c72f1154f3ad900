"""Write the two generated parts of the evaluation suite into ``tasks/resources/`` (run once; the
output is committed, and editing it after seeing a model's errors would make its figures meaningless).

The suite has three kinds of comments, each split once (seeded, stratified by class) into a
``dev`` part, the only one any default is chosen on, and a ``final`` part, only ever reported:

1. ``frames_eval.jsonl``: the four sentence templates of the training set, filled with problem
   phrases the training set never uses (written here, :data:`NEW_PROBLEMS`), half of the rows with
   products, carriers, cities and agent names it never uses either, and a third of the rows with a
   typo of the dataset's kinds (two neighbouring characters swapped, a space moved) or a dropped or
   doubled letter. The phrases, not the rows, are split: a ``final`` phrase is never in ``dev``.
2. ``freeform_eval.jsonl``: the 280 hand-written free-form comments (already split; not written here).
3. ``registers_eval.jsonl``: ``bench/data/registers.jsonl`` (128 hand-written comments, 32 per class,
   in registers the other sets lack: Argentine voseo, Spain, Mexico and Chile slang, very short,
   long rants, emoji, all caps, two topics), split stratified by class and register.

    .venv/bin/python bench/make_eval_suite.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESOURCES = REPO / "tasks" / "resources"
REGISTERS_SOURCE = REPO / "bench" / "data" / "registers.jsonl"
SEED = 21
ROWS_PER_PHRASE = 3

TEMPLATES = {
    "ecommerce": "En la web/app {problem} al comprar un {product}. Intenté varias veces y nada.",
    "precios": "El {product} {problem}; el descuento era de {pct}% según la página.",
    "logistica": "El pedido de {product} {problem} con {carrier} en {city}.",
    "servicio_cliente": "El servicio al cliente {problem}. El agente {agent} tomó el caso.",
}

# Problem phrases of each class that no training comment uses (checked against the shared set's
# slot values by ``check_new`` below).
NEW_PROBLEMS = {
    "ecommerce": [
        "no me deja iniciar sesión",
        "me pide la contraseña a cada rato",
        "el botón de pagar no responde",
        "la página no carga",
        "me sale un error 500",
        "no puedo agregar productos al carrito",
        "el código de verificación nunca llega",
        "la app se cierra sola",
        "no aparece la opción de pagar con PayPal",
        "el formulario de dirección no guarda los datos",
        "el buscador no muestra resultados",
        "me cerró la sesión a mitad de la compra",
        "no puedo cambiar mi contraseña",
        "la pantalla se queda en blanco",
        "el captcha no me deja avanzar",
        "no carga el método de pago",
        "se borra lo que escribo en el formulario",
        "la app no abre después de actualizarla",
        "no me llega el SMS de verificación",
        "el enlace para recuperar la cuenta no funciona",
        "me bloquearon la cuenta sin motivo",
        "las fotos del producto no cargan",
        "la página se queda cargando sin parar",
        "no puedo registrarme con mi correo",
    ],
    "precios": [
        "me cobraron una comisión que no esperaba",
        "el precio final es el doble del anunciado",
        "la promoción 2x1 no se respetó",
        "me cobraron el IVA dos veces",
        "el precio con tarjeta es más caro que en efectivo",
        "subieron el precio justo el día de la oferta",
        "las cuotas sin interés tenían recargo",
        "me cobraron un cargo extra por pagar con tarjeta",
        "el precio de lista estaba inflado",
        "la rebaja era falsa",
        "cuesta más caro que en la tienda física",
        "la tarifa de servicio no aparecía antes",
        "me cobraron de más en la factura",
        "el total no coincide con la suma de los productos",
        "la oferta relámpago terminó antes de tiempo",
        "pagué el precio completo sin la rebaja",
        "el tipo de cambio que aplicaron es abusivo",
        "me aplicaron un recargo por financiación",
        "no me devolvieron la diferencia de precio",
        "cobran una tarifa por embalaje",
        "el precio rebajado solo era para socios",
        "es carísimo para lo que es",
        "el importe cobrado no es el de la etiqueta",
        "la comisión por pago en cuotas es altísima",
    ],
    "logistica": [
        "nunca salió del centro de distribución",
        "lleva dos semanas en tránsito",
        "figura como entregado pero no lo recibí",
        "lo dejaron en la portería sin avisar",
        "llegó con el paquete abierto",
        "tiene un número de guía que no existe",
        "llegó con la caja aplastada",
        "quedó retenido en aduana",
        "lo devolvieron al remitente sin intentar entregarlo",
        "el mensajero lo tiró por encima de la reja",
        "lo entregaron a un vecino",
        "se reprogramó tres veces",
        "se atrasó una semana",
        "llegó roto",
        "el transportista nunca pasó",
        "el rastreo dice que está en otra ciudad",
        "trajo un producto equivocado",
        "con envío express tardó diez días",
        "faltaba una pieza en la caja",
        "dejaron un aviso de visita pero nadie tocó el timbre",
        "quedó en la sucursal equivocada",
        "lo entregaron en mal estado",
        "sigue en preparación desde hace días",
        "el camión de reparto nunca apareció",
    ],
    "servicio_cliente": [
        "me colgaron a mitad de la llamada",
        "nadie contesta los correos",
        "me trataron con mala educación",
        "me dejaron en espera una hora",
        "me dieron información contradictoria",
        "solo responde un bot y no hay humanos",
        "me pidieron los mismos datos cinco veces",
        "la operadora fue muy grosera",
        "resolvieron todo rapidísimo, muy atentos",
        "me explicaron todo con mucha paciencia",
        "el número de atención siempre da ocupado",
        "no atienden los fines de semana",
        "abrieron un ticket y nunca lo cerraron",
        "prometieron una respuesta en 24 horas y nada",
        "nunca contestaron mi mensaje por WhatsApp",
        "el supervisor se negó a atenderme",
        "me respondieron con un mensaje automático",
        "se burlaron de mi reclamo",
        "la atención por chat fue excelente",
        "me hicieron repetir el problema a cada asesor",
        "no saben dar solución a nada",
        "el asesor fue amable pero no resolvió nada",
        "tardaron tres días en responder el correo",
        "me atendieron con mucha prepotencia",
    ],
}

# Slot values: the training set's, and others it never uses (half the rows take a new one).
SLOTS = {
    "product": (
        ["teléfono", "cámara", "zapatillas", "laptop", "impresora", "audífonos", "televisor", "smartwatch",
         "monitor", "tablet", "cafetera", "libro", "mochila"],
        ["licuadora", "bicicleta", "colchón", "microondas", "consola", "perfume", "parlante", "sartén"],
    ),
    "carrier": (
        ["UPS", "DHL", "99minutos", "Servientrega", "Deprisa", "Andreani", "Estafeta", "FedEx"],
        ["Correos", "Chilexpress", "Coordinadora", "Correo Argentino", "SEUR", "Olva"],
    ),
    "city": (
        ["Bogotá", "Medellín", "Quito", "Montevideo", "Buenos Aires", "Cali", "Barcelona", "Lima", "CDMX",
         "Barranquilla", "Madrid", "Santiago"],
        ["Sevilla", "Guadalajara", "Rosario", "Valparaíso", "Cusco", "Monterrey", "Valencia", "Córdoba"],
    ),
    "agent": (
        ["Ana", "María", "Juan", "Luisa", "Sofía", "Andrés", "Carlos", "Pedro"],
        ["Lucía", "Diego", "Camila", "Javier", "Valentina", "Martín"],
    ),
    "pct": (["40", "10", "30", "5", "50", "25", "15", "20", "12"], ["35", "60", "45", "8", "70"]),
}  # fmt: skip


def typo(text: str, rng: random.Random) -> str:
    """One typo at a random place: neighbours swapped (the dataset's kind, a space included), a letter
    dropped, or a letter doubled."""
    positions = [i for i in range(1, len(text) - 2) if text[i].isalpha()]
    i = rng.choice(positions)
    kind = rng.choice(["swap", "swap", "drop", "double"])
    if kind == "swap":
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]
    if kind == "drop":
        return text[:i] + text[i + 1 :]
    return text[:i] + text[i] + text[i:]


def frame_rows(rng: random.Random) -> list[dict]:
    rows = []
    for label, phrases in NEW_PROBLEMS.items():
        order = list(phrases)
        rng.shuffle(order)
        dev = set(order[: len(order) // 2])
        for p, phrase in enumerate(phrases):
            for k in range(ROWS_PER_PHRASE):
                fill = {
                    name: rng.choice(known if rng.random() < 0.5 else new)
                    for name, (known, new) in SLOTS.items()
                }
                text = TEMPLATES[label].format(problem=phrase, **fill)
                if rng.random() < 1 / 3:
                    text = typo(text, rng)
                rows.append(
                    {
                        "id": f"fr-{label}-{p:02d}-{k}",
                        "comentario": text,
                        "categoria": label,
                        "part": "dev" if phrase in dev else "final",
                    }
                )
    return rows


def register_rows(rng: random.Random) -> list[dict]:
    source = [json.loads(line) for line in REGISTERS_SOURCE.read_text(encoding="utf-8").splitlines() if line]
    groups: dict[tuple[str, str], list[int]] = {}
    for i, row in enumerate(source):
        groups.setdefault((row["categoria"], row["register"]), []).append(i)
    dev: set[int] = set()
    flip = 0  # odd-sized groups give their extra row to dev and final in turn
    for members in groups.values():
        members = list(members)
        rng.shuffle(members)
        take = len(members) // 2 + (len(members) % 2 if flip % 2 == 0 else 0)
        flip += len(members) % 2
        dev.update(members[:take])
    counters: dict[str, int] = {}
    rows = []
    for i, row in enumerate(source):
        n = counters[row["categoria"]] = counters.get(row["categoria"], -1) + 1
        rows.append(
            {
                "id": f"rg-{row['categoria']}-{n:02d}",
                "comentario": row["comentario"],
                "categoria": row["categoria"],
                "register": row["register"],
                "part": "dev" if i in dev else "final",
            }
        )
    return rows


def check_new(rows: list[dict]) -> None:
    """No new problem phrase may be one the training set uses (if the shared set is here)."""
    shared = REPO.parent / "shared" / "data" / "comentarios_train.json"
    if not shared.exists():
        return
    texts = "\n".join(r["comentario"].lower() for r in json.loads(shared.read_text(encoding="utf-8")))
    used = [p for phrases in NEW_PROBLEMS.values() for p in phrases if p.lower() in texts]
    if used:
        raise SystemExit(f"problem phrases the training set already uses: {used}")


def write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    parts = {p: sum(r["part"] == p for r in rows) for p in ("dev", "final")}
    print(f"{path.relative_to(REPO)}: {len(rows)} rows, {parts}")


def main() -> None:
    rng = random.Random(SEED)
    check_new([])
    write(RESOURCES / "frames_eval.jsonl", frame_rows(rng))
    write(RESOURCES / "registers_eval.jsonl", register_rows(rng))


if __name__ == "__main__":
    main()
