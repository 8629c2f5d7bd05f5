"""The vocabularies `importers` maps DEEP v1 and AI4OS v2 values onto (plain data).

Enumerations follow the AI4OS v2 metadata (and so our schema); the aliases and keyword
meanings are what the public deephdc and ai4os-hub files were found to use.
"""

from __future__ import annotations

LIBRARY_NAMES = (
    "TensorFlow",
    "PyTorch",
    "Keras",
    "Scikit-learn",
    "XGBoost",
    "LightGBM",
    "CatBoost",
    "Other",
)
TASK_NAMES = (
    "Computer Vision",
    "Natural Language Processing",
    "Time Series",
    "Recommender Systems",
    "Anomaly Detection",
    "Regression",
    "Classification",
    "Clustering",
    "Dimensionality Reduction",
    "Generative Models",
    "Graph Neural Networks",
    "Optimization",
    "Reinforcement Learning",
    "Transfer Learning",
    "Uncertainty Estimation",
    "Other",
)
DATA_TYPE_NAMES = ("Image", "Text", "Time Series", "Tabular", "Graph", "Audio", "Video", "Other")
LIBRARY_ALIASES = {
    "tf": "TensorFlow",
    "tensorflow-v1": "TensorFlow",
    "tensorflow-v2": "TensorFlow",
    "tensorflow 2": "TensorFlow",
    "torch": "PyTorch",
    "sklearn": "Scikit-learn",
    "scikit learn": "Scikit-learn",
}
CATEGORIES_V1 = {
    "trainable": "trainable",
    "inference": "inference",
    "pre-trained": "pre-trained",
    "pretrained": "pre-trained",
    "tool": "tool",
    "tools": "tool",
    "services": "inference",
}
CATEGORIES_V2 = {
    "ai4 pre trained": "pre-trained",
    "ai4 trainable": "trainable",
    "ai4 inference": "inference",
    "ai4 tools": "tool",
}
# Keywords that name tasks and data types: (tasks, data types)
KEYWORD_MEANINGS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "image classification": (("Computer Vision", "Classification"), ("Image",)),
    "audio classification": (("Classification",), ("Audio",)),
    "sound classification": (("Classification",), ("Audio",)),
    "text classification": (("Natural Language Processing", "Classification"), ("Text",)),
    "classification": (("Classification",), ()),
    "object detection": (("Computer Vision",), ("Image",)),
    "segmentation": (("Computer Vision",), ("Image",)),
    "semantic segmentation": (("Computer Vision",), ("Image",)),
    "instance segmentation": (("Computer Vision",), ("Image",)),
    "computer vision": (("Computer Vision",), ()),
    "pose estimation": (("Computer Vision",), ("Image",)),
    "super-resolution": (("Computer Vision", "Generative Models"), ("Image",)),
    "super resolution": (("Computer Vision", "Generative Models"), ("Image",)),
    "style transfer": (("Computer Vision", "Generative Models"), ("Image",)),
    "image style transfer": (("Computer Vision", "Generative Models"), ("Image",)),
    "nlp": (("Natural Language Processing",), ("Text",)),
    "natural language processing": (("Natural Language Processing",), ("Text",)),
    "speech recognition": (("Natural Language Processing",), ("Audio",)),
    "speech to text": (("Natural Language Processing",), ("Audio",)),
    "time series": (("Time Series",), ("Time Series",)),
    "time-series": (("Time Series",), ("Time Series",)),
    "anomaly detection": (("Anomaly Detection",), ()),
    "regression": (("Regression",), ()),
    "clustering": (("Clustering",), ()),
    "transfer learning": (("Transfer Learning",), ()),
    "image": ((), ("Image",)),
    "images": ((), ("Image",)),
    "audio": ((), ("Audio",)),
    "sound": ((), ("Audio",)),
    "video": ((), ("Video",)),
    "text": ((), ("Text",)),
    "tabular": ((), ("Tabular",)),
    "graph": ((), ("Graph",)),
}
# Keywords that described DEEP's build and serving, not the module
NOISE_KEYWORDS = {"docker", "api-v1", "api-v2", "deepaas", "deep-oc"}
LICENCE_ALIASES = {
    "apache 2.0": "Apache-2.0",
    "apache 2": "Apache-2.0",
    "apache2": "Apache-2.0",
    "apache-2": "Apache-2.0",
    "apache v2": "Apache-2.0",
    "apache license 2.0": "Apache-2.0",
    "apache license, version 2.0": "Apache-2.0",
    "apache license version 2.0": "Apache-2.0",
    "gplv3": "GPL-3.0-only",
    "gpl3": "GPL-3.0-only",
    "gpl-3": "GPL-3.0-only",
    "gpl-3.0": "GPL-3.0-only",
    "gplv2": "GPL-2.0-only",
    "gpl-2.0": "GPL-2.0-only",
    "agplv3": "AGPL-3.0-only",
    "agpl-3.0": "AGPL-3.0-only",
    "lgpl-3.0": "LGPL-3.0-only",
    "bsd-3": "BSD-3-Clause",
    "bsd 3-clause": "BSD-3-Clause",
    "bsd-2": "BSD-2-Clause",
    "bsd 2-clause": "BSD-2-Clause",
    "mit license": "MIT",
    "the mit license": "MIT",
}
# Images of these Docker Hub namespaces are published with `cpu` and `gpu` tags by the
# DEEP and AI4OS build pipelines, so an untagged name there has a conventional tag.
CONVENTIONAL_TAG_NAMESPACES = ("deephdc", "ai4oshub")
LINKS = ("source_code", "docker_image", "documentation", "dataset", "weights", "citation")
LINKS_V2 = (*LINKS, "base_model")
# v2 files in the wild also carry v1 names or their own inventions for these links
LINK_ALIASES_V2 = {
    "training_data": "dataset",
    "dataset_url": "dataset",
    "cite_url": "citation",
    "training_files_url": "weights",
    "pre_trained_weights": "weights",
}
RESOURCE_KEYS = {
    "cpu": (int, float),
    "memory_MB": (int,),
    "gpu": (int,),
    "gpu_memory_MB": (int,),
    "gpu_compute_capability": (int, float),
    "storage_MB": (int,),
}
