"""avjax: audio-visual and video-language representation learning in JAX."""

import setuptools

INSTALL_REQUIRES = [
    "jax>=0.8",
    "flax>=0.12",
    "optax>=0.2.5",
    "orbax-checkpoint>=0.11",
    "tensorflow-datasets>=4.9.8",
    "grain>=0.2.12",
    "array-record>=0.8",
    "numpy>=1.26",
    "scipy>=1.11",
    "absl-py>=2.1",
    "ml-collections>=1.0",
    "scikit-learn>=1.4",
    "espeakng-loader>=0.2.4",
    "librosa>=0.10",
    "soundfile>=0.12",
    "pillow>=10",
    "h5py>=3.10",
    "tensorboardX>=2.6",
    "matplotlib>=3.8",
    "tqdm>=4.66",
    "importlib_resources>=6.0",  # tfds builders inside a package (py3.11)
    "tokenizers>=0.20",  # MAMA's caption tokenizer
]

# PyAV bundles its own FFmpeg; decoded frames (and so accuracy) can change
# with the FFmpeg version, so the range is pinned to one major release.
VIDEO_REQUIRES = ["av>=18,<19"]

setuptools.setup(
    name="avjax",
    version="0.1.0",
    description=(
        "JAX/Flax library and launcher for audio-visual and video-language "
        "representation learning"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["avjax", "avjax.*"]),
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-xdist>=3.5",
            "ipython>=8",
            # Notebooks are executed in a real Jupyter kernel.
            "nbclient>=0.10",
            "nbformat>=5.9",
            "ipykernel>=6.29",
            # One formatter for the tree (tests/test_format.py).
            "pyink>=26.5,<27",
        ]
        + VIDEO_REQUIRES,
        "video": VIDEO_REQUIRES,
        "bench": ["torch", "pytorch-metric-learning>=2.5"],
    },
)
