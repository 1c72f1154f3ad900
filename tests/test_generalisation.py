"""The model the project trains by default reads the problem words of its four templates, not the
training set's exact fillers: comments in those frames with problem phrases, products, carriers,
cities and names it never saw (and a typo or two) are classified right and not sent to review.

Trained once for the module with every default of ``TrainConfig`` on the shared dataset, split as
the flow splits it, with the threshold fitted as the flow fits it (free-form ``dev`` half, frames
``dev`` part). The comments below are in neither the training set nor the evaluation suite; the last
test reads the suite's frames ``final`` part (with the stems second model, the default before, it was
0.979 macro-F1 there: precios comments with new problem phrases landed in ecommerce).

The last two read free-form comments: the suite's kind 2 ``final`` part and the 240 comments of
``bench/data/independent_eval.jsonl``, written by someone who had read no file of the project. Without
the domain phrases (``tasks/training/phrases.py``) the model scored ~0.72 and ~0.64 macro-F1 there.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NEW_FILLERS = [
    ("En la web/app no funciona el botón de registrarse al comprar un ventilador. Intenté varias veces y nada.", "ecommerce"),
    ("En la web/app la sesión expira sola al comprar un reloj. Intenté varias veces y nada.", "ecommerce"),
    ("En la web/app el sitio muestra un error de conexión al comprar un escritorio. Intneté varias veces y nada.", "ecommerce"),
    ("El ventilador el precio tenía un recargo oculto; el descuento era de 20% según la página.", "precios"),
    ("El escritorio me cobraron más de lo que marcaba el anuncio; el descuento era de 30% según la página.", "precios"),
    ("El reloj la oferta no era real, costaba igual que antes; el descuento era de 15% según al página.", "precios"),
    ("El pedido de ventilador llegó a la dirección de otro cliente con DHL en Lima.", "logistica"),
    ("El pedido de reloj estuvo parado cinco días en la bodega con UPS en Quito.", "logistica"),
    ("El peddio de escritorio lo entregaron sin las piezas con FedEx en Cali.", "logistica"),
    ("El servicio al cliente nunca me devolvieron el correo. El agente Rosa tomó el caso.", "servicio_cliente"),
    ("El servicio al cliente me atendieron con mucha grosería. El agente Tomás tomó el caso.", "servicio_cliente"),
    ("El servicio al cliente el asesor me ayudó muy bien por teléfono. El agente Elena tomó el caso.", "servicio_cliente"),
]  # fmt: skip


@pytest.fixture(scope="module")
def default_fitted(shared_dataset):
    """The models trained with the project's defaults, the flow's way (source rows only)."""
    from phrase_helpers import builtin_phrases

    from flows.configs import TrainConfig
    from lstm_model.fit import LabelledTexts
    from lstm_model.fit import fit_classifier
    from lstm_model.splits import stratified_split
    from tasks.common.freeform import load_frames
    from tasks.common.freeform import load_freeform

    cfg = TrainConfig(device="cpu")
    texts, labels = shared_dataset["comentario"].tolist(), shared_dataset["categoria"].tolist()
    parts = stratified_split(
        labels, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction, seed=cfg.seed
    )

    def rows(positions) -> LabelledTexts:
        return LabelledTexts([texts[i] for i in positions], [labels[i] for i in positions])

    def labelled(frame) -> LabelledTexts:
        return LabelledTexts(frame["comentario"].tolist(), frame["categoria"].tolist())

    fitted = fit_classifier(
        rows(parts["train"]),
        rows(parts["val"]),
        sorted(set(labels)),
        calibration=labelled(load_freeform().dev),
        in_frame=labelled(load_frames().dev),
        text=cfg.text_settings(),
        architecture=cfg.architecture(),
        training=cfg.training_settings(),
        second=cfg.second_model_settings(),
        review=cfg.review_settings(),
        phrases=builtin_phrases(cfg.categories),
    )
    return fitted


@pytest.fixture(scope="module")
def default_model(default_fitted):
    """The default blend, as the product scores."""
    from lstm_model.predict import Classifier

    return Classifier.from_fitted(default_fitted)


def test_templates_with_new_fillers_are_classified_right(default_model):
    scores = default_model.score([text for text, _ in NEW_FILLERS])
    predicted = [default_model.labels[i] for i in scores.predicted]
    wrong = [
        (text, truth, got) for (text, truth), got in zip(NEW_FILLERS, predicted, strict=True) if got != truth
    ]
    assert wrong == []


def test_templates_with_new_fillers_are_rarely_sent_to_review(default_model):
    scores = default_model.score([text for text, _ in NEW_FILLERS])
    assert int(scores.needs_review.sum()) <= 1  # the bound: at most 5% of such comments


def test_the_frames_final_part_is_right_and_rarely_flagged(default_model):
    """The evaluation suite's kind 1 ``final`` part (never used for a choice): the issue's targets."""
    from lstm_model.evaluation import evaluate
    from tasks.common.freeform import load_frames

    final = load_frames().final
    scores = default_model.score(final["comentario"].tolist())
    truth = final["categoria"].map({label: i for i, label in enumerate(default_model.labels)}).to_numpy()
    assert evaluate(truth, scores.predicted, default_model.labels).macro_f1 >= 0.99
    assert scores.needs_review.mean() <= 0.05


def _macro_f1(model, frame) -> float:
    from lstm_model.evaluation import evaluate

    scores = model.score(frame["comentario"].tolist())
    truth = frame["categoria"].map({label: i for i, label in enumerate(model.labels)}).to_numpy()
    return evaluate(truth, scores.predicted, model.labels).macro_f1


def test_free_form_comments_out_of_the_box(default_model):
    """Kind 2's reporting part, no label files: the issue asked for >= 0.75."""
    from tasks.common.freeform import load_freeform

    assert _macro_f1(default_model, load_freeform().final) >= 0.8


