"""Test doubles and fixtures that need no weights and no network.

- `ScriptedChatModel`: a chat model that answers by SIFT role from a script
  (also the `scripted:<file.json>` model spec, for subprocesses and servers);
- `fixtures`: the scripted question, stickers, boxed answers and exit-path scripts
  shared by the tests, the benchmarks and the examples.
"""

from sift_graph.testing.fixtures import (
    EXIT_SCRIPTS,
    FORWARD_STICKER,
    INVERSE_STICKER,
    QUESTION,
    REFINED_STICKER,
    STICKER,
    boxed,
    script_for,
)
from sift_graph.testing.scripted import (
    RecordedCall,
    ScriptedChatModel,
    load_spec_target,
    scripted_model_from_file,
)

__all__ = [
    "EXIT_SCRIPTS",
    "FORWARD_STICKER",
    "INVERSE_STICKER",
    "QUESTION",
    "REFINED_STICKER",
    "STICKER",
    "RecordedCall",
    "ScriptedChatModel",
    "boxed",
    "load_spec_target",
    "script_for",
    "scripted_model_from_file",
]
