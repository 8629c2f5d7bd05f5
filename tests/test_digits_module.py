"""The example module's own logic, in-process: reproducible weights and clear input errors."""

import importlib.util

import numpy as np
import pytest

if importlib.util.find_spec("deepmarket_digits") is None:
    pytest.skip(
        "the example module is not installed (make venv installs examples/modules/*)",
        allow_module_level=True,
    )

from deepmarket_digits import api, classifier, images, samples


def test_pretrained_weights_are_reproducible(tmp_path, monkeypatch):
    features, labels = classifier.bundled_dataset()
    first, metrics = classifier.fit(features, labels, source="scikit-learn digits")
    second, _ = classifier.fit(features, labels, source="scikit-learn digits")
    assert first.to_json() == second.to_json()
    assert metrics["accuracy"] > 0.95 and metrics["test_samples"] == 360

    monkeypatch.setenv("DIGITS_MODEL_DIR", str(tmp_path))
    api.warm()  # an empty weights directory gets the same pre-trained weights
    loaded = api.current_classifier()
    assert loaded.to_json() == classifier.Classifier.from_json(first.to_json()).to_json()


def test_png_round_trip_keeps_the_features():
    digit = samples.held_out(7)
    again = images.features_from_bytes(images.digit_png(digit))
    assert np.abs(again - digit).max() < 0.05


def test_dark_ink_on_white_is_flipped_to_the_data_polarity():
    digit = samples.held_out(3).reshape(8, 8) * (255 / 16)
    gray = np.kron(digit, np.ones((4, 4)))
    assert np.allclose(
        images.features_from_gray(255 - gray), images.features_from_gray(gray), atol=0.05
    )


@pytest.mark.parametrize(
    ("data", "status", "says"),
    [
        (b"", 400, "empty"),
        (b"GIF89a-not-really", 400, "not an image Pillow can read"),
        (b"x" * (images.MAX_UPLOAD_BYTES + 1), 413, "the limit is"),
        (images.digit_png(np.zeros(64)), 400, "blank"),
    ],
)
def test_unusable_uploads_say_why(data, status, says):
    with pytest.raises(images.BadImage, match=says) as caught:
        images.features_from_bytes(data)
    assert caught.value.status == status


def test_input_rejected_survives_the_trip_to_deepaas(tmp_path):
    import pickle

    error = pickle.loads(pickle.dumps(api.InputRejected("no digit", 413)))
    assert (error.status, error.text) == (413, '{"message": "no digit"}')


def test_training_folder_errors_name_the_file(tmp_path):
    (tmp_path / "seven").mkdir()
    with pytest.raises(ValueError, match="sub-directories must be named 0"):
        api.load_labelled_images(tmp_path)
    (tmp_path / "seven").rmdir()
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"7/notes\.txt: the uploaded file .* not an image"):
        api.load_labelled_images(tmp_path)


def test_weights_that_cannot_be_written_are_a_clear_error(tmp_path, monkeypatch):
    # Like an empty read-only volume, but deterministic even for root: the parent is a file.
    (tmp_path / "volume").write_text("not a directory")
    monkeypatch.setenv("DIGITS_MODEL_DIR", str(tmp_path / "volume" / "weights"))
    with pytest.raises(RuntimeError, match=r"weights\.json does not exist and .* cannot be"):
        api.warm()
