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
    package_data={"lasres.ops": ["c/*.c", "c/*.h"]},
    # the scripts of scripts/, installed as commands (lasres/cli/entry_points.py)
    entry_points={"console_scripts": [
        "lasres-train = lasres.cli.entry_points:train",
        "lasres-test = lasres.cli.entry_points:test",
        "lasres-compare = lasres.cli.entry_points:compare",
        "lasres-export = lasres.cli.entry_points:export_onnx",
        "lasres-export-torch = lasres.cli.entry_points:export_torch",
    ]},
    install_requires=[
        "pytensor>=3.0", "numpy", "scipy", "h5py", "tqdm",
        # oneDNN 3.2 convolution kernels (OpenMP build; the 2024+ wheels need
        # Intel's SYCL/TBB runtimes); elsewhere lasres runs its NumPy kernels
        "onednn-cpu-gomp==2023.2.0; platform_system == 'Linux' and platform_machine == 'x86_64'",
        "onednn-devel-cpu-gomp==2023.2.0; platform_system == 'Linux' and platform_machine == 'x86_64'",
    ],
    extras_require={
        "jax": ["jax"],
        "plot": ["matplotlib"],
        "onnx": ["onnx"],
        "torch": ["torch"],
        "test": ["pytest", "Pillow", "matplotlib", "jax", "onnx", "onnxruntime", "torch"],
    },
)
