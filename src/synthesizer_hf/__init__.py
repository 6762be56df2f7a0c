"""synthesizer-hf: the Synthesizer family (Tay et al., 2020) as native Hugging Face Transformers models.

Importing the package registers the config and every head with the Auto classes, and marks them for
`auto_map`, so `save_pretrained` writes a folder that also loads with `trust_remote_code=True`.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForMultipleChoice,
    AutoModelForQuestionAnswering,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from .configuration_synthesizer import ATTENTION_ALIASES, ATTENTION_COMPONENTS, SynthesizerConfig
from .modeling_synthesizer import (
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

AUTO_CLASSES = {
    AutoModel: SynthesizerModel,
    AutoModelForMaskedLM: SynthesizerForMaskedLM,
    AutoModelForSequenceClassification: SynthesizerForSequenceClassification,
    AutoModelForTokenClassification: SynthesizerForTokenClassification,
    AutoModelForMultipleChoice: SynthesizerForMultipleChoice,
    AutoModelForQuestionAnswering: SynthesizerForQuestionAnswering,
    AutoModelForCausalLM: SynthesizerForCausalLM,
    AutoModelForSeq2SeqLM: SynthesizerForSeq2SeqLM,
}

AutoConfig.register(SynthesizerConfig.model_type, SynthesizerConfig, exist_ok=True)
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
