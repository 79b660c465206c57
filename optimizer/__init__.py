"""dcopt: plan multi-data-center LLM training and the networks it needs."""
from .api import evaluate, pareto, solve, sweep
from .instance import load_instance

__all__ = ["load_instance", "solve", "evaluate", "sweep", "pareto"]
__version__ = "0.1.0"
