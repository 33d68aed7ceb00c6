"""llmcourse: the shared PyTorch package behind "LLMs from the inside".

Every chapter and exercise imports from here. Sub-packages map onto chapters:

- ``llmcourse.device``      devices, seeds (used everywhere)
- ``llmcourse.data``        offline corpora (IMDB, Rotten Tomatoes, a tiny corpus)
- ``llmcourse.tokenizers``  character, byte-level BPE and WordPiece tokenizers (chapter: Tokenization)
- ``llmcourse.nn``          attention, masks, positions, transformer blocks (chapters: Embeddings, Attention)
- ``llmcourse.models``      GPT, BERT (with the real MiniLM weights), encoder-decoder (chapter: The transformer); a Kneser-Ney n-gram baseline (chapter: Pretraining)
- ``llmcourse.analysis``    parameter counting (chapter: The transformer); compute estimates (chapter: Pretraining)
- ``llmcourse.training``    tokenized corpus cache, batches, trainer, checkpoints, DDP (chapter: Pretraining)
- ``llmcourse.generation``  greedy, temperature, top-k, top-p decoding with a KV cache (chapter: Generation)
- ``llmcourse.viz``         figures, widgets and offline attention views for the book
- ``llmcourse.grading``     the instructor command line around nbgrader

Importing the package runs nothing but definitions and never touches the network.
"""

from llmcourse.device import autocast, get_device, set_seed

__all__ = ["autocast", "get_device", "set_seed"]
__version__ = "0.1.0"
