"""dcopt: plan multi-data-center LLM training and the networks it needs."""
from .instance import load_instance

__all__ = ["load_instance"]
__version__ = "0.1.0"
