"""The operator: pure builders (DeepModule spec → Kubernetes objects, observed state → status),
thin kopf handlers around them, and the I/O that applies the result.

Nothing here is imported by `deepmarket.catalog` or `deepmarket.site`.
"""

from deepmarket import API_GROUP, API_VERSION

FIELD_MANAGER = "deepmarket"
DEEPMODULE_API = f"{API_GROUP}/{API_VERSION}"
MANAGED_BY = "deepmarket"
# Label every child carries: the DeepModule it belongs to (in the child's namespace).
INSTANCE_LABEL = "app.kubernetes.io/instance"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
COMPONENT = "inference"
CONTAINER = "deepaas"
