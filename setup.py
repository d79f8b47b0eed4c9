"""Install the 3DPortraitGAN re-implementation as a package.

Ranges stay loose on purpose: GPU users bring their own CUDA build of torch. On a CPU-only
machine install `torch==2.13.0` first (see README) so that pip never pulls a CUDA build.
"""
from setuptools import find_packages, setup

EXTRAS = {
    'smpl': ['smplx>=0.1.28'],
    'mesh': ['scikit-image>=0.19', 'trimesh>=3.9'],
    'video': ['imageio-ffmpeg>=0.4'],
    'tb': ['tensorboard>=2.8'],
}
EXTRAS['test'] = ['pytest>=7'] + EXTRAS['smpl'] + EXTRAS['mesh'] + EXTRAS['video']
EXTRAS['all'] = sorted({req for reqs in EXTRAS.values() for req in reqs})

setup(
    name='portrait3d-gan',
    version='0.1.0',
    description='Clean-room PyTorch re-implementation of 3DPortraitGAN (360-degree one-quarter-headshot 3D-aware GAN).',
    python_requires='>=3.9',
    packages=find_packages(include=['dnnlib', 'dnnlib.*', 'torch_utils', 'torch_utils.*', 'training', 'training.*', 'configs', 'configs.*', 'portrait_data', 'portrait_data.*', 'metrics', 'metrics.*']),
    package_data={'torch_utils.ops': ['cuda/*.cu', 'cuda/*.cpp', 'cuda/*.h', 'cpu/*.cpp', 'cpu/*.h'], 'training.deformation': ['csrc/*.cpp', 'csrc/*.h'],
                  'training.rendering': ['csrc/*.cpp', 'csrc/*.cu', 'csrc/*.h'], 'training.networks': ['csrc/*.cpp']},
    install_requires=['torch>=2.6', 'numpy', 'scipy', 'click>=8.0', 'pillow', 'imageio', 'ninja', 'tqdm', 'matplotlib>=3.5'],
    extras_require=EXTRAS,
)
