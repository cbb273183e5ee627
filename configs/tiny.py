"""A toy policy with random weights: the configuration tests run end to end on CPU."""
from configs import base


def get_config():
    c = base.get_config()
    c.model.family = "tiny"
    c.model.path = ""
    return c
