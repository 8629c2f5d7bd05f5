"""DeepModule: catalog module → inference Deployment/Service/HPA (or Knative Service).

Pure decisions (`resolve`, `builders`, `status`) beside the thin I/O (`reconciler`, `handlers`);
shared plumbing (API client, comparison, runner) lives one level up in `deepmarket.controller`.
"""

from deepmarket.controller.deepmodule.handlers import setup

__all__ = ["setup"]
