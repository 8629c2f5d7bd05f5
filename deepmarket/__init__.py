"""deepmarket: an open marketplace and Kubernetes runtime for DEEPaaS machine-learning modules."""

__version__ = "0.1.0"

API_GROUP = "deepmarket.dev"
API_VERSION = "v1alpha1"
