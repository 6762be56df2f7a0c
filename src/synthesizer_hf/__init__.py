"""synthesizer-hf: the Synthesizer family (Tay et al., 2020) as native Hugging Face Transformers models.

Importing the package registers the config and every head with the Auto classes, and marks them for
`auto_map`, so `save_pretrained` writes a folder that also loads with `trust_remote_code=True`.
"""

import transformers

from .configuration_synthesizer import ATTENTION_ALIASES, ATTENTION_COMPONENTS, SynthesizerConfig
from .modeling_synthesizer import (
    AUTO_MODEL_CLASSES,
    SynthesizerDecoder,
    SynthesizerForCausalLM,
    SynthesizerForMaskedLM,
    SynthesizerForMultipleChoice,
    SynthesizerForQuestionAnswering,
    SynthesizerForSeq2SeqLM,
    SynthesizerForSequenceClassification,
    SynthesizerForTokenClassification,
    SynthesizerModel,
    SynthesizerPreTrainedModel,
    SynthesizerSeq2SeqModel,
)

# {Auto class: head}
AUTO_CLASSES = {getattr(transformers, auto): head for auto, head in AUTO_MODEL_CLASSES.items()}

transformers.AutoConfig.register(SynthesizerConfig.model_type, SynthesizerConfig, exist_ok=True)
SynthesizerConfig.register_for_auto_class()
for auto_class, model_class in AUTO_CLASSES.items():
    auto_class.register(SynthesizerConfig, model_class, exist_ok=True)
    model_class.register_for_auto_class(auto_class.__name__)

__version__ = "0.1.0"

__all__ = [
    "ATTENTION_ALIASES",
    "ATTENTION_COMPONENTS",
    "SynthesizerConfig",
    "SynthesizerDecoder",
    "SynthesizerForCausalLM",
    "SynthesizerForMaskedLM",
    "SynthesizerForMultipleChoice",
    "SynthesizerForQuestionAnswering",
    "SynthesizerForSeq2SeqLM",
    "SynthesizerForSequenceClassification",
    "SynthesizerForTokenClassification",
    "SynthesizerModel",
    "SynthesizerPreTrainedModel",
    "SynthesizerSeq2SeqModel",
]
