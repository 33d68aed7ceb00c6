"""llmcourse: the shared PyTorch package behind "LLMs from the inside".

Every chapter and exercise imports from here. Sub-packages map onto chapters:

- ``llmcourse.device``      devices, seeds (used everywhere)
- ``llmcourse.data``        offline corpora (IMDB, Rotten Tomatoes, a tiny corpus)
- ``llmcourse.tokenizers``  character, byte-level BPE and WordPiece tokenizers (chapter: Tokenization)
- ``llmcourse.nn``          attention, masks, positions, transformer blocks (chapters: Embeddings, Attention)
- ``llmcourse.models``      GPT, BERT (with the real MiniLM weights), encoder-decoder (chapter: The transformer)
- ``llmcourse.analysis``    parameter counting (chapter: The transformer)
- ``llmcourse.viz``         figures, widgets and offline attention views for the book
- ``llmcourse.grading``     the instructor command line around nbgrader

Importing the package runs nothing but definitions and never touches the network.
"""

from llmcourse.device import autocast, get_device, set_seed

__all__ = ["autocast", "get_device", "set_seed"]
__version__ = "0.1.0"
