"""Precise silencing of transformers warnings that are meaningless for ReT's use of a backbone.

ReT reads only the hidden states of its towers. A tower config's special token ids (`bos_token_id`,
`eos_token_id`, `pad_token_id`) matter only to the tower's own pooled output and to generation, which
ReT never uses; transformers 5 warns when they fall outside the vocabulary (tiny test towers keep
CLIP's default ids with a small vocabulary). Only that message, only while a backbone config is built,
is dropped: every other warning still shows.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

_SPECIAL_TOKEN_RANGE = re.compile(
    r"^Model config: (bos|eos|pad)_token_id must be `None` or an integer within the vocabulary"
)
_CONFIG_LOGGER = "transformers.configuration_utils"


class _DropSpecialTokenRange(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _SPECIAL_TOKEN_RANGE.match(record.getMessage())


@contextmanager
def unused_special_token_ids_quiet() -> Iterator[None]:
    """While building a backbone config: drop the special-token-id range warning (see module doc)."""
    logger = logging.getLogger(_CONFIG_LOGGER)
    flt = _DropSpecialTokenRange()
    logger.addFilter(flt)
    try:
        yield
    finally:
        logger.removeFilter(flt)
