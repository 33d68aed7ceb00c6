"""Looking inside models: parameter counts (more in later chapters).

Introduced in: the Transformer chapter.
"""

from llmcourse.analysis.params import count_parameters, parameter_breakdown
from llmcourse.analysis.curvature import finite_difference_hvp, hvp, power_iteration

__all__ = ["count_parameters", "parameter_breakdown", "hvp", "finite_difference_hvp", "power_iteration"]
