"""A DEEPaaS module with the interface of the official AI4OS demo module (ai4os-hub/ai4os-demo-app).

That module lives only on GitHub (not on PyPI), so the tests cannot install it; this one
reproduces its interface facts, written by us: one predict argument of each kind (strings, a
choice, a password, integers with and without a range, a float, a boolean, a dict passed as a
string, a list of floats), three required file inputs (image, audio, video), an `accept`
argument offering JSON, a ZIP of the inputs or the image back, a response schema for the
JSON answer (with the password echoed back), metadata with `author-email` as a dict and `url`
as "Label, URL", and a training that sleeps `epoch_num` seconds. Compared by hand with the real
demo served by deepaas 2.6.0: its /swagger.json declares the same predict and train arguments
and response schema, and /v2/models/ the same metadata keys.
"""

from __future__ import annotations

import ast
import base64
import io
import json
import random
import time
import zipfile
from pathlib import Path

from marshmallow import fields, validate

FILES = ("demo_image", "demo_audio", "demo_video")


def get_metadata():
    return {
        "name": "demo_like",
        "author": "deepmarket tests",
        # the real demo (from its package metadata) sends these shapes: a dict and "Label, URL"
        "author-email": {"deepmarket tests": "tests@example.org"},
        "url": "Homepage, https://example.org/demo_like",
        "license": "MIT",
        "version": "0.1.0",
        "description": "Echoes its inputs, like the AI4OS demo module.",
    }


def get_predict_args():
    def file(kind):
        return fields.Field(
            required=True,
            metadata={"type": "file", "location": "form", "description": f"test {kind} upload"},
        )

    return {
        "demo_str": fields.Str(load_default="some-string"),
        "demo_str_choice": fields.Str(
            load_default="choice2", validate=validate.OneOf(["choice1", "choice2"])
        ),
        "demo_password": fields.Str(
            load_default="some-string",
            validate=validate.Length(min=1),
            load_only=True,
            metadata={"format": "password"},
        ),
        "demo_int": fields.Int(load_default=1),
        "demo_int_range": fields.Int(load_default=50, validate=validate.Range(min=1, max=100)),
        "demo_float": fields.Float(load_default=0.1),
        "demo_bool": fields.Bool(load_default=True),
        "demo_dict": fields.Str(load_default="{'a': 0, 'b': 1}"),
        "demo_list_of_floats": fields.List(fields.Float(), load_default=[0.1, 0.2, 0.3]),
        "demo_image": file("image"),
        "demo_audio": file("audio"),
        "demo_video": file("video"),
        "accept": fields.Str(
            load_default="application/json",
            validate=validate.OneOf(["application/json", "application/zip", "image/*"]),
            metadata={"description": "Format of the response."},
        ),
    }


schema = {
    "demo_str": fields.Str(),
    "demo_str_choice": fields.Str(),
    "demo_password": fields.Str(metadata={"format": "password"}),  # echoed back, as the demo does
    "demo_int": fields.Int(),
    "demo_int_range": fields.Int(),
    "demo_float": fields.Float(),
    "demo_bool": fields.Bool(),
    "demo_dict": fields.Dict(),
    "demo_list_of_floats": fields.List(fields.Float()),
    "demo_image": fields.Str(metadata={"description": "image"}),
    "demo_audio": fields.Str(metadata={"description": "audio"}),
    "demo_video": fields.Str(metadata={"description": "video"}),
    "labels": fields.List(fields.Str()),
    "probabilities": fields.List(fields.Float()),
    "accept": fields.Str(),
}


def predict(**kwargs):
    kwargs["demo_dict"] = ast.literal_eval(kwargs["demo_dict"])
    contents = {}
    for name in FILES:
        contents[name] = Path(kwargs[name].filename).read_bytes()
    probabilities = [random.random() + 0.01 for _ in range(5)]
    kwargs["probabilities"] = [p / sum(probabilities) for p in probabilities]
    kwargs["labels"] = ["class2", "class3", "class0", "class1", "class4"]
    if kwargs["accept"] == "application/json":
        for name in FILES:
            kwargs[name] = base64.b64encode(contents[name]).decode()
        return kwargs
    if kwargs["accept"] == "application/zip":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            args = {k: v for k, v in kwargs.items() if k not in FILES}
            archive.writestr("args.json", json.dumps(args, sort_keys=True))
            for name in FILES:
                archive.writestr(name, contents[name])
        buffer.seek(0)
        return buffer
    return io.BytesIO(contents["demo_image"])


def get_train_args():
    return {"epoch_num": fields.Int(load_default=10, metadata={"description": "epochs"})}


def train(**kwargs):
    for _ in range(kwargs["epoch_num"]):
        time.sleep(1.0)
    return {"status": "done", "final accuracy": 0.9}