def test_comments_written_by_someone_who_saw_nothing_of_the_project(default_model):
    import pandas as pd
    from phrase_helpers import INDEPENDENT_EVAL

    assert _macro_f1(default_model, pd.read_json(INDEPENDENT_EVAL, lines=True)) >= 0.85


# Written for this test, not taken from the training rows, the phrases or the evaluation suite:
# chat-style comments as customers type them (no accents, abbreviations, typos).
CHAT_COMMENTS = [
    ("no m deja pagar la app, se traba en el carrito", "ecommerce"),
    ("la pagina no carga y no puedo iniciar sesion x favor arreglenlo", "ecommerce"),
    ("q caro esta todo, subieron los precios otra vez", "precios"),
    ("me cobraron d mas en la factura, el precio no era ese", "precios"),
    ("el paquete no llega y el tracking no se actualiza hace 5 dias", "logistica"),
    ("xq el repartidor dejo el pedido en otra direccion??", "logistica"),
    ("nadie contesta el chat d atencion, llevo 2 hrs esperando", "servicio_cliente"),
    ("el asesor fue muy grosero y me colgo el telefono", "servicio_cliente"),
]


def test_the_lstm_alone_reads_accent_free_abbreviated_chats(default_fitted):
    """The subword LSTM on its own (no bag model averaged in): a word with a missing accent, a typo
    or an abbreviation reads near the word it stands for. (An LSTM that reads whole stems sees most
    of these words as [UNK].)"""
    from lstm_model.predict import Classifier

    lstm = Classifier.from_fitted(default_fitted.lstm_alone())
    scores = lstm.score([text for text, _ in CHAT_COMMENTS])
    got = [lstm.labels[i] for i in scores.predicted]
    wrong = [(text, truth, g) for (text, truth), g in zip(CHAT_COMMENTS, got, strict=True) if g != truth]
    assert len(wrong) <= 1, wrong
