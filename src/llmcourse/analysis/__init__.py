"""Looking inside models: parameter counts (more in later chapters).

Introduced in: the Transformer chapter.
"""

from llmcourse.analysis.params import count_parameters, parameter_breakdown

__all__ = ["count_parameters", "parameter_breakdown"]
