"""setup.py ships every C++/CUDA source the JIT-built plugins need (a plain `pip install .` has no source tree)."""
import ast
import fnmatch
import glob
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NATIVE_SOURCES = ('*.cpp', '*.cu', '*.h', '*.cuh')
PACKAGES = ('dnnlib', 'torch_utils', 'training', 'configs', 'portrait_data', 'metrics')   # setup.py's find_packages


def _package_data() -> dict:
    """The package_data keyword of setup.py's setup() call, read without running setup.py."""
    tree = ast.parse(open(os.path.join(ROOT, 'setup.py')).read())
    call = next(node for node in ast.walk(tree) if isinstance(node, ast.Call) and getattr(node.func, 'id', '') == 'setup')
    return ast.literal_eval(next(k.value for k in call.keywords if k.arg == 'package_data'))


def test_every_native_source_is_package_data():
    package_data = _package_data()
    sources = [path for package in PACKAGES for pattern in NATIVE_SOURCES
               for path in glob.glob(os.path.join(ROOT, package, '**', pattern), recursive=True)]
    assert sources
    missing = []
    for path in sources:
        relative = os.path.relpath(path, ROOT)
        shipped = any(relative.startswith(package.replace('.', os.sep) + os.sep) and
                      any(fnmatch.fnmatch(os.path.relpath(relative, package.replace('.', os.sep)), pattern)
                          for pattern in patterns)
                      for package, patterns in package_data.items())
        if not shipped:
            missing.append(relative)
    assert not missing, f'not in setup.py package_data: {missing}'
