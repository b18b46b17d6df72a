"""Caption translation: transformers and CTranslate2 backends, and the benchmark's reference.

Heavy libraries (torch, transformers, ctranslate2) are imported when a translator is built, so
importing this package is cheap.
"""

from .base import Translator, TranslatorError
from .ct2 import CTranslate2Translator, convert_model
from .factory import build_translator
from .hf import HFTranslator
from .languages import FLORES_CODES, flores_code
from .reference import WorldReferenceTranslator
from .tiny_models import build_tiny_marian, build_tiny_nllb

__all__ = [
    "FLORES_CODES", "CTranslate2Translator", "HFTranslator", "Translator", "TranslatorError",
    "WorldReferenceTranslator", "build_tiny_marian", "build_tiny_nllb", "build_translator", "convert_model",
    "flores_code",
]
