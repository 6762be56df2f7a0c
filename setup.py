from pathlib import Path

from setuptools import find_namespace_packages, setup

setup(
    name="synthesizer-hf",
    version="0.1.0",
    description="Synthesizer (Tay et al., 2020) attention variants as native Hugging Face Transformers models",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    package_dir={"": "src"},
    # namespace discovery also lists the demo-data folders, so their files ship as package data
    packages=find_namespace_packages("src", include=["synthesizer_hf*"]),
    package_data={
        "synthesizer_hf.demo_data": ["*.md", "*.gz"],
        "synthesizer_hf.demo_data.glue.SST-2": ["*.tsv"],
        "synthesizer_hf.demo_data.glue.RTE": ["*.tsv"],
    },
    include_package_data=True,
    python_requires=">=3.10",
    install_requires=[
        # torch is pinned by the Makefile / CI to the CPU wheel before this runs; any 2.x is accepted here.
        "torch>=2.4",
        "transformers>=5.0,<6",
        "datasets>=3.0",
        "evaluate>=0.4",
        "accelerate>=1.0",
        "safetensors>=0.4",
        "tokenizers>=0.20",
        "scikit-learn>=1.3",
        "scipy>=1.10",
        "matplotlib>=3.7",
        "tqdm",
    ],
    extras_require={"dev": ["pytest>=8", "pytest-xdist", "hypothesis>=6", "ruff>=0.6"]},
)
