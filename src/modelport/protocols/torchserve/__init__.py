"""TorchServe's inference API: ``/ping`` and ``/predictions``."""
