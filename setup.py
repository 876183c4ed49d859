from setuptools import setup, find_packages

setup(
    name="lasres",
    version="0.1.0",
    description="Lasagne-era deep residual networks (pre-activation, bottleneck, wide, "
                "RoR, RiR, original ResNet) on PyTensor",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["lasres", "lasres.*"]),
    python_requires=">=3.10",
    install_requires=["pytensor>=2.30", "numpy", "scipy", "h5py", "tqdm"],
    extras_require={
        "jax": ["jax"],
        "plot": ["matplotlib"],
        "onnx": ["onnx"],
        "test": ["pytest", "Pillow", "matplotlib", "jax", "onnx", "onnxruntime"],
    },
)
