"""Looking inside models: parameter counts, curvature, and what embeddings have learned.

- :mod:`~llmcourse.analysis.params`, :mod:`~llmcourse.analysis.compute`: parameters and
  FLOPs by formula (the Transformer and Pretraining chapters);
- :mod:`~llmcourse.analysis.curvature`: Hessian-vector products (Appendix A);
- :mod:`~llmcourse.analysis.evolution`: the copy task (chapter 1);
- :mod:`~llmcourse.analysis.embeddings`, :mod:`~llmcourse.analysis.pca`,
  :mod:`~llmcourse.analysis.kmeans`, :mod:`~llmcourse.analysis.topics`: sentence
  vectors, PCA, k-means and topic words (chapter 9, Interpreting embeddings).

Introduced in: the Transformer chapter.
"""

from llmcourse.analysis.params import count_parameters, parameter_breakdown
from llmcourse.analysis.curvature import finite_difference_hvp, hvp, power_iteration
from llmcourse.analysis.embeddings import layer_embeddings, sentence_embeddings
from llmcourse.analysis.kmeans import KMeans, kmeans_plus_plus
from llmcourse.analysis.pca import PCA
from llmcourse.analysis.topics import class_counts, class_tfidf, npmi_coherence, top_words, topic_diversity

__all__ = [
    "KMeans",
    "PCA",
    "class_counts",
    "class_tfidf",
    "count_parameters",
    "finite_difference_hvp",
    "hvp",
    "kmeans_plus_plus",
    "layer_embeddings",
    "npmi_coherence",
    "parameter_breakdown",
    "power_iteration",
    "sentence_embeddings",
    "top_words",
    "topic_diversity",
]
